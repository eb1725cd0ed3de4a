/**
 * Sessions of people in browsers: the web console (admin listener) and the browser sign-in
 * (data listener) share this one model and the one `StateStore`, so a shared store (Redis) gets
 * sessions across replicas without a second path. Each check is one atomic store operation
 * (`touchSession`); a local user's session also dies when the user's token generation moves on
 * (revoke-tokens, password change), even if the store missed the active deletion.
 */
import type { SessionRecord, StateStore, SyncView } from '../store/store.ts'
import { hashSessionId, isSessionId, newCsrfToken, newSessionId } from './id.ts'
import { sealTokens, type OidcTokens } from './tokens.ts'

/** Idle timeout default: 30 minutes (Weka's GUI; NIST SP 800-63B (2017) §4.2.3, AAL2). */
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000
/** Absolute lifetime default: 12 hours (NIST SP 800-63B (2017) §4.2.3, AAL2: re-authenticate at least every 12 hours). */
export const DEFAULT_ABSOLUTE_LIFETIME_MS = 12 * 3_600_000

/** Why a cookie does not authenticate. */
export type SessionRefusal = 'unknown' | 'idle-expired' | 'expired' | 'revoked'

/** Outcome of `authenticate`. */
export type SessionCheck = { readonly ok: true; readonly session: SessionRecord } | { readonly ok: false; readonly reason: SessionRefusal }

/** What a new session is made of; the manager adds the id, CSRF token and times. */
export interface NewSession {
  readonly kind: SessionRecord['kind']
  readonly username: string
  readonly method: SessionRecord['method']
  readonly groups: readonly string[]
  readonly email?: string
  /** Required for method `local`: the user's token generation at sign-in. */
  readonly generation?: number
  /** OIDC sign-in: the issuer and its tokens (sealed under the new session's id). */
  readonly oidc?: { readonly issuer: string; readonly tokens: OidcTokens }
}

/** Options of a `SessionManager`. */
export interface SessionManagerOptions {
  /** Default 30 minutes. */
  readonly idleTimeoutMs?: number
  /** Default 12 hours; not shorter than the idle timeout. */
  readonly absoluteLifetimeMs?: number
  /** The clock (tests fake it). */
  readonly now?: () => number
}

type Store = Pick<StateStore, 'putSession' | 'touchSession' | 'deleteSession' | 'deleteSessionsOf' | 'getUser'> & Partial<Pick<SyncView, 'generationSync'>>

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive whole number of milliseconds, got ${String(v)}`)
  return v
}

/** Creates, checks and ends sessions. */
export class SessionManager {
  readonly #store: Store
  readonly #idleMs: number
  readonly #lifetimeMs: number
  readonly #now: () => number

  constructor(store: Store, opts: SessionManagerOptions = {}) {
    this.#store = store
    this.#idleMs = positiveInt('idleTimeoutMs', opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS)
    this.#lifetimeMs = positiveInt('absoluteLifetimeMs', opts.absoluteLifetimeMs ?? DEFAULT_ABSOLUTE_LIFETIME_MS)
    if (this.#lifetimeMs < this.#idleMs) throw new TypeError(`absoluteLifetimeMs (${this.#lifetimeMs}) must not be shorter than idleTimeoutMs (${this.#idleMs})`)
    this.#now = opts.now ?? Date.now
  }

  /** Start a session; `id` goes into the cookie and nowhere else (never log it). */
  async create(n: NewSession): Promise<{ readonly id: string; readonly session: SessionRecord }> {
    if (n.method === 'local' && (n.generation === undefined || !Number.isSafeInteger(n.generation))) throw new TypeError('a local user’s session needs the user’s token generation')
    if (n.method === 'oidc' && n.generation !== undefined) throw new TypeError('only local users have a token generation')
    const id = newSessionId()
    const now = this.#now()
    const session: SessionRecord = {
      kind: n.kind,
      username: n.username,
      method: n.method,
      groups: [...n.groups],
      ...(n.email === undefined ? {} : { email: n.email }),
      ...(n.generation === undefined ? {} : { generation: n.generation }),
      csrfToken: newCsrfToken(),
      createdAt: now,
      lastSeenAt: now,
      idleTimeoutMs: this.#idleMs,
      expiresAt: now + this.#lifetimeMs,
      ...(n.oidc === undefined ? {} : { oidc: { issuer: n.oidc.issuer, sealed: sealTokens(id, n.oidc.tokens), expiresAt: n.oidc.tokens.expiresAt } }),
    }
    await this.#store.putSession(hashSessionId(id), session)
    return { id, session }
  }

  /**
   * The session of a cookie value, extended by this use; or why there is none. A value that is
   * not shaped like an id is `unknown` without a store lookup.
   */
  async authenticate(cookieValue: string | undefined, now: number = this.#now()): Promise<SessionCheck> {
    if (!isSessionId(cookieValue)) return { ok: false, reason: 'unknown' }
    const hash = hashSessionId(cookieValue)
    const t = await this.#store.touchSession(hash, now)
    if (!t.ok) return t
    if (t.session.method === 'local' && (await this.#generation(t.session.username)) !== t.session.generation) {
      // The user's tokens were revoked (or the password changed, or the user is gone) after
      // sign-in; the active deletion normally got here first.
      await this.#store.deleteSession(hash)
      return { ok: false, reason: 'revoked' }
    }
    return t
  }

  async #generation(username: string): Promise<number | undefined> {
    // The verified-token cache's mirror answers without a store round trip when there is one.
    if (this.#store.generationSync !== undefined) return this.#store.generationSync(username)
    return (await this.#store.getUser(username))?.generation
  }

  /** Sign out: end the session of this cookie value; false when there was none. */
  async end(cookieValue: string | undefined): Promise<boolean> {
    if (!isSessionId(cookieValue)) return false
    return this.#store.deleteSession(hashSessionId(cookieValue))
  }

  /** End every session of a user (of one sign-in method, when given); how many ended. */
  endAllOf(username: string, method?: SessionRecord['method']): Promise<number> {
    return this.#store.deleteSessionsOf(username, method)
  }
}
