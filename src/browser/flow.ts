/**
 * The sign-in flow's binding to the browser, with no server-side state shared between workers
 * or replicas: a short-lived `__Host-` cookie holds a random secret R and the pending data
 * (PKCE code_verifier, nonce, return path, redirect URI) sealed with AES-256-GCM under a key
 * derived from R (HKDF-SHA256, as session/tokens.ts). The `state` sent to the provider is a
 * hash of R, so the callback proves it belongs to the browser that started the flow (RFC 6749
 * §10.12, OAuth 2.0 Security BCP RFC 9700 §2.1 / §4.7) — compared in constant time. The same
 * cookie's second hash is the CSRF token of the local sign-in form.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

/** Name of the flow cookie. */
export const FLOW_COOKIE = '__Host-gatehouse-flow'
/** How long a started sign-in may take (the cookie's Max-Age and the sealed expiry). */
export const FLOW_LIFETIME_MS = 10 * 60_000

/** What the callback (or the form post) needs back. */
export interface PendingFlow {
  /** `oidc`: a code flow in progress; `form`: the local sign-in page was shown. */
  readonly kind: 'oidc' | 'form'
  /** Safe return path (already checked by safeReturnPath). */
  readonly rd: string
  /** PKCE code_verifier (RFC 7636 §4.1). */
  readonly verifier?: string
  readonly nonce?: string
  /** The exact redirect_uri of the authorization request (the token request repeats it). */
  readonly redirectUri?: string
  /** Expiry, epoch ms. */
  readonly exp: number
}

const VERSION = 'f1'
const SECRET = /^[A-Za-z0-9_-]{43}$/

function keyOf(r: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(r, 'utf8'), Buffer.alloc(0), Buffer.from('gatehouse sign-in flow v1'), 32))
}

function label(r: string, what: 'state' | 'csrf'): string {
  return createHash('sha256').update(`gatehouse ${what} v1\0${r}`, 'utf8').digest('base64url')
}

/** Start a flow: the cookie value, the `state` for the provider, and the form's CSRF token. */
export function sealFlow(p: PendingFlow): { readonly cookie: string; readonly state: string; readonly csrf: string } {
  const r = randomBytes(32).toString('base64url')
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', keyOf(r), iv)
  const body = Buffer.concat([c.update(JSON.stringify(p), 'utf8'), c.final()])
  const cookie = [VERSION, r, iv.toString('base64url'), body.toString('base64url'), c.getAuthTag().toString('base64url')].join('.')
  return { cookie, state: label(r, 'state'), csrf: label(r, 'csrf') }
}

/** Why a flow cookie is refused. */
export type FlowRefusal = 'no-flow' | 'state-mismatch' | 'expired' | 'malformed'

function same(a: string, b: string): boolean {
  // Digests first: equal lengths for timingSafeEqual, no early exit on length.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/**
 * Open the flow of `cookie`, given the `state` (or CSRF token) the request presented; the
 * pending data, or why not.
 */
export function openFlow(cookie: string | undefined, presented: string | undefined, as: 'state' | 'csrf', now: number): { readonly ok: true; readonly flow: PendingFlow } | { readonly ok: false; readonly reason: FlowRefusal } {
  if (cookie === undefined || cookie === '') return { ok: false, reason: 'no-flow' }
  const parts = cookie.split('.')
  if (parts.length !== 5 || parts[0] !== VERSION || !SECRET.test(parts[1] as string)) return { ok: false, reason: 'malformed' }
  const r = parts[1] as string
  if (presented === undefined || presented === '' || !same(presented, label(r, as))) return { ok: false, reason: 'state-mismatch' }
  let flow: PendingFlow
  try {
    const d = createDecipheriv('aes-256-gcm', keyOf(r), Buffer.from(parts[2] as string, 'base64url'), { authTagLength: 16 })
    d.setAuthTag(Buffer.from(parts[4] as string, 'base64url'))
    flow = JSON.parse(Buffer.concat([d.update(Buffer.from(parts[3] as string, 'base64url')), d.final()]).toString('utf8')) as PendingFlow
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  if (typeof flow !== 'object' || flow === null || typeof flow.exp !== 'number' || typeof flow.rd !== 'string') return { ok: false, reason: 'malformed' }
  if (now >= flow.exp) return { ok: false, reason: 'expired' }
  return { ok: true, flow }
}

/** A PKCE pair (RFC 7636 §4.1–4.2, S256): 256-bit verifier, its SHA-256 challenge. */
export function pkcePair(): { readonly verifier: string; readonly challenge: string } {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier, 'ascii').digest('base64url') }
}

/** A fresh nonce (OIDC Core §3.1.2.1): 256 random bits. */
export function newNonce(): string {
  return randomBytes(32).toString('base64url')
}
