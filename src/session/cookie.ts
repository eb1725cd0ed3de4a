/**
 * gatehouse's own cookies: written with the `__Host-` prefix (RFC 6265bis §4.1.3.2: the browser
 * accepts it only with `Secure`, `Path=/` and no `Domain`, so no sibling host can plant or
 * overwrite it), read strictly (RFC 6265 §4.2.1), and removed from the `Cookie` header before a
 * request is forwarded, so the upstream never sees a session id.
 */

/** `SameSite` of a session cookie: `Strict` for the console, `Lax` where a sign-in arrives by a cross-site redirect. */
export type SameSite = 'Strict' | 'Lax'

/** Attributes of `serializeHostCookie`. */
export interface HostCookieOptions {
  readonly sameSite: SameSite
  /** Seconds until the browser drops it; absent: a browser-session cookie. */
  readonly maxAgeSeconds?: number
}

// RFC 6265 §4.1.1: token (RFC 2616 §2.2) and cookie-octet.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const COOKIE_OCTETS = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/

/** A `Set-Cookie` value for a `__Host-` cookie: `Secure; HttpOnly; Path=/`, no `Domain`. */
export function serializeHostCookie(name: string, value: string, opts: HostCookieOptions): string {
  if (!name.startsWith('__Host-') || !TOKEN.test(name)) throw new TypeError(`cookie name ${JSON.stringify(name)} must be a token starting with __Host-`)
  if (!COOKIE_OCTETS.test(value)) throw new TypeError(`the value of cookie ${name} has characters a cookie cannot carry`)
  if (opts.sameSite !== 'Strict' && opts.sameSite !== 'Lax') throw new TypeError(`sameSite must be Strict or Lax, got ${String(opts.sameSite)}`)
  const maxAge = opts.maxAgeSeconds
  if (maxAge !== undefined && (!Number.isSafeInteger(maxAge) || maxAge < 0)) throw new TypeError(`maxAgeSeconds must be a whole number ≥ 0, got ${String(maxAge)}`)
  return `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=${opts.sameSite}${maxAge === undefined ? '' : `; Max-Age=${maxAge}`}`
}

/** A `Set-Cookie` value that removes the cookie (same attributes, empty value, `Max-Age=0`). */
export function clearHostCookie(name: string, sameSite: SameSite): string {
  return serializeHostCookie(name, '', { sameSite, maxAgeSeconds: 0 })
}

/** Reading one cookie: its value, or why there is none. */
export type CookieRead = { readonly ok: true; readonly value: string } | { readonly ok: false; readonly reason: 'absent' | 'duplicate' | 'malformed' }

function joined(header: string | readonly string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  // Several Cookie fields (HTTP/2 may split them) are one cookie-string (RFC 9113 §8.2.3).
  return typeof header === 'string' ? header : header.join('; ')
}

/** The name of one `;`-separated piece, as a browser would read it (whitespace trimmed); '' without `=`. */
function nameOf(piece: string): string {
  const eq = piece.indexOf('=')
  return eq < 0 ? '' : piece.slice(0, eq).trim()
}

/**
 * The value of cookie `name` in a `Cookie` header. Its pair must follow RFC 6265 §4.2.1
 * (token name, cookie-octets, optionally in double quotes); other cookies are not judged (they
 * belong to the upstream's application). When the name occurs more than once the answer is
 * `duplicate` and no value: browsers send every cookie that matches (another path, a cookie
 * planted by a sibling host before the `__Host-` one), and picking one would let a planted
 * cookie win — session fixation.
 */
export function readCookie(header: string | readonly string[] | undefined, name: string): CookieRead {
  const h = joined(header)
  if (h === undefined) return { ok: false, reason: 'absent' }
  let found: string | undefined
  let count = 0
  for (const piece of h.split(';')) {
    if (nameOf(piece) !== name) continue
    count++
    found = piece
  }
  if (count === 0) return { ok: false, reason: 'absent' }
  if (count > 1) return { ok: false, reason: 'duplicate' }
  // Strict for our own pair: OWS (SP / HTAB) around it, nothing around the '='.
  const pair = (found as string).replace(/^[ \t]+|[ \t]+$/g, '')
  if (!pair.startsWith(`${name}=`)) return { ok: false, reason: 'malformed' }
  let value = pair.slice(name.length + 1)
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
  if (!COOKIE_OCTETS.test(value)) return { ok: false, reason: 'malformed' }
  return { ok: true, value }
}

/**
 * The `Cookie` header to forward: every cookie whose name is one of `names` (compared without
 * regard to case and surrounding whitespace, so no spelling slips through) is removed; every other
 * cookie is kept byte for byte, in order. Undefined when nothing remains (drop the header).
 * `prefixes` removes whole families the same way (`__Host-gatehouse-`: every cookie gatehouse
 * sets, on either listener — cookies are not scoped by port).
 */
export function stripCookies(header: string | readonly string[] | undefined, names: Iterable<string>, prefixes: readonly string[] = []): string | undefined {
  const h = joined(header)
  if (h === undefined) return undefined
  const drop = new Set([...names].map((n) => n.toLowerCase()))
  const dropPrefixes = prefixes.map((p) => p.toLowerCase())
  const kept: string[] = []
  for (const piece of h.split(';')) {
    if (piece.trim() === '') continue
    const name = nameOf(piece).toLowerCase()
    if (drop.has(name) || dropPrefixes.some((p) => name.startsWith(p))) continue
    kept.push(piece)
  }
  if (kept.length === 0) return undefined
  kept[0] = (kept[0] as string).replace(/^[ \t]+/, '')
  return kept.join(';')
}
