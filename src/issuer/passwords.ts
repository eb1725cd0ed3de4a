/**
 * Local passwords: Weka's rules, a length cap, and scrypt (node:crypto) with a per-user salt.
 * Hashes carry their parameters (`scrypt$N$r$p$salt$hash`) so the cost can be raised later.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { MAX_PASSWORD_LENGTH, passwordProblem } from '../config/passwordRules.ts'
import { GatehouseError } from '../errors.ts'

export { MAX_PASSWORD_LENGTH, passwordProblem }

// N=2^15, r=8: 32 MiB and tens of milliseconds per hash. Concurrency is bounded by the lockout
// slots (at most failedAttempts checks in flight per name).
const N = 32768
const R = 8
const P = 1
const KEYLEN = 32
const MAXMEM = 64 * 1024 * 1024

/** Throw 400 ERR_WEAK_PASSWORD naming the broken rule. */
export function assertPasswordPolicy(password: string): void {
  const p = passwordProblem(password)
  if (p !== undefined) throw new GatehouseError('ERR_WEAK_PASSWORD', { message: p })
}

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEYLEN, { N: n, r, p, maxmem: MAXMEM }, (err, key) => (err === null ? resolve(key) : reject(err)))
  })
}

/** Hash a password with a fresh salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scryptAsync(password, salt, N, R, P)
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

/** Check a password against a stored hash in constant time. Over-long input is refused unhashed. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string]
  // Hash even an over-long password's prefix so its timing matches the rest.
  const key = await scryptAsync(password.slice(0, MAX_PASSWORD_LENGTH), Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p))
  const expected = Buffer.from(hash, 'base64url')
  return password.length <= MAX_PASSWORD_LENGTH && key.length === expected.length && timingSafeEqual(key, expected)
}
