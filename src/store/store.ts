/**
 * The state store: everything gatehouse changes at runtime (local users, token generations,
 * refresh tokens, lockout counters, settings). The interface is asynchronous and every mutation
 * is one store operation — no read-modify-write in callers — so that a shared implementation
 * (Redis, for several replicas) can make each one atomic. `FileStore` is the embedded one.
 */

/** A local user. */
export interface UserRecord {
  readonly username: string
  readonly uid: string
  readonly role: 'admin' | 'readonly' | 'regular'
  /** `scrypt$N$r$p$salt$hash` (base64url parts). */
  readonly passwordHash: string
  readonly mustChangePassword: boolean
  /**
   * Token generation: tokens carry the generation they were issued in; revocation and password
   * changes increment it, so every earlier token fails at once and later ones (even in the same
   * second) work.
   */
  readonly generation: number
  readonly createdAt: number
}

/** A refresh token, stored by the SHA-256 of its value. */
export interface RefreshRecord {
  readonly username: string
  /** Every refresh token descending from one login shares a family. */
  readonly family: string
  readonly generation: number
  readonly expiresAt: number
  readonly used: boolean
}

/** Failure counter of one login name (known or not). */
export interface LockState {
  readonly failures: number
  /** Attempts being checked right now (reserved slots). */
  readonly pending: number
  readonly lockedUntil: number
}

export interface LockPolicy {
  readonly failedAttempts: number
  readonly lockoutMs: number
}

/** Result of reserving a login attempt. */
export type AttemptSlot = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number }

/**
 * A signed-in person's session (web console on the admin listener, browser sign-in on the data
 * listener), stored under the SHA-256 of its id: the id itself lives only in the client's
 * cookie, so a copy of the store yields no usable cookie. See docs/sessions.md.
 */
export interface SessionRecord {
  readonly kind: 'console' | 'browser'
  readonly username: string
  readonly method: 'local' | 'oidc'
  readonly groups: readonly string[]
  readonly email?: string
  /** A local user's token generation at sign-in: the session dies when it moves on. */
  readonly generation?: number
  /** Per-session CSRF token (random, base64url), compared in constant time. */
  readonly csrfToken: string
  readonly createdAt: number
  readonly lastSeenAt: number
  /** Idle timeout of this session (ms), fixed at creation. */
  readonly idleTimeoutMs: number
  /** Absolute expiry (epoch ms): createdAt + the absolute lifetime. */
  readonly expiresAt: number
  /**
   * OIDC sign-in only: the provider's tokens, sealed (AES-256-GCM) under a key derived from the
   * session id, which the store never holds — so the store alone yields no refresh token.
   */
  readonly oidc?: { readonly issuer: string; readonly sealed: string; readonly expiresAt: number }
}

/**
 * Live sessions one user (same `username`, `method` and `kind`) may hold; storing one more ends
 * the oldest. Without a cap, a signed-in user looping sign-ins would grow the store without
 * bound (the file store rewrites every session on each change). 20 covers many browsers and
 * devices. See docs/sessions.md.
 */
export const MAX_SESSIONS_PER_USER = 20

/** Outcome of `touchSession`: the extended session, or why there is none (an expired one is deleted). */
export type SessionTouch = { readonly ok: true; readonly session: SessionRecord } | { readonly ok: false; readonly reason: 'unknown' | 'idle-expired' | 'expired' }

export interface StateStore {
  getUser(username: string): Promise<UserRecord | undefined>
  listUsers(): Promise<UserRecord[]>
  /** Create; false when the name exists. */
  createUser(u: UserRecord): Promise<boolean>
  /** Replace the password (and the must-change flag) and bump the generation; the new generation, or undefined when no such user. */
  setPassword(username: string, passwordHash: string, mustChangePassword: boolean): Promise<number | undefined>
  /** Change the role and bump the generation (tokens carry the role, so every earlier one ends); the new generation, or undefined when no such user. */
  setRole(username: string, role: UserRecord['role']): Promise<number | undefined>
  /** Bump the generation (revoke every earlier token); the new generation, or undefined. */
  bumpGeneration(username: string): Promise<number | undefined>
  deleteUser(username: string): Promise<boolean>

  putRefresh(hash: string, r: RefreshRecord): Promise<void>
  /** Atomically mark a refresh token used; returns its state before (undefined: unknown). */
  useRefresh(hash: string): Promise<RefreshRecord | undefined>
  /** Revoke every refresh token of a family, and remember the family as revoked (for its access tokens). */
  revokeFamily(family: string): Promise<void>
  isFamilyRevoked(family: string): Promise<boolean>

  /** Reserve a login attempt for `name` under `policy` (never more than `failedAttempts` in flight or failed). */
  reserveAttempt(name: string, policy: LockPolicy, now: number): Promise<AttemptSlot>
  /** Finish a reserved attempt: success clears the counter; failure counts and may lock. */
  finishAttempt(name: string, success: boolean, policy: LockPolicy, now: number): Promise<LockState>
  lockState(name: string, now: number): Promise<LockState>
  clearLocks(): Promise<void>

  /**
   * Store a new session under the SHA-256 (base64url) of its id. In the same atomic step, when
   * that user (same `username`, `method` and `kind`) then has more than `MAX_SESSIONS_PER_USER`
   * live sessions, the oldest others (by `createdAt`, ties by `lastSeenAt`) are deleted; the new
   * one always stays. Expired sessions do not count (and may be dropped meanwhile).
   */
  putSession(hash: string, s: SessionRecord): Promise<void>
  /** Read a session as stored (no expiry check). */
  getSession(hash: string): Promise<SessionRecord | undefined>
  /**
   * One atomic step: refuse (and delete) a session that is idle-expired (`now - lastSeenAt >=
   * idleTimeoutMs`) or past `expiresAt`, else move `lastSeenAt` to `now` and return it.
   */
  touchSession(hash: string, now: number): Promise<SessionTouch>
  /**
   * One step: replace the sealed OIDC tokens of a session (after a refresh); false when the
   * session is gone (ended meanwhile: the refresh is not resurrected). Nothing else changes.
   */
  updateSessionOidc(hash: string, oidc: NonNullable<SessionRecord['oidc']>): Promise<boolean>
  /** End one session; false when there was none. */
  deleteSession(hash: string): Promise<boolean>
  /** End every session of `username` (only those signed in with `method`, when given); how many ended. */
  deleteSessionsOf(username: string, method?: SessionRecord['method']): Promise<number>

  getSetting<T>(key: string): Promise<T | undefined>
  putSetting(key: string, value: unknown): Promise<void>
  deleteSetting(key: string): Promise<void>
}

/** Every operation of `StateStore`, by name: the metrics time and count these (docs/metrics.md). */
export const STATE_STORE_OPERATIONS = [
  'getUser', 'listUsers', 'createUser', 'setPassword', 'setRole', 'bumpGeneration', 'deleteUser',
  'putRefresh', 'useRefresh', 'revokeFamily', 'isFamilyRevoked',
  'reserveAttempt', 'finishAttempt', 'lockState', 'clearLocks',
  'putSession', 'getSession', 'touchSession', 'updateSessionOidc', 'deleteSession', 'deleteSessionsOf',
  'getSetting', 'putSetting', 'deleteSetting',
] as const satisfies readonly (keyof StateStore)[]

/**
 * What the verified-token cache needs synchronously on every hit: a user's current token
 * generation and whether a token family was revoked. The embedded store reads its memory; a
 * worker process reads a mirror that the primary updates (and waits for) on every change.
 */
export interface SyncView {
  generationSync(username: string): number | undefined
  familyRevokedSync(family: string): boolean
}

/** A store whose settings changes can be observed (workers learn of TLS/CA changes this way). */
export interface IssuerStore extends StateStore, SyncView {
  /** Call `fn(key)` after a setting changed in this or another process. */
  onSettingChange?(fn: (key: string) => void): void
}
