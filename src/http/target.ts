/**
 * Stage 2: parse and normalize the request target.
 *
 * Authorization is decided on the normalized path, and the upstream receives exactly that path,
 * so what was judged is what is served. Anything whose meaning could differ between gatehouse
 * and the upstream is refused with 400 instead of guessed at:
 * - encoded `/` or `\` (`%2F`, `%5C`) and raw `\`: some servers decode them into separators;
 * - double-encoded separators and dots (`%252F`, `%252E`, `%255C`): some servers decode twice;
 * - `;` matrix parameters: some servers strip them before routing (Envoy CVE-2026-73511);
 * - a fragment (`#`, never sent by real clients; oauth2-proxy GHSA-pxq7-h93f-9jrg);
 * - control characters, encoded NUL, non-ASCII bytes.
 * Dot segments (`.`, `..`, including `%2e`) and duplicate slashes are resolved (RFC 3986 §5.2.4,
 * §6.2.2). The query string is never used for decisions (oauth2-proxy GHSA-7rh7-c77v-6434).
 */
import { GatehouseError } from '../errors.ts'

/** The normalized request target. */
export interface Target {
  /** Normalized path: judged by the authorizer and sent upstream. */
  readonly path: string
  /** Raw query without the leading `?` ('' when absent). */
  readonly query: string
}

const HEX = /^[0-9A-Fa-f]{2}$/

/**
 * Parse `req.url` (origin-form or absolute-form) into a normalized target.
 *
 * @throws GatehouseError `ERR_BAD_PATH` for an ambiguous or malformed target.
 */
export function parseTarget(url: string): Target {
  let rest = url
  if (!rest.startsWith('/')) {
    // absolute-form (RFC 9112 §3.2.2): keep only path and query
    const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(rest)
    if (m === null) throw bad('request target is not a path')
    rest = rest.slice(m[0].length)
    if (rest === '' || rest.startsWith('?')) rest = `/${rest}`
  }
  const q = rest.indexOf('?')
  const rawPath = q === -1 ? rest : rest.slice(0, q)
  const query = q === -1 ? '' : rest.slice(q + 1)
  if (query.includes('#')) throw bad('fragment in request target')
  return { path: normalizePath(rawPath), query }
}

/**
 * Normalize a raw path. Exported for `explain` and unit tests.
 *
 * @throws GatehouseError `ERR_BAD_PATH`
 */
export function normalizePath(raw: string): string {
  // Fast path: a path without percent-encoding (the common case) is checked without copying
  // and needs only the dot-segment/slash pass.
  let i = 0
  for (; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x25 /* % */) break
    checkPathChar(c)
  }
  if (i === raw.length) return removeDotSegments(raw)
  let decoded = raw.slice(0, i)
  for (; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c !== 0x25 /* % */) {
      checkPathChar(c)
      decoded += raw[i]
      continue
    }
    const hex = raw.slice(i + 1, i + 3)
    if (!HEX.test(hex)) throw bad('malformed percent-encoding in path')
    const byte = parseInt(hex, 16)
    i += 2
    if (isUnreserved(byte)) {
      decoded += String.fromCharCode(byte)
      continue
    }
    if (byte === 0x2f || byte === 0x5c) throw bad('encoded slash or backslash in path')
    if (byte < 0x20 || byte === 0x7f) throw bad('encoded control character in path')
    decoded += `%${hex.toUpperCase()}`
  }
  // %25XX where XX decodes to a separator or a dot: a server that decodes twice would see a
  // different path. Checked on the once-decoded form, so `%25%32%66` is caught like `%252f`.
  if (decoded.includes('%25') && /%25(?:2f|5c|2e)/i.test(decoded)) throw bad('double-encoded separator in path')
  return removeDotSegments(decoded)
}

/** RFC 3986 §5.2.4 plus merging of empty segments (duplicate slashes). */
/** A literal (not percent-encoded) path character gatehouse refuses. */
function checkPathChar(c: number): void {
  if (c <= 0x20 || c >= 0x7f) throw bad('control, space or non-ASCII character in path')
  if (c === 0x5c /* \ */) throw bad('backslash in path')
  if (c === 0x23 /* # */) throw bad('fragment in request target')
  if (c === 0x3b /* ; */) throw bad('matrix parameter (;) in path')
}

function removeDotSegments(p: string): string {
  if (!p.includes('//') && !p.includes('/.')) return p === '' ? '/' : p
  const segs = p.split('/')
  const out: string[] = []
  let trailing = false
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i] as string
    const last = i === segs.length - 1
    if (s === '' || s === '.') {
      trailing = last
      continue
    }
    if (s === '..') {
      out.pop()
      trailing = last
      continue
    }
    out.push(s)
    trailing = false
  }
  return out.length === 0 ? '/' : `/${out.join('/')}${trailing ? '/' : ''}`
}

function isUnreserved(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e
}

function bad(detail: string): GatehouseError {
  return new GatehouseError('ERR_BAD_PATH', { detail })
}

/**
 * Query parameters that carry a credential, removed before every forward whether or not query
 * tokens are accepted: an upstream writes its query strings into access logs, so a token there
 * leaks even when gatehouse never used it. Names are compared percent-decoded (Go's
 * url.ParseQuery, Node's URLSearchParams and most servers decode names, so `access%5Ftoken` is
 * `access_token` to the upstream) and case-insensitively (a spelling the upstream ignores would
 * still end up in its logs). `key` and `token` alone are too common to remove. For removal, `;`
 * separates parameters as `&` does (Rack 2, Python before 3.9.2 and other servers split on both)
 * and a trailing `[]` (raw or `%5B%5D`; the PHP/Rack array form) is not part of the name.
 */
export const QUERY_CREDENTIAL_NAMES: ReadonlySet<string> = new Set(['access_token', 'api_key', 'apikey', 'api-key'])

// Cheap pre-check: a query that cannot contain one of the names is returned as it is.
const MAYBE_CREDENTIAL = /token|key|%/i

/**
 * Remove every credential parameter (QUERY_CREDENTIAL_NAMES) from a raw query, keeping the rest
 * byte for byte and in order. Returns the `access_token` value (the only name accepted as a
 * credential, RFC 6750 §2.3, compared exactly after decoding) and how many there were; more than
 * one is ambiguous.
 *
 * A credential name is looked for in every `;`-separated segment of every `&`-separated
 * parameter, and the segment that carries it is dropped (`a=1;access_token=S` forwards `a=1`);
 * a name with a trailing `[]` is dropped the same way. Neither shape is ever accepted as the
 * credential: only an `&`-separated parameter named exactly `access_token`, without `;` in it,
 * is (as WHATWG URLSearchParams and RFC 6750 read a query).
 */
export function takeQueryToken(query: string): { token: string | undefined; query: string; count: number } {
  if (query === '' || !MAYBE_CREDENTIAL.test(query)) return { token: undefined, query, count: 0 }
  const kept: string[] = []
  let token: string | undefined
  let count = 0
  let removed = false
  for (const part of query.split('&')) {
    if (part.includes(';')) {
      // Segments without a credential name are kept byte for byte, joined as they came.
      const segs = part.split(';')
      const rest = segs.filter((seg) => !isCredentialName(paramName(seg)))
      if (rest.length === segs.length) kept.push(part)
      else {
        removed = true
        if (rest.length > 0) kept.push(rest.join(';'))
      }
      continue
    }
    const eq = part.indexOf('=')
    const name = paramName(part)
    if (name === 'access_token') {
      count++
      token = eq === -1 ? '' : safeDecode(part.slice(eq + 1).replace(/\+/g, ' '))
      removed = true
    } else if (isCredentialName(name)) removed = true
    else kept.push(part)
  }
  return { token, query: removed ? kept.join('&') : query, count }
}

/** A parameter's name, percent-decoded. */
function paramName(param: string): string {
  const eq = param.indexOf('=')
  return safeDecode(eq === -1 ? param : param.slice(0, eq))
}

/** Whether a decoded name is a credential's, in any case, with or without a trailing `[]`. */
function isCredentialName(name: string): boolean {
  const n = name.toLowerCase()
  return QUERY_CREDENTIAL_NAMES.has(n.endsWith('[]') ? n.slice(0, -2) : n)
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
