/**
 * Whether a request that a session cookie would authenticate comes from a page of this origin.
 *
 * The browser session's cookie is `SameSite=Lax` (the provider's redirect back to the callback
 * must carry it), so a browser also sends it with a form POST from any page of the same *site*:
 * another port on this host, or a sibling subdomain. A bearer token cannot be forged that way; a
 * cookie can. So a state-changing request (anything but GET, HEAD, OPTIONS) and every WebSocket
 * handshake may use the session only when the browser says it comes from this origin:
 *
 * - `Sec-Fetch-Site`, when sent, must be `same-origin`;
 * - `Origin`, when sent, must be this listener's origin (`Origin: null` only together with
 *   `Sec-Fetch-Site: same-origin`, as in session/csrf.ts).
 *
 * Non-browser clients send neither header and are not affected (they carry no ambient cookie).
 * This origin is `browserLogin.redirectUrl`'s when configured, else the listener's scheme and the
 * request's Host; behind a TLS terminator (a plain-HTTP listener) the page's scheme is not the
 * listener's, so only the host is compared there.
 */
import type { IncomingHttpHeaders } from 'node:http'

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

/** The request's own origin as a browser on this listener would send it, or undefined. */
function expected(headers: IncomingHttpHeaders, proto: 'http' | 'https', redirectUrl: string | undefined): URL | undefined {
  try {
    if (redirectUrl !== undefined) return new URL(new URL(redirectUrl).origin)
    const host = headers.host ?? one(headers[':authority'])
    if (host === undefined || host === '') return undefined
    return new URL(`${proto}://${host}`)
  } catch {
    return undefined
  }
}

/**
 * True when a session may authenticate this request: a safe method (unless `always`, for
 * WebSocket handshakes), or browser signals that name this origin.
 */
export function sessionAllowed(method: string, headers: IncomingHttpHeaders, proto: 'http' | 'https', redirectUrl: string | undefined, always = false): boolean {
  if (!always && SAFE.has(method.toUpperCase())) return true
  const site = one(headers['sec-fetch-site'])?.trim().toLowerCase()
  if (site !== undefined && site !== 'same-origin') return false
  const origin = one(headers.origin)?.trim()
  if (origin === undefined) return true
  if (origin === 'null') return site === 'same-origin'
  const want = expected(headers, proto, redirectUrl)
  if (want === undefined) return false
  let got: URL
  try {
    got = new URL(origin)
  } catch {
    return false
  }
  // A plain-HTTP listener without redirectUrl sits behind a TLS terminator: compare the host.
  if (redirectUrl === undefined && proto === 'http') return got.host === want.host
  return got.origin === want.origin
}
