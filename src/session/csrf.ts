/**
 * The CSRF rule for state-changing requests of a session (SPEC §10): the request comes from
 * gatehouse's own origin AND carries the session's CSRF token. Either signal alone is a known
 * failure: origin checks alone miss same-site attackers on browsers without Fetch Metadata, and
 * tokens alone are defeated by any token leak (OWASP CSRF Prevention Cheat Sheet).
 */
import { createHash, timingSafeEqual } from 'node:crypto'

/** What the check needs from the request and the session. */
export interface CsrfInput {
  readonly method: string
  /** The `Sec-Fetch-Site` header, if sent. */
  readonly secFetchSite: string | undefined
  /** The `Origin` header, if sent. */
  readonly origin: string | undefined
  /** gatehouse's own origin as browsers serialize it (`new URL(x).origin`), e.g. `https://gh.example:14000`. */
  readonly expectedOrigin: string
  /** The token the request submitted (form field or header). */
  readonly submittedToken: string | undefined
  /** The session's token. */
  readonly sessionToken: string
}

/** Why a request is refused. */
export type CsrfRefusal = 'cross-site' | 'no-origin' | 'token-missing' | 'token-mismatch'

/** Outcome of `checkCsrf`. */
export type CsrfDecision = { readonly ok: true } | { readonly ok: false; readonly reason: CsrfRefusal }

// RFC 9110 §9.2.1: these change nothing, so they need no check.
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/**
 * Decide a request. Safe methods pass. Otherwise the origin must be ours — `Sec-Fetch-Site:
 * same-origin`, or an `Origin` equal to `expectedOrigin`; when both are sent, both must say so.
 * `Origin: null` counts only together with `Sec-Fetch-Site: same-origin`: a browser sends it on
 * its own form posts under `Referrer-Policy: no-referrer`, but also from sandboxed frames and
 * `data:` documents of any site. Then the submitted token must equal the session's (constant time).
 */
export function checkCsrf(i: CsrfInput): CsrfDecision {
  if (new URL(i.expectedOrigin).origin !== i.expectedOrigin) throw new TypeError(`expectedOrigin must be an origin like https://host:port, got ${JSON.stringify(i.expectedOrigin)}`)
  if (SAFE.has(i.method.toUpperCase())) return { ok: true }
  const site = i.secFetchSite?.trim().toLowerCase()
  const origin = i.origin?.trim()
  if (site !== undefined && site !== 'same-origin') return { ok: false, reason: 'cross-site' }
  if (origin === 'null') {
    if (site !== 'same-origin') return { ok: false, reason: 'cross-site' }
  } else if (origin !== undefined) {
    if (origin !== i.expectedOrigin) return { ok: false, reason: 'cross-site' }
  } else if (site === undefined) return { ok: false, reason: 'no-origin' }
  if (i.submittedToken === undefined || i.submittedToken === '') return { ok: false, reason: 'token-missing' }
  // Digests first: equal lengths for timingSafeEqual, and no early exit on length.
  if (i.sessionToken === '' || !timingSafeEqual(digest(i.submittedToken), digest(i.sessionToken))) return { ok: false, reason: 'token-mismatch' }
  return { ok: true }
}
