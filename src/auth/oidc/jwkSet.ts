/**
 * What of a fetched JWK set may be used to verify signatures (RFC 7517):
 * - private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`; `k` of a symmetric key) are dropped,
 *   whatever the issuer publishes, and reported so the operator learns the keys are exposed;
 * - symmetric (`oct`) keys are never used (HS* is refused, RFC 8725 §3.1);
 * - a key whose `use` is not `sig`, or whose `key_ops` do not include `verify`, is not used
 *   (RFC 7517 §4.2, §4.3: an encryption key must not verify signatures);
 * - a key node:crypto cannot import is not used.
 * The summary of the document is for logs: bounded, escaped, and without key material.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { JWK } from 'jose'
import { logValue } from './logValue.ts'

/** Members that make a JWK private (RFC 7518 §6.2.2, §6.3.2, §6.4.1). */
export const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const

/** Keys described in a summary at most (a JWKS may hold many). */
const SUMMARY_KEYS = 10

/** The verdict on one fetched JWK set. */
export interface SortedJwks {
  /** Keys usable for verification, private members removed. */
  readonly usable: JWK[]
  /** How many of them could actually verify (not e.g. RSA under 2048 bits). */
  readonly strong: number
  /** Private member names found anywhere in the set (empty when none). */
  readonly privateMembers: readonly string[]
  /** Kids (bounded, escaped) of the keys that carried private members. */
  readonly privateKids: readonly string[]
  /** A bounded, escaped description of every key and why it is not used; no key material. */
  readonly summary: string
}

/** Sort the `keys` array of a JWKS into usable keys and the rest. */
export function sortJwks(keys: readonly unknown[]): SortedJwks {
  const usable: JWK[] = []
  const privateMembers = new Set<string>()
  const privateKids: string[] = []
  const lines: string[] = []
  let strong = 0
  for (const raw of keys) {
    const verdict = sortKey(raw)
    if (verdict.privateMembers.length > 0) {
      verdict.privateMembers.forEach((m) => privateMembers.add(m))
      if (privateKids.length < SUMMARY_KEYS) privateKids.push(logValue(isObject(raw) ? raw.kid : undefined))
    }
    if (verdict.key !== undefined) {
      usable.push(verdict.key)
      if (verdict.strong) strong++
    }
    if (lines.length < SUMMARY_KEYS) lines.push(`${describe(raw)}: ${verdict.why}`)
  }
  const more = keys.length > SUMMARY_KEYS ? `; and ${keys.length - SUMMARY_KEYS} more` : ''
  const summary = keys.length === 0 ? 'no keys' : `${keys.length} key(s): ${lines.join('; ')}${more}`
  return { usable, strong, privateMembers: [...privateMembers], privateKids, summary }
}

interface KeyVerdict {
  readonly key: JWK | undefined
  readonly strong: boolean
  readonly privateMembers: readonly string[]
  readonly why: string
}

function sortKey(raw: unknown): KeyVerdict {
  if (!isObject(raw)) return { key: undefined, strong: false, privateMembers: [], why: 'not a JSON object' }
  const privateMembers = PRIVATE_MEMBERS.filter((m) => Object.hasOwn(raw, m))
  const pub: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) if (!(PRIVATE_MEMBERS as readonly string[]).includes(k)) pub[k] = v
  const no = (why: string): KeyVerdict => ({ key: undefined, strong: false, privateMembers, why })
  const kty = pub.kty
  if (typeof kty !== 'string') return no('no kty')
  if (kty === 'oct') return no('symmetric key (never used)')
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return no('unsupported kty')
  if (pub.use !== undefined && pub.use !== 'sig') return no('use is not sig')
  if (pub.key_ops !== undefined && !(Array.isArray(pub.key_ops) && pub.key_ops.includes('verify'))) return no('key_ops lack verify')
  let strong: boolean
  try {
    const k = createPublicKey({ key: pub as JsonWebKey, format: 'jwk' })
    strong = k.asymmetricKeyType !== 'rsa' || (k.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048
  } catch {
    return no('not importable')
  }
  return { key: pub as JWK, strong, privateMembers, why: strong ? 'usable' : 'RSA under 2048 bits' }
}

/** One key for a log line: kid, kty, use, alg, key_ops — bounded and escaped, never key material. */
function describe(raw: unknown): string {
  if (!isObject(raw)) return logValue(raw)
  const ops = Array.isArray(raw.key_ops) ? `[${raw.key_ops.slice(0, 4).map((x) => logValue(x, 16)).join(',')}]` : logValue(raw.key_ops, 16)
  return `kid=${logValue(raw.kid)} kty=${logValue(raw.kty, 8)} use=${logValue(raw.use, 8)} alg=${logValue(raw.alg, 8)} key_ops=${ops}`
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
