/**
 * Stage 4: extract the credential. Sources, in order: `Authorization: Bearer`, the qdrant
 * profile's `api-key` header, and — only when enabled — the `access_token` query parameter.
 * Credential query parameters (`access_token`, `api_key`…) leave the forwarded query always.
 * Presenting more than one (or two different ones) is refused: a request must not be judged on
 * one credential and served on another.
 */
import type { IncomingMessage } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { takeQueryToken } from '../http/target.ts'

/** Where a credential was found. */
export type CredentialSource = 'authorization' | 'api-key' | 'query'

export interface Credential {
  readonly token: string
  readonly source: CredentialSource
}

export interface ExtractOptions {
  /** Accept the `api-key` header (qdrant profile). */
  readonly apiKeyHeader: boolean
  /** Accept `?access_token=` as a credential (it is removed from the forwarded query either way). */
  readonly queryToken: boolean
}

/** Tokens longer than this are refused before any parsing (a cheap guard against huge headers). */
export const MAX_TOKEN_LENGTH = 16 * 1024

/**
 * Extract the credential from a request.
 *
 * @returns the credential (or undefined) and the query to forward.
 * @throws GatehouseError ERR_INVALID_TOKEN for a non-Bearer or empty Authorization header,
 *   ERR_AMBIGUOUS_CREDENTIAL for more than one credential.
 */
export function extractCredential(req: Pick<IncomingMessage, 'headers' | 'rawHeaders'>, query: string, opts: ExtractOptions): { credential: Credential | undefined; query: string } {
  const found: Credential[] = []
  const auth = req.headers.authorization
  if (auth !== undefined) {
    // Node keeps only the first of duplicate Authorization headers; count them ourselves.
    if (countRaw(req.rawHeaders, 'authorization') > 1) throw new GatehouseError('ERR_AMBIGUOUS_CREDENTIAL', { detail: 'several Authorization headers' })
    // RFC 9110 §11.1: the scheme is case-insensitive. Unlike Weaviate (which treats `Basic …` as
    // no credential), a presented credential we cannot use is a 401, never anonymous.
    const token = bearerToken(auth)
    if (token === undefined) throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: unsupported authorization scheme; send Authorization: Bearer <token>', detail: 'non-bearer scheme' })
    if (token === '') throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: empty bearer token', detail: 'empty bearer' })
    found.push({ token, source: 'authorization' })
  }
  if (opts.apiKeyHeader) {
    const k = req.headers['api-key']
    if (k !== undefined) {
      if (countRaw(req.rawHeaders, 'api-key') > 1) throw new GatehouseError('ERR_AMBIGUOUS_CREDENTIAL', { detail: 'several api-key headers' })
      const token = String(k).trim()
      if (token === '') throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: empty api-key header', detail: 'empty api-key' })
      found.push({ token, source: 'api-key' })
    }
  }
  // Credential parameters are removed from the forwarded query in every case, accepted or not
  // (an upstream's access log must never hold a token).
  const q = takeQueryToken(query)
  const outQuery = q.query
  if (opts.queryToken) {
    if (q.count > 1) throw new GatehouseError('ERR_AMBIGUOUS_CREDENTIAL', { detail: 'several access_token parameters' })
    if (q.token !== undefined) {
      if (q.token === '') throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: empty access_token', detail: 'empty query token' })
      found.push({ token: q.token, source: 'query' })
    }
  }
  if (found.length > 1) {
    const first = found[0] as Credential
    // The same token in two places (e.g. qdrant clients sending both headers) is not ambiguous.
    if (!found.every((c) => c.token === first.token)) throw new GatehouseError('ERR_AMBIGUOUS_CREDENTIAL', { detail: `credentials in ${found.map((c) => c.source).join(' and ')}` })
  }
  for (const c of found) if (c.token.length > MAX_TOKEN_LENGTH) throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: token too large', detail: `token of ${c.token.length} bytes` })
  return { credential: found[0], query: outQuery }
}

function countRaw(raw: readonly string[], lower: string): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === lower.length && name.toLowerCase() === lower) n++
  }
  return n
}

/**
 * The token of `Bearer <token>` (scheme case-insensitive, one or more spaces, surrounding
 * whitespace trimmed), or undefined for any other scheme. Same as /^bearer +(.*)$/i then trim,
 * without scanning the token with a regular expression.
 */
export function bearerToken(auth: string): string | undefined {
  if (auth.length < 7 || auth.charCodeAt(6) !== 0x20 || auth.slice(0, 6).toLowerCase() !== 'bearer') return undefined
  let i = 7
  while (i < auth.length && auth.charCodeAt(i) === 0x20) i++
  const token = auth.slice(i)
  return token.length > 0 && (token.charCodeAt(0) <= 0x20 || token.charCodeAt(token.length - 1) <= 0x20) ? token.trim() : token
}
