/**
 * Attacker-chosen values (a token's `kid`, `alg`, `azp`; members of a JWKS) on their way into a
 * log line: bounded and escaped, so that a 10 KiB `kid` full of control characters can neither
 * flood the logs nor forge lines or terminal escapes in whatever displays them (CWE-117).
 */

/** Characters of a logged value kept at most; the rest is replaced by a count. */
export const LOG_VALUE_MAX = 64

// C0/C1 controls, DEL, line and paragraph separators, and bidirectional overrides (which can
// make a log line read differently from what it contains, CVE-2021-42574).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g // eslint-disable-line no-control-regex

/**
 * A JSON-quoted, escaped form of `v` for a log line, at most {@link LOG_VALUE_MAX} characters of
 * it, followed by how many were left out. Non-strings are shown by type only (with a short
 * number or boolean as is), never serialised whole.
 */
export function logValue(v: unknown, max: number = LOG_VALUE_MAX): string {
  if (v === null || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) return String(v)
  if (typeof v !== 'string') return Array.isArray(v) ? `<array of ${v.length}>` : `<${typeof v}>`
  let head = v.length > max ? v.slice(0, max) : v
  // Do not cut a surrogate pair in half (a lone surrogate is not valid UTF-8).
  if (head.length > 0 && /[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1)
  const quoted = JSON.stringify(head).replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return v.length > head.length ? `${quoted}…(+${v.length - head.length} chars)` : quoted
}
