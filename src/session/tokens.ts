/**
 * The OIDC slot of a session: the provider's tokens (refresh token, ID token, access token),
 * sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the session id. The store holds
 * only the id's hash, so the sealed text in the store opens only for whoever presents the
 * cookie: a leaked store yields neither live cookies nor refresh tokens.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

/** What a browser sign-in keeps of the provider's token response. */
export interface OidcTokens {
  readonly refreshToken?: string
  readonly idToken?: string
  readonly accessToken?: string
  /** When the access token (and so the session's identity) must be refreshed, epoch ms. */
  readonly expiresAt: number
}

const INFO = Buffer.from('gatehouse session oidc tokens v1')
const VERSION = 'v1'

function keyOf(sessionId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(sessionId, 'utf8'), Buffer.alloc(0), INFO, 32))
}

/** Seal `tokens` for the session whose id is `sessionId` (`v1.<iv>.<ciphertext>.<tag>`, base64url). */
export function sealTokens(sessionId: string, tokens: OidcTokens): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', keyOf(sessionId), iv)
  const body = Buffer.concat([c.update(JSON.stringify(tokens), 'utf8'), c.final()])
  return [VERSION, iv.toString('base64url'), body.toString('base64url'), c.getAuthTag().toString('base64url')].join('.')
}

/** Open a sealed slot; undefined when it was sealed for another id or altered. */
export function openTokens(sessionId: string, sealed: string): OidcTokens | undefined {
  const parts = sealed.split('.')
  if (parts.length !== 4 || parts[0] !== VERSION) return undefined
  try {
    const d = createDecipheriv('aes-256-gcm', keyOf(sessionId), Buffer.from(parts[1] as string, 'base64url'), { authTagLength: 16 })
    d.setAuthTag(Buffer.from(parts[3] as string, 'base64url'))
    const text = Buffer.concat([d.update(Buffer.from(parts[2] as string, 'base64url')), d.final()]).toString('utf8')
    return JSON.parse(text) as OidcTokens
  } catch {
    return undefined
  }
}
