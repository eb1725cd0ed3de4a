/**
 * Weaviate's routing rule (W8, SPEC §5): a token is a JWT when it has three dot-separated
 * base64url parts whose first two decode to JSON objects. Everything else is an API key.
 * Only the shape is read here; nothing is trusted before the signature is verified.
 */

/** The decoded (unverified) header and payload of a JWT-shaped token. */
export interface JwtShape {
  readonly header: Readonly<Record<string, unknown>>
  readonly payload: Readonly<Record<string, unknown>>
}

const B64URL = /^[A-Za-z0-9_-]*$/

/** Decode a JWT-shaped token's header and payload, or return undefined when it is not one. */
export function jwtShape(token: string): JwtShape | undefined {
  const a = token.indexOf('.')
  if (a === -1) return undefined
  const b = token.indexOf('.', a + 1)
  if (b === -1 || token.indexOf('.', b + 1) !== -1) return undefined
  const h = token.slice(0, a)
  const p = token.slice(a + 1, b)
  if (!B64URL.test(h) || !B64URL.test(p) || !B64URL.test(token.slice(b + 1))) return undefined
  const header = decodeObject(h)
  if (header === undefined) return undefined
  const payload = decodeObject(p)
  if (payload === undefined) return undefined
  return { header, payload }
}

function decodeObject(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
