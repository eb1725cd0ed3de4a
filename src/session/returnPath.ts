/**
 * The return-to URL of the browser sign-in (`/oauth2/start?rd=PATH`): only a path on this same
 * origin, checked as oauth2-proxy learned to after its open-redirect advisories
 * (GHSA-qqxw-m5fj-f7gv `/\evil`, GHSA-j7px-6hwj-hpjg whitespace between slashes,
 * GHSA-5m6c-jp6f-2vcv tabs and `/./\`; pkg/app/redirect/validator.go), and stricter: only
 * printable ASCII, no backslash and no `//` anywhere (query included), no empty / `.` / `..` path segment, no `@` in the
 * path, and the same rules for every percent-decoded form (and its NFKC form), so a later
 * decoder — ours, a browser's, the upstream's — cannot turn it into `//evil`.
 */

/** The default return path, for anything refused. */
export const DEFAULT_RETURN_PATH = '/'
/** Longest return path kept (a browser's URL bar limit is far above; nothing legitimate is near it). */
export const MAX_RETURN_PATH = 2048

// Raw form: printable ASCII without space and backslash (a browser sends a path percent-encoded).
const RAW_OK = /^[\x21-\x5B\x5D-\x7E]+$/
// Control characters (C0, DEL, C1), whitespace other than the plain space (a file name may
// hold `%20`), and backslashes, in a decoded form.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BAD_DECODED = /[\u0000-\u001F\u007F-\u009F\u00A0\u1680\u2000-\u200F\u2028\u2029\u202F\u205F\u3000\uFEFF\\]/u
const MAX_DECODES = 4

/** Whether one form (raw or decoded) is a same-origin absolute path. */
function pathOk(s: string): boolean {
  if (!s.startsWith('/')) return false // relative, scheme (`https:`, `javascript:`), or nothing
  if (BAD_DECODED.test(s)) return false
  // `//` anywhere, query included: oauth2-proxy refuses it too, as `/redirect?url=//evil` hands
  // the visitor to the upstream application's own redirector.
  // Spaces are ignored here: `/ /evil` is `//evil` to a lenient parser (GHSA-j7px-6hwj-hpjg).
  if (s.replaceAll(' ', '').includes('//')) return false
  const end = s.search(/[?#]/)
  const p = end < 0 ? s : s.slice(0, end)
  if (p.includes('@')) return false // userinfo tricks: `/@evil`, `//user@evil`
  if (p === '/') return true
  // Every segment non-empty and not a dot segment: refuses `//evil`, `/./evil`, `/.//evil`,
  // `/a/../..`. Only the last may be empty: a directory-style path such as `/dashboard/` (its
  // `//` forms were refused above).
  const segs = p.slice(1).split('/')
  for (let i = 0; i < segs.length; i++) {
    const t = (segs[i] as string).trim()
    if ((t === '' && (i < segs.length - 1 || segs[i] !== '')) || t === '.' || t === '..') return false
  }
  return true
}

/**
 * `rd` when it is a path on this origin, else `/`. `rd` is the query parameter as received
 * (decoded once, by the URL parser).
 */
export function safeReturnPath(rd: unknown): string {
  if (typeof rd !== 'string' || rd.length === 0 || rd.length > MAX_RETURN_PATH) return DEFAULT_RETURN_PATH
  if (!RAW_OK.test(rd) || !pathOk(rd)) return DEFAULT_RETURN_PATH
  let form = rd
  for (let i = 0; i < MAX_DECODES; i++) {
    let next: string
    try {
      next = decodeURIComponent(form)
    } catch {
      return DEFAULT_RETURN_PATH // a stray '%' or a broken UTF-8 sequence
    }
    if (!pathOk(next) || !pathOk(next.normalize('NFKC'))) return DEFAULT_RETURN_PATH
    if (next === form) return rd
    form = next
  }
  return DEFAULT_RETURN_PATH // still changing after four decodings: nobody needs that
}
