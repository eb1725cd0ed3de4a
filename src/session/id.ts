/**
 * Session ids: 256 random bits, base64url, handed to the client in its cookie only. The store
 * keeps the SHA-256 of the id, so a copy of the store (a backup, a leaked Redis dump) holds no
 * cookie that would sign anyone in.
 */
import { createHash, randomBytes } from 'node:crypto'

/** Length of a session id: 32 random bytes in base64url, unpadded. */
export const SESSION_ID_LENGTH = 43

const ID_SHAPE = /^[A-Za-z0-9_-]{43}$/

/** A new session id (256 bits from the CSPRNG, base64url). */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url')
}

/** Whether `value` has the shape of a session id (checked before any store lookup). */
export function isSessionId(value: unknown): value is string {
  return typeof value === 'string' && ID_SHAPE.test(value)
}

/** The store key of a session id: SHA-256, base64url. */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url')
}

/** A new per-session CSRF token (256 bits, base64url). */
export function newCsrfToken(): string {
  return randomBytes(32).toString('base64url')
}
