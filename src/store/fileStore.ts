/**
 * The embedded state store: memory for reads, and one JSON file per collection under
 * `<stateDir>/store/`, each rewritten atomically (temp file, fsync, rename, directory fsync)
 * before the operation resolves. A crash at any moment leaves the old or the new file, never a
 * torn one. Single-process: operations run one after another on the event loop, which is what
 * makes each of them atomic here.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { GatehouseError } from '../errors.ts'
import { writeFileAtomic } from './atomic.ts'
import { MAX_SESSIONS_PER_USER, type AttemptSlot, type IssuerStore, type LockPolicy, type LockState, type RefreshRecord, type SessionRecord, type SessionTouch, type UserRecord } from './store.ts'

/** The collections of the file store (one JSON file each under `<stateDir>/store/`). */
export type FileStoreContents = Files

interface Files {
  users: Record<string, UserRecord>
  refresh: Record<string, RefreshRecord>
  revokedFamilies: Record<string, number>
  lockout: Record<string, LockState>
  settings: Record<string, unknown>
  sessions: Record<string, SessionRecord>
}

// Failure counters of unknown names could be sprayed without bound; beyond this many the
// oldest unlocked entries are dropped.
const MAX_LOCK_ENTRIES = 100_000
// A touch (every request of a session) rewrites sessions.json at most this often; memory is
// always current, so only a restart can see a lastSeenAt up to this much older (the safe side:
// the session idles out earlier, never later).
const SESSION_TOUCH_PERSIST_MS = 60_000
const UNLOCKED: LockState = Object.freeze({ failures: 0, pending: 0, lockedUntil: 0 })

const EMPTY: { readonly [K in keyof Files]: () => Files[K] } = { users: () => ({}), refresh: () => ({}), revokedFamilies: () => ({}), lockout: () => ({}), settings: () => ({}), sessions: () => ({}) }

export class FileStore implements IssuerStore {
  readonly #dir: string
  readonly #d: Files
  /** The text last written (or read) per file: what a failed write rolls back to. */
  readonly #saved = new Map<keyof Files, string>()
  readonly #touchPersistMs: number
  #sessionsSavedAt = 0

  /**
   * Open (or create) the store in `<stateDir>/store`. Unreadable files are an error, not an empty
   * store. `sessionTouchPersistMs`: how often session touches alone rewrite the file (default 60 s).
   */
  constructor(stateDir: string, opts: { readonly sessionTouchPersistMs?: number } = {}) {
    this.#touchPersistMs = opts.sessionTouchPersistMs ?? SESSION_TOUCH_PERSIST_MS
    this.#dir = path.join(stateDir, 'store')
    this.#d = {
      users: this.#load('users', {}),
      refresh: this.#load('refresh', {}),
      revokedFamilies: this.#load('revokedFamilies', {}),
      lockout: this.#load('lockout', {}),
      settings: this.#load('settings', {}),
      sessions: this.#load('sessions', {}),
    }
    this.#sweepSessions(Date.now())
    // Attempts in flight do not survive a restart.
    for (const [k, v] of Object.entries(this.#d.lockout)) this.#d.lockout[k] = { ...v, pending: 0 }
  }

  #load<K extends keyof Files>(name: K, empty: Files[K]): Files[K] {
    const file = path.join(this.#dir, `${name}.json`)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return empty
      throw e
    }
    this.#saved.set(name, text)
    return JSON.parse(text) as Files[K]
  }

  /**
   * Persist one file. When the write fails (disk full, read-only, permissions), the in-memory
   * copy is rolled back to what is on disk (lockout counters excepted), so memory never claims a
   * change the disk lacks, and
   * the caller gets 503 ERR_STORE_UNAVAILABLE — the operation fails cleanly and can be retried.
   */
  #save(name: keyof Files): void {
    const text = JSON.stringify(this.#d[name])
    try {
      writeFileAtomic(path.join(this.#dir, `${name}.json`), text, 0o600)
    } catch (e) {
      // Lockout counters stay in memory even so: failing open there would let a guesser try
      // passwords without limit while the disk is full (memory ahead of disk is the strict side).
      if (name !== 'lockout') {
        const prev = this.#saved.get(name)
        ;(this.#d as Record<keyof Files, unknown>)[name] = prev === undefined ? EMPTY[name]() : JSON.parse(prev)
      }
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO'
      throw new GatehouseError('ERR_STORE_UNAVAILABLE', { detail: `writing ${name}.json: ${code}`, cause: e })
    }
    this.#saved.set(name, text)
    if (name === 'sessions') this.#sessionsSavedAt = Date.now()
  }

  async getUser(username: string): Promise<UserRecord | undefined> {
    return Object.hasOwn(this.#d.users, username) ? this.#d.users[username] : undefined
  }

  async listUsers(): Promise<UserRecord[]> {
    return Object.values(this.#d.users).sort((a, b) => a.username.localeCompare(b.username))
  }

  async createUser(u: UserRecord): Promise<boolean> {
    if (Object.hasOwn(this.#d.users, u.username)) return false
    this.#d.users[u.username] = u
    this.#save('users')
    return true
  }

  async setPassword(username: string, passwordHash: string, mustChangePassword: boolean): Promise<number | undefined> {
    const u = await this.getUser(username)
    if (u === undefined) return undefined
    const generation = u.generation + 1
    this.#d.users[username] = { ...u, passwordHash, mustChangePassword, generation }
    this.#save('users')
    return generation
  }

  async setRole(username: string, role: UserRecord['role']): Promise<number | undefined> {
    const u = await this.getUser(username)
    if (u === undefined) return undefined
    const generation = u.generation + 1
    this.#d.users[username] = { ...u, role, generation }
    this.#save('users')
    return generation
  }

  async bumpGeneration(username: string): Promise<number | undefined> {
    const u = await this.getUser(username)
    if (u === undefined) return undefined
    const generation = u.generation + 1
    this.#d.users[username] = { ...u, generation }
    this.#save('users')
    return generation
  }

  async deleteUser(username: string): Promise<boolean> {
    if (!Object.hasOwn(this.#d.users, username)) return false
    delete this.#d.users[username]
    this.#save('users')
    return true
  }

  async putRefresh(hash: string, r: RefreshRecord): Promise<void> {
    const now = Date.now()
    // Expired and spent tokens are pruned as new ones arrive, so the file stays small.
    for (const [k, v] of Object.entries(this.#d.refresh)) if (v.expiresAt < now) delete this.#d.refresh[k]
    this.#d.refresh[hash] = r
    this.#save('refresh')
  }

  async useRefresh(hash: string): Promise<RefreshRecord | undefined> {
    const r = Object.hasOwn(this.#d.refresh, hash) ? this.#d.refresh[hash] : undefined
    if (r === undefined) return undefined
    if (!r.used) {
      this.#d.refresh[hash] = { ...r, used: true }
      this.#save('refresh')
    }
    return r
  }

  async revokeFamily(family: string): Promise<void> {
    for (const [k, v] of Object.entries(this.#d.refresh)) if (v.family === family) delete this.#d.refresh[k]
    this.#d.revokedFamilies[family] = Date.now()
    this.#save('refresh')
    this.#save('revokedFamilies')
  }

  async isFamilyRevoked(family: string): Promise<boolean> {
    return Object.hasOwn(this.#d.revokedFamilies, family)
  }

  /**
   * A copy of every collection as this store holds it (expired sessions already swept, attempts
   * in flight zeroed): what `gatehouse store migrate` copies into a shared store.
   */
  contents(): FileStoreContents {
    return structuredClone(this.#d)
  }

  /** Every user's generation and every revoked family (the workers' mirror starts from this). */
  snapshot(): { generations: Record<string, number>; families: string[] } {
    const generations: Record<string, number> = {}
    for (const [k, v] of Object.entries(this.#d.users)) generations[k] = v.generation
    return { generations, families: Object.keys(this.#d.revokedFamilies) }
  }

  /** Synchronous form of isFamilyRevoked, for the verified-token cache's revalidation. */
  familyRevokedSync(family: string): boolean {
    return Object.hasOwn(this.#d.revokedFamilies, family)
  }

  /** Synchronous user generation, for the verified-token cache's revalidation. */
  generationSync(username: string): number | undefined {
    return Object.hasOwn(this.#d.users, username) ? this.#d.users[username]?.generation : undefined
  }

  #lock(name: string, now: number): LockState {
    const s = Object.hasOwn(this.#d.lockout, name) ? (this.#d.lockout[name] as LockState) : UNLOCKED
    // A lock that has run out starts a fresh count.
    return s.lockedUntil !== 0 && s.lockedUntil <= now ? { failures: 0, pending: s.pending, lockedUntil: 0 } : s
  }

  async reserveAttempt(name: string, policy: LockPolicy, now: number): Promise<AttemptSlot> {
    const s = this.#lock(name, now)
    if (s.lockedUntil > now) return { ok: false, retryAfterMs: s.lockedUntil - now }
    if (s.failures + s.pending >= policy.failedAttempts) {
      // Every remaining attempt is already being checked; wait for their outcome.
      return { ok: false, retryAfterMs: 1000 }
    }
    this.#d.lockout[name] = { ...s, pending: s.pending + 1 }
    this.#prune(now)
    return { ok: true }
  }

  async finishAttempt(name: string, success: boolean, policy: LockPolicy, now: number): Promise<LockState> {
    const s = this.#lock(name, now)
    const pending = Math.max(0, s.pending - 1)
    let next: LockState
    if (success) next = { failures: 0, pending, lockedUntil: 0 }
    else {
      const failures = s.failures + 1
      next = { failures, pending, lockedUntil: failures >= policy.failedAttempts ? now + policy.lockoutMs : s.lockedUntil }
    }
    if (next.failures === 0 && next.pending === 0 && next.lockedUntil === 0) delete this.#d.lockout[name]
    else this.#d.lockout[name] = next
    // Persist failures so a restart does not unlock an account (pending is not persisted state).
    if (!success || s.failures > 0) this.#save('lockout')
    return next
  }

  async lockState(name: string, now: number): Promise<LockState> {
    return this.#lock(name, now)
  }

  async clearLocks(): Promise<void> {
    for (const [k, v] of Object.entries(this.#d.lockout)) {
      if (v.pending > 0) this.#d.lockout[k] = { failures: 0, pending: v.pending, lockedUntil: 0 }
      else delete this.#d.lockout[k]
    }
    this.#save('lockout')
  }

  #prune(now: number): void {
    const keys = Object.keys(this.#d.lockout)
    if (keys.length <= MAX_LOCK_ENTRIES) return
    for (const k of keys) {
      const v = this.#d.lockout[k] as LockState
      if (v.pending === 0 && v.lockedUntil <= now) delete this.#d.lockout[k]
      if (Object.keys(this.#d.lockout).length <= MAX_LOCK_ENTRIES / 2) break
    }
  }

  /** Drop sessions that are idle-expired or past their absolute expiry; true when any was dropped. */
  #sweepSessions(now: number): boolean {
    let dropped = false
    for (const [k, v] of Object.entries(this.#d.sessions)) {
      if (sessionEnd(v, now) !== undefined) {
        delete this.#d.sessions[k]
        dropped = true
      }
    }
    return dropped
  }

  async putSession(hash: string, s: SessionRecord): Promise<void> {
    // Expired sessions are swept as new ones arrive, so the file stays small (judged by the new
    // session's creation time: the caller's clock).
    this.#sweepSessions(s.createdAt)
    this.#d.sessions[hash] = s
    this.#capSessions(hash, s)
    // One write: a failure rolls back the new session and the evictions together.
    this.#save('sessions')
  }

  /**
   * Keep at most MAX_SESSIONS_PER_USER sessions of `s`'s user (username, method, kind): delete
   * the oldest others (createdAt, then lastSeenAt, then hash), never the one just stored. Runs
   * right after the sweep, so every session left counts as live.
   */
  #capSessions(hash: string, s: SessionRecord): void {
    const others: [string, SessionRecord][] = []
    for (const [k, v] of Object.entries(this.#d.sessions)) {
      if (k !== hash && v.username === s.username && v.method === s.method && v.kind === s.kind) others.push([k, v])
    }
    const excess = others.length + 1 - MAX_SESSIONS_PER_USER
    if (excess <= 0) return
    others.sort(([ka, a], [kb, b]) => a.createdAt - b.createdAt || a.lastSeenAt - b.lastSeenAt || (ka < kb ? -1 : ka > kb ? 1 : 0))
    for (const [k] of others.slice(0, excess)) delete this.#d.sessions[k]
  }

  async getSession(hash: string): Promise<SessionRecord | undefined> {
    return Object.hasOwn(this.#d.sessions, hash) ? this.#d.sessions[hash] : undefined
  }

  async touchSession(hash: string, now: number): Promise<SessionTouch> {
    const s = Object.hasOwn(this.#d.sessions, hash) ? (this.#d.sessions[hash] as SessionRecord) : undefined
    if (s === undefined) return { ok: false, reason: 'unknown' }
    const end = sessionEnd(s, now)
    if (end !== undefined) {
      delete this.#d.sessions[hash]
      this.#save('sessions')
      return { ok: false, reason: end }
    }
    const next: SessionRecord = { ...s, lastSeenAt: Math.max(s.lastSeenAt, now) }
    this.#d.sessions[hash] = next
    if (Date.now() - this.#sessionsSavedAt >= this.#touchPersistMs) this.#save('sessions')
    return { ok: true, session: next }
  }

  async updateSessionOidc(hash: string, oidc: NonNullable<SessionRecord['oidc']>): Promise<boolean> {
    const s = Object.hasOwn(this.#d.sessions, hash) ? (this.#d.sessions[hash] as SessionRecord) : undefined
    // Only a session that already holds OIDC tokens takes new ones (a local session never does).
    if (s === undefined || s.oidc === undefined) return false
    this.#d.sessions[hash] = { ...s, oidc: { issuer: oidc.issuer, sealed: oidc.sealed, expiresAt: oidc.expiresAt } }
    // Written at once: a refresh token that providers rotate must survive a restart.
    this.#save('sessions')
    return true
  }

  async deleteSession(hash: string): Promise<boolean> {
    if (!Object.hasOwn(this.#d.sessions, hash)) return false
    delete this.#d.sessions[hash]
    this.#save('sessions')
    return true
  }

  async deleteSessionsOf(username: string, method?: SessionRecord['method']): Promise<number> {
    let n = 0
    for (const [k, v] of Object.entries(this.#d.sessions)) {
      if (v.username === username && (method === undefined || v.method === method)) {
        delete this.#d.sessions[k]
        n++
      }
    }
    if (n > 0) this.#save('sessions')
    return n
  }

  async getSetting<T>(key: string): Promise<T | undefined> {
    return Object.hasOwn(this.#d.settings, key) ? (this.#d.settings[key] as T) : undefined
  }

  async putSetting(key: string, value: unknown): Promise<void> {
    this.#d.settings[key] = value
    this.#save('settings')
  }

  async deleteSetting(key: string): Promise<void> {
    if (!Object.hasOwn(this.#d.settings, key)) return
    delete this.#d.settings[key]
    this.#save('settings')
  }
}

/** Why a session is over at `now`, or undefined while it lives. */
function sessionEnd(s: SessionRecord, now: number): 'idle-expired' | 'expired' | undefined {
  if (now >= s.expiresAt) return 'expired'
  if (now - s.lastSeenAt >= s.idleTimeoutMs) return 'idle-expired'
  return undefined
}
