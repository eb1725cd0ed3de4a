/**
 * gatehouse's own issuer for local users (Weka's model, SPEC §8).
 *
 * - An ES256 signing key generated once into `<stateDir>/issuer/` (mode 0600) — or, on a
 *   shared store (Redis), once into the store, so every replica signs and verifies alike; its
 *   public JWKS is served on the admin listener. Rotation (`rotateSigningKey`) makes a new key
 *   current and keeps the earlier ones as retired, verify-only keys (the ring, see `KeyFile`),
 *   until `revoke_previous` drops them all (docs/security.md, "Signing keys").
 * - Access tokens are JWTs (5 minutes); refresh tokens are opaque, stored as SHA-256 hashes,
 *   rotated on every use; presenting a spent one revokes its whole family (OAuth 2.0 Security
 *   BCP §4.14.2). Long-lived tokens are JWTs of a chosen lifetime (`infinite` allowed).
 * - Every token carries the user's token generation; revoking or changing the password bumps
 *   it, so every earlier token fails on the next request — through the verified-token cache
 *   too (see `revalidator`) — while a token issued a moment later works.
 * - Logins reserve a lockout slot before the password is checked, so parallel wrong attempts
 *   can never exceed the limit; unknown names take the same path and the same time.
 * - Failed logins are also counted per client address across all names (`loginThrottle`):
 *   the per-account lockout cannot see one password sprayed over many names. Those attempts
 *   are reserved before the hash too, so a parallel burst cannot exceed that limit either.
 * - The first `admin` gets `admin` (to be changed) only while the admin listener is bound to
 *   loopback; on a network address it gets GATEHOUSE_ADMIN_PASSWORD or a random password
 *   written once to `<stateDir>/initial-admin-password` (see `#bootstrap`).
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto'
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import path from 'node:path'
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose'
import { signedFailure, type JwtVerifier } from '../auth/authenticate.ts'
import type { JwtShape } from '../auth/jwtShape.ts'
import { FailureThrottle } from '../auth/throttle.ts'
import { ldapFromConfig } from '../config/ldap.ts'
import { MAX_PASSWORD_LENGTH, passwordProblem } from '../config/passwordRules.ts'
import type { DirectoryUser } from '../directory/directory.ts'
import { DirectoryService } from '../directory/service.ts'
import type { Principal } from '../http/principal.ts'
import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import { audit, type Logger } from '../log.ts'
import { writeFileAtomic } from '../store/atomic.ts'
import { isSharedStore } from '../store/shared.ts'
import type { IssuerStore, LockPolicy, RefreshRecord, UserRecord } from '../store/store.ts'
import { assertPasswordPolicy, hashPassword, verifyPassword } from './passwords.ts'

export type Role = UserRecord['role']
export const ROLES: readonly Role[] = ['admin', 'readonly', 'regular']
const USERNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/
const AUDIENCE = 'gatehouse'
const INFINITE_MS = 100 * 365 * 86_400_000

/** What login and refresh answer (Weka's shape, inside `data`). */
export interface TokenSet {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  refresh_token: string
  password_change_required?: true
}

export interface Banner {
  text: string
  enabled: boolean
}

export interface LocalIssuerOptions {
  readonly now?: () => number
  /**
   * Open for verifying tokens only (`gatehouse explain`): never bootstrap the first admin, never
   * generate or write a key or any file (a missing signing key is an error), and skip the dummy
   * password hash until a login would need it. The store's own writes are the caller's concern.
   */
  readonly readOnly?: boolean
  /** The CA of `security ca-cert` (upstream/trust.ts), trusted for the directory's TLS too. */
  readonly extraCa?: () => string | undefined
}

/**
 * The password hash of a directory user's record (docs/directory.md). A directory user who signs
 * in gets a user record in the state store like a local user — for the token generation
 * (`revoke-tokens`), the role the tokens carry, `user list` and sessions — whose hash is this
 * marker: it is not a scrypt hash, so `verifyPassword` never accepts anything against it, and
 * every store (file, Redis, `store migrate`) keeps it as it keeps any hash.
 */
export const DIRECTORY_HASH = 'directory:ldap'

/** Whether a stored user comes from the directory. */
export function isDirectoryUser(u: Pick<UserRecord, 'passwordHash'>): boolean {
  return u.passwordHash === DIRECTORY_HASH
}

/** Where a request came from, for the audit trail and the per-address login throttle. */
export interface RequestMeta {
  /** The client address as the throttles key it (auth/throttle.ts `clientKey`). */
  readonly client: string | undefined
  readonly requestId: string | undefined
}

const NO_META: RequestMeta = { client: undefined, requestId: undefined }

/** The file holding the first admin's random password when the admin listener is on a network address. */
export const INITIAL_PASSWORD_FILE = 'initial-admin-password'

/** True for 127.0.0.0/8, ::1 (also IPv4-mapped and bracketed) and `localhost`. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (a === 'localhost' || a === '::1' || a === '0:0:0:0:0:0:0:1') return true
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a
  return isIPv4(v4) && v4.startsWith('127.')
}

/**
 * The signing-key ring as `<stateDir>/issuer/signing-key.json`, the shared store's
 * `localIssuer.signingKey` value and its `localIssuer.signingKeys` setting hold it: the current
 * key at the top (the single-key format of earlier versions, which therefore loads unchanged),
 * and the retired keys — public halves only: they never sign again — that still verify.
 */
export interface KeyFile {
  iss: string
  kid: string
  privateJwk: JWK
  /** Epoch ms; absent for a key written before rotation existed. */
  createdAt?: number
  retired?: RetiredKey[]
}

/** A key that no longer signs but still verifies the tokens it signed. */
export interface RetiredKey {
  kid: string
  publicJwk: JWK
  createdAt?: number
  retiredAt: number
}

/** `GET /api/v2/security/signingKey`: never private material. */
export interface SigningKeyStatus {
  issuer: string
  current_kid: string
  keys: { kid: string; current: boolean; created_at: string | null; retired_at: string | null }[]
}

/** The ring ready to use: the current key signs, every key (current first) verifies. */
interface Ring {
  readonly file: KeyFile
  readonly kid: string
  readonly privateKey: KeyObject
  readonly verify: ReadonlyMap<string, KeyObject>
  readonly jwks: readonly JWK[]
}

/** The shape of gatehouse's own kids (`newSigningKey`): only such an unknown kid makes verification look in the store again. */
const LOCAL_KID_RE = /^local-[0-9a-f]{16}$/
/** At most one reload of the ring per this many ms for an unknown kid (a forged kid cannot hammer the store). */
const UNKNOWN_KID_RELOAD_MS = 1000

/** Build the ring from its stored form (synchronously: a worker's setting-change listener finishes before it acknowledges). */
function buildRing(k: KeyFile): Ring {
  const { d: _d, ...pub } = k.privateJwk
  const verify = new Map<string, KeyObject>()
  const jwks: JWK[] = []
  const add = (kid: string, jwk: JWK): void => {
    const { d: _private, kid: _k, alg: _a, use: _u, key_ops: _o, ...bare } = jwk
    if (bare.kty !== 'EC' || bare.crv !== 'P-256' || typeof bare.x !== 'string' || typeof bare.y !== 'string') throw new Error(`signing key ${kid} is not an ES256 key`)
    verify.set(kid, createPublicKey({ key: bare as JsonWebKey, format: 'jwk' }))
    jwks.push({ ...bare, kid, alg: 'ES256', use: 'sig' })
  }
  add(k.kid, pub)
  for (const r of k.retired ?? []) if (!verify.has(r.kid)) add(r.kid, r.publicJwk)
  const { kid: _k, alg: _a, use: _u, key_ops: _o, ...privBare } = k.privateJwk
  return { file: k, kid: k.kid, privateKey: createPrivateKey({ key: privBare as JsonWebKey, format: 'jwk' }), verify, jwks }
}

/** The local issuer. Create with `LocalIssuer.open`. */
export class LocalIssuer implements JwtVerifier {
  readonly iss: string
  #ring: Ring
  /** Where the ring lives with the file store; undefined with a shared store. */
  readonly #keyFile: string | undefined
  /** The ring's reload in flight, and when the last one for an unknown kid ended (Date.now). */
  #ringReload: Promise<void> | undefined
  #ringReloadedAt = 0
  /** Rotations of this process, one at a time. */
  #rotation: Promise<unknown> = Promise.resolve()
  readonly #store: IssuerStore
  readonly #c: Config['authentication']['local']
  readonly #logger: Logger
  readonly #now: () => number
  #dummyHash: string | undefined
  readonly #throttle: FailureThrottle | undefined
  readonly #directory: DirectoryService

  private constructor(ring: Ring, keyFile: string | undefined, store: IssuerStore, c: Config['authentication']['local'], logger: Logger, now: () => number, dummyHash: string | undefined, directory: DirectoryService) {
    this.iss = ring.file.iss
    this.#ring = ring
    this.#keyFile = keyFile
    this.#store = store
    this.#c = c
    this.#logger = logger
    this.#now = now
    this.#dummyHash = dummyHash
    this.#directory = directory
    const t = c.loginThrottle
    this.#throttle = t.enabled ? new FailureThrottle({ maxFailures: t.maxFailures, windowMs: t.window, blockMs: t.blockDuration, maxAddresses: 100_000, now }) : undefined
  }

  /** Load or create the signing key, and create the first admin on first start (neither with `readOnly`). */
  static async open(c: Config, store: IssuerStore, logger: Logger, opts: LocalIssuerOptions = {}): Promise<LocalIssuer> {
    const file = path.join(c.stateDir, 'issuer', 'signing-key.json')
    let k: KeyFile
    if (isSharedStore(store)) {
      // Several replicas sign and verify with one key: created once, atomically, by whichever
      // replica starts first (docs/replicas.md).
      // After a rotation the ring is the setting (one value, so every replica hears of it).
      let created: KeyFile | undefined
      const rotated = await store.getSetting<KeyFile>(SIGNING_KEY_RING)
      k = rotated ?? (await store.sharedValue(SIGNING_KEY, async () => (created = await newSigningKey()), { readOnly: opts.readOnly === true }))
      if (created !== undefined && created.kid === k.kid) logger.info({ iss: k.iss }, 'generated the local issuer signing key in the shared state store')
    } else {
      try {
        k = JSON.parse(readFileSync(file, 'utf8')) as KeyFile
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
        if (opts.readOnly === true) throw new Error(`${file} does not exist: the local issuer has no signing key yet (gatehouse serve creates it on its first start)`)
        k = await newSigningKey()
        writeFileAtomic(file, JSON.stringify(k), 0o600)
        logger.info({ iss: k.iss }, 'generated the local issuer signing key')
      }
    }
    const directory = new DirectoryService({ config: ldapFromConfig(c.authentication.ldap), caFile: c.authentication.ldap.caFile, extraCa: opts.extraCa, store, logger, now: opts.now })
    const issuer = new LocalIssuer(buildRing(k), isSharedStore(store) ? undefined : file, store, c.authentication.local, logger, opts.now ?? Date.now, opts.readOnly === true ? undefined : await dummyPasswordHash(), directory)
    if (opts.readOnly !== true) await issuer.#bootstrap(c)
    return issuer
  }

  /**
   * Create the first admin when there are no users. Weka's admin/admin is guessable by whoever
   * reaches the listener first, so it is kept only while the admin listener is bound to loopback.
   * Elsewhere the password is GATEHOUSE_ADMIN_PASSWORD, or a random one written once to
   * `<stateDir>/initial-admin-password` (mode 0600) and named — never printed — in the log.
   * Only an operator-given password need not be changed at first login: admin/admin is public
   * and the random one sits in a file.
   */
  async #bootstrap(c: Config): Promise<void> {
    if ((await this.#store.listUsers()).length > 0) return
    const given = this.#c.initialAdminPassword
    if (given === undefined && isSharedStore(this.#store)) {
      // An empty shared store is not a fresh install (a flushed or replaced Redis): a guessable
      // or file-held first password must never appear on a network of replicas by accident.
      this.#logger.warn('the shared state store has no local users, and no first admin is created there without GATEHOUSE_ADMIN_PASSWORD: set it (authentication.local.initialAdminPassword) on one replica and restart that replica, or restore the store (docs/replicas.md)')
      return
    }
    let password = given ?? 'admin'
    let file: string | undefined
    if (given === undefined && !(c.admin.enabled && isLoopbackAddress(c.admin.address))) {
      file = path.join(c.stateDir, INITIAL_PASSWORD_FILE)
      password = initialPassword(file)
    }
    const created = await this.#store.createUser({
      username: 'admin',
      uid: randomUUID(),
      role: 'admin',
      passwordHash: await hashPassword(password),
      mustChangePassword: given === undefined,
      generation: 0,
      createdAt: this.#now(),
    })
    if (!created) return
    if (file !== undefined) this.#logger.warn({ file, mustChangePassword: true }, 'created the first local user admin with a random password (the admin listener is not bound to loopback): read it from this file, log in with gatehouse user login admin, and change it')
    else this.#logger.info({ mustChangePassword: given === undefined }, 'created the first local user: admin')
  }

  /** Directory users' settings and health (`/api/v2/ldap`, `/readyz`). */
  get directory(): DirectoryService {
    return this.#directory
  }

  /** The public JWKS served on the admin listener: the current key first, then the retired ones. */
  jwks(): { keys: JWK[] } {
    return { keys: this.#ring.jwks.map((k) => ({ ...k })) }
  }

  // --- the signing-key ring ---------------------------------------------------------------

  /** `GET /api/v2/security/signingKey`: kids and times, never a private part. */
  signingKeyStatus(): SigningKeyStatus {
    const f = this.#ring.file
    const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString())
    return {
      issuer: this.iss,
      current_kid: f.kid,
      keys: [
        { kid: f.kid, current: true, created_at: iso(f.createdAt), retired_at: null },
        ...(f.retired ?? []).map((r) => ({ kid: r.kid, current: false, created_at: iso(r.createdAt), retired_at: iso(r.retiredAt) })),
      ],
    }
  }

  /**
   * `POST /api/v2/security/signingKey/rotate`: a new ES256 key signs from now on; the previous
   * current key and every retired one keep verifying (so no issued token breaks) — unless
   * `revokePrevious`, which drops them all: every token they signed is refused at once, through
   * the verified-token cache too (`revalidator`). The ring is written as one value: the key file
   * (atomically, 0600; then a setting tells the other workers) or, with a shared store, the
   * `localIssuer.signingKeys` setting (published to every replica).
   */
  rotateSigningKey(revokePrevious: boolean): Promise<SigningKeyStatus> {
    const run = async (): Promise<SigningKeyStatus> => {
      const base = await this.#readRing()
      if (base.iss !== this.iss) throw new GatehouseError('ERR_INTERNAL', { detail: `the stored signing key belongs to issuer ${base.iss}, this process to ${this.iss}: restart it` })
      const fresh = await newSigningKey()
      const now = this.#now()
      const { d: _d, ...previous } = base.privateJwk
      const retired: RetiredKey[] = revokePrevious ? [] : [{ kid: base.kid, publicJwk: previous, ...(base.createdAt === undefined ? {} : { createdAt: base.createdAt }), retiredAt: now }, ...(base.retired ?? [])]
      const next: KeyFile = { iss: base.iss, kid: fresh.kid, privateJwk: fresh.privateJwk, createdAt: now, retired }
      const ring = buildRing(next)
      if (this.#keyFile === undefined) {
        await this.#store.putSetting(SIGNING_KEY_RING, next)
        this.#ring = ring
      } else {
        writeFileAtomic(this.#keyFile, JSON.stringify(next), 0o600)
        this.#ring = ring
        // Other workers (workers: N) read the file again when they hear of this setting.
        await this.#store.putSetting(SIGNING_KEY_NOTICE, { current: next.kid, keys: ring.verify.size, at: now })
      }
      this.#logger.info({ kid: next.kid, retired: retired.length, revokedPrevious: revokePrevious }, revokePrevious ? 'rotated the local issuer signing key and dropped every earlier key' : 'rotated the local issuer signing key; earlier keys verify until revoked')
      return this.signingKeyStatus()
    }
    const p = this.#rotation.then(run, run)
    this.#rotation = p.catch(() => {})
    return p
  }

  /** The ring as stored now. */
  async #readRing(): Promise<KeyFile> {
    if (this.#keyFile !== undefined) return JSON.parse(readFileSync(this.#keyFile, 'utf8')) as KeyFile
    const s = this.#store
    const rotated = await s.getSetting<KeyFile>(SIGNING_KEY_RING)
    if (rotated !== undefined) return rotated
    if (!isSharedStore(s)) throw new GatehouseError('ERR_INTERNAL', { detail: 'no signing key' })
    return s.sharedValue<KeyFile>(SIGNING_KEY, () => Promise.reject(new Error('the shared store lost the signing key')), { readOnly: true })
  }

  /**
   * Load the ring again (another replica or worker rotated). With the file store the work is
   * done before this returns its promise (a worker acknowledges the change right after).
   */
  reloadSigningKeys(): Promise<void> {
    const apply = (k: KeyFile): void => {
      if (k.iss !== this.iss) {
        this.#logger.error({ stored: k.iss, running: this.iss }, 'the stored signing key belongs to another issuer; keeping the running keys (restart this process)')
        return
      }
      if (k.kid === this.#ring.kid && JSON.stringify(k.retired ?? []) === JSON.stringify(this.#ring.file.retired ?? [])) return
      this.#ring = buildRing(k)
      this.#logger.info({ kid: k.kid, retired: k.retired?.length ?? 0 }, 'loaded the local issuer signing keys again')
    }
    if (this.#keyFile !== undefined) {
      try {
        apply(JSON.parse(readFileSync(this.#keyFile, 'utf8')) as KeyFile)
        return Promise.resolve()
      } catch (e) {
        return Promise.reject(e as Error)
      }
    }
    return this.#readRing().then(apply)
  }

  /** The key that verifies `kid`: an unknown local kid reloads the ring once (rate-limited) before it is refused. */
  async #verifyKey(kid: unknown): Promise<KeyObject | undefined> {
    if (typeof kid !== 'string') return undefined
    const known = this.#ring.verify.get(kid)
    if (known !== undefined || !LOCAL_KID_RE.test(kid)) return known
    if (this.#ringReload === undefined) {
      if (Date.now() - this.#ringReloadedAt < UNKNOWN_KID_RELOAD_MS) return undefined
      this.#ringReload = this.reloadSigningKeys()
        .catch((e: unknown) => this.#logger.warn({ error: (e as Error).message }, 'could not load the local issuer signing keys again for an unknown kid'))
        .finally(() => {
          this.#ringReloadedAt = Date.now()
          this.#ringReload = undefined
        })
    }
    await this.#ringReload
    return this.#ring.verify.get(kid)
  }

  // --- login and tokens ---------------------------------------------------------------

  async #policy(): Promise<LockPolicy> {
    const stored = await this.#store.getSetting<LockPolicy>('lockoutPolicy')
    return stored ?? { failedAttempts: this.#c.lockout.failedAttempts, lockoutMs: this.#c.lockout.lockoutDuration }
  }

  /**
   * Check a name and password under the lockout policy.
   *
   * @throws ERR_ACCOUNT_LOCKED (429, Retry-After) or ERR_LOGIN_FAILED (401)
   */
  async #checkPassword(username: string, password: string, meta: RequestMeta): Promise<UserRecord> {
    const policy = await this.#policy()
    const slot = await this.#store.reserveAttempt(username, policy, this.#now())
    if (!slot.ok) throw new GatehouseError('ERR_ACCOUNT_LOCKED', { headers: { 'retry-after': String(Math.max(1, Math.ceil(slot.retryAfterMs / 1000))) }, detail: 'locked or attempts in flight' })
    let user: UserRecord | undefined
    let ok = false
    let after: (() => Promise<void>) | undefined
    try {
      user = await this.#store.getUser(username)
      const dir = user === undefined || isDirectoryUser(user) ? await this.#directory.current() : undefined
      if (dir !== undefined) {
        // A directory user (known from an earlier sign-in, or not yet): the directory decides.
        user = await this.#directoryLogin(username, password, user)
        ok = user !== undefined
      } else {
        // Unknown names are checked against a dummy hash: same work, same time, same answer.
        // (A directory user's record has no hash, so it fails here while the directory is off.)
        ok = (await verifyPassword(password, user?.passwordHash ?? (this.#dummyHash ??= await dummyPasswordHash()))) && user !== undefined
        if (ok && user !== undefined) after = await this.#nameClash(user.username)
      }
    } finally {
      const after = await this.#store.finishAttempt(username, ok, policy, this.#now())
      // Reserved slots never outnumber the attempts left, so only the attempt that locks gets here.
      if (!ok && after.lockedUntil > this.#now()) {
        audit(this.#logger, { event: 'account.locked', actor: undefined, target: username, ...meta, outcome: 'success', extra: { lockedForSeconds: Math.round(policy.lockoutMs / 1000) } })
      }
    }
    if (!ok || user === undefined) throw new GatehouseError('ERR_LOGIN_FAILED')
    await after?.()
    return user
  }

  /**
   * A directory sign-in inside the lockout slot: bind as the user, map the role, and keep the
   * user's record (generation, role) in the store. Undefined: unknown name or wrong password.
   *
   * @throws ERR_DIRECTORY_UNAVAILABLE (the attempt still counts), ERR_DIRECTORY_NO_ROLE
   */
  async #directoryLogin(username: string, password: string, known: UserRecord | undefined): Promise<UserRecord | undefined> {
    const dir = (await this.#directory.current()) as NonNullable<Awaited<ReturnType<DirectoryService['current']>>>
    let found: DirectoryUser | undefined
    try {
      found = await dir.authenticate(username, password)
      this.#directory.observe(true)
    } catch (e) {
      if ((e as GatehouseError).code === 'ERR_DIRECTORY_UNAVAILABLE') this.#directory.observe(false, e as GatehouseError)
      throw e
    }
    if (found === undefined) {
      // Same work as a wrong local password, so a name unknown to both is not faster.
      await verifyPassword(password, this.#dummyHash ??= await dummyPasswordHash())
      return undefined
    }
    if (found.role === undefined) throw new GatehouseError('ERR_DIRECTORY_NO_ROLE', { detail: `directory groups: ${found.groups.join(', ') || '(none)'}` })
    return this.#directoryRecord(found.username, found.role, known)
  }

  /**
   * The store's record of a directory user with `role`: created at the first sign-in, its role
   * kept current (a change bumps the generation: the earlier tokens carried the old role). A
   * new record starts at the clock's generation, never 0, so a record deleted and created again
   * never accepts the tokens of its predecessor.
   */
  async #directoryRecord(username: string, role: Role, known: UserRecord | undefined): Promise<UserRecord> {
    let u = known ?? (await this.#store.getUser(username))
    if (u !== undefined && !isDirectoryUser(u)) throw new GatehouseError('ERR_DIRECTORY_NAME_CLASH', { detail: `${username} is a local user` })
    if (u === undefined) {
      const rec: UserRecord = { username, uid: randomUUID(), role, passwordHash: DIRECTORY_HASH, mustChangePassword: false, generation: this.#now(), createdAt: this.#now() }
      if (await this.#store.createUser(rec)) return rec
      u = await this.#store.getUser(username) // created meanwhile (a parallel sign-in, or a local user)
      if (u === undefined || !isDirectoryUser(u)) throw new GatehouseError('ERR_DIRECTORY_NAME_CLASH', { detail: `${username} was created meanwhile` })
    }
    if (u.role === role) return u
    const generation = await this.#store.setRole(username, role)
    if (generation === undefined) throw new GatehouseError('ERR_LOGIN_FAILED', { detail: 'directory user record deleted meanwhile' })
    await this.#store.deleteSessionsOf(username, 'local')
    return { ...u, role, generation }
  }

  /**
   * A local user with the right password whose name is also a directory user: refused unless
   * `localShadowsDirectory` (docs/directory.md). Checked after the password, so the answer
   * reveals nothing to someone without it; a directory that cannot be asked lets the local
   * user in (local users keep working while the directory is down) and says so in the log.
   * Returns the check to run after the lockout slot is settled.
   */
  async #nameClash(username: string): Promise<(() => Promise<void>) | undefined> {
    const dir = await this.#directory.current()
    if (dir === undefined || dir.settings.localShadowsDirectory) return undefined
    let other: DirectoryUser | undefined
    try {
      other = await dir.lookup(username)
    } catch (e) {
      this.#logger.warn({ user: username, detail: (e as GatehouseError).detail }, 'a local user signed in without the directory name-clash check: the directory cannot be reached')
      return undefined
    }
    if (other === undefined) return undefined
    return async () => {
      throw new GatehouseError('ERR_DIRECTORY_NAME_CLASH', { detail: `${username} is both a local and a directory user` })
    }
  }

  /**
   * `POST /api/v2/login`. A malformed body is 400 before anything is counted or hashed; a
   * blocked address is 429 before the lockout or the password is looked at, so a sprayed
   * password that happens to be right is not confirmed either. The address's attempt is
   * reserved before the hash, so an address whose failures plus attempts in flight reach
   * `loginThrottle.maxFailures` is 429 too: a parallel burst gets no more answers than a
   * sequential one.
   *
   * @throws ERR_BAD_REQUEST, ERR_TOO_MANY_FAILURES, ERR_ACCOUNT_LOCKED, ERR_LOGIN_FAILED
   */
  async login(name: unknown, pw: unknown, meta: RequestMeta = NO_META): Promise<TokenSet> {
    return this.#issue(await this.#login(name, pw, meta), randomUUID())
  }

  /**
   * The web console's sign-in: exactly the checks of `login` (malformed body, address throttle,
   * lockout, password), but no tokens are issued — the console keeps a session instead.
   *
   * @throws ERR_BAD_REQUEST, ERR_TOO_MANY_FAILURES, ERR_ACCOUNT_LOCKED, ERR_LOGIN_FAILED
   */
  async checkLogin(name: unknown, pw: unknown, meta: RequestMeta = NO_META): Promise<{ username: string; role: Role; mustChangePassword: boolean; generation: number }> {
    const u = await this.#login(name, pw, meta)
    return { username: u.username, role: u.role, mustChangePassword: u.mustChangePassword, generation: u.generation }
  }

  async #login(name: unknown, pw: unknown, meta: RequestMeta): Promise<UserRecord> {
    const { username, password } = loginFields(name, pw)
    const key = meta.client
    const throttle = key === undefined ? undefined : this.#throttle
    // Reserved on arrival, settled after the hash: a burst cannot outrun the count (auth/throttle.ts `reserve`).
    throttle?.reserve(key as string)
    let user: UserRecord
    let failed = false
    try {
      user = await this.#checkPassword(username, password, meta)
    } catch (e) {
      failed = (e as GatehouseError).code === 'ERR_LOGIN_FAILED'
      throw e
    } finally {
      if (throttle?.settle(key as string, failed) === true) {
        audit(this.#logger, { event: 'login.address_blocked', actor: undefined, target: undefined, ...meta, outcome: 'success', extra: { blockedForSeconds: Math.round(this.#c.loginThrottle.blockDuration / 1000) } })
      }
    }
    return user
  }

  /** `POST /api/v2/login/refresh`: rotate; a spent token revokes its family. */
  async refresh(refreshToken: unknown, meta: RequestMeta = NO_META): Promise<TokenSet> {
    if (typeof refreshToken !== 'string' || refreshToken === '') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'the body must be {"refresh_token": "<the refresh token from the last login or refresh>"}' })
    if (refreshToken.length > 512) throw new GatehouseError('ERR_INVALID_REFRESH_TOKEN')
    const rec = await this.#store.useRefresh(sha256(refreshToken))
    if (rec === undefined) throw new GatehouseError('ERR_INVALID_REFRESH_TOKEN', { detail: 'unknown refresh token' })
    if (rec.used) {
      await this.#store.revokeFamily(rec.family)
      audit(this.#logger, { event: 'refresh_token.reused', actor: undefined, target: rec.username, ...meta, outcome: 'success', extra: { familyRevoked: true } })
      throw new GatehouseError('ERR_INVALID_REFRESH_TOKEN', { detail: 'refresh token reuse' })
    }
    const user = await this.#store.getUser(rec.username)
    if (rec.expiresAt <= this.#now() || user === undefined || user.generation !== rec.generation || (await this.#store.isFamilyRevoked(rec.family))) {
      throw new GatehouseError('ERR_INVALID_REFRESH_TOKEN', { detail: 'expired or revoked refresh token' })
    }
    if (isDirectoryUser(user)) return this.#issue(await this.#recheck(user, rec, refreshToken, meta), rec.family)
    return this.#issue(user, rec.family)
  }

  /**
   * A directory user's refresh asks the directory again (docs/directory.md): deleted, disabled
   * (out of the user base or filter) or out of every role group ends the token family; a new
   * role is taken over. While the directory cannot be asked the refresh token is put back
   * unspent and the answer is 503, so the client may retry with it.
   */
  async #recheck(user: UserRecord, rec: RefreshRecord, refreshToken: string, meta: RequestMeta): Promise<UserRecord> {
    const dir = await this.#directory.current()
    let found: DirectoryUser | undefined
    if (dir !== undefined) {
      try {
        found = await dir.lookup(user.username)
        this.#directory.observe(true)
      } catch (e) {
        if ((e as GatehouseError).code !== 'ERR_DIRECTORY_UNAVAILABLE') throw e
        this.#directory.observe(false, e as GatehouseError)
        await this.#store.putRefresh(sha256(refreshToken), rec)
        throw e
      }
    }
    if (found?.role === undefined) {
      await this.#store.revokeFamily(rec.family)
      audit(this.#logger, { event: 'refresh.directory_refused', actor: undefined, target: user.username, ...meta, outcome: 'success', extra: { reason: dir === undefined ? 'directory disabled' : found === undefined ? 'not found' : 'no role group' } })
      throw new GatehouseError('ERR_INVALID_REFRESH_TOKEN', { detail: 'the directory no longer grants this user a role' })
    }
    return this.#directoryRecord(user.username, found.role, user)
  }

  async #issue(user: UserRecord, family: string): Promise<TokenSet> {
    const lifetime = this.#c.accessTokenLifetime
    const access = await this.#sign(user, 'access', lifetime, family)
    const refresh = `ghr_${randomBytes(32).toString('base64url')}`
    await this.#store.putRefresh(sha256(refresh), { username: user.username, family, generation: user.generation, expiresAt: this.#now() + this.#c.refreshTokenLifetime, used: false })
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: Math.round(lifetime / 1000),
      refresh_token: refresh,
      ...(user.mustChangePassword ? { password_change_required: true as const } : {}),
    }
  }

  async #sign(user: UserRecord, typ: 'access' | 'long-lived', lifetimeMs: number, family: string | undefined): Promise<string> {
    const now = this.#now()
    const ring = this.#ring
    const claims: Record<string, unknown> = { role: user.role, gen: user.generation, typ }
    if (family !== undefined) claims.fam = family
    if (user.mustChangePassword) claims.pcr = true
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: ring.kid, typ: 'JWT' })
      .setIssuer(this.iss)
      .setAudience(AUDIENCE)
      .setSubject(user.username)
      .setJti(randomUUID())
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor((now + lifetimeMs) / 1000))
      .sign(ring.privateKey)
  }

  /** `POST /api/v2/users/tokens`: a long-lived token for the caller (`Infinity` allowed). */
  async generateToken(caller: Principal, lifetimeMs: number | undefined): Promise<{ access_token: string; token_type: 'Bearer'; expires_in: number | null }> {
    const user = await this.#requireUser(caller.user)
    // SPEC §8: long-lived tokens are for local users; a directory user's access must end when the directory says so.
    if (isDirectoryUser(user)) throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: long-lived tokens are for local users only; directory users sign in (gatehouse user login) and refresh' })
    const ms = lifetimeMs ?? this.#c.longLivedTokenLifetime
    const token = await this.#sign(user, 'long-lived', ms === Infinity ? INFINITE_MS : ms, undefined)
    return { access_token: token, token_type: 'Bearer', expires_in: ms === Infinity ? null : Math.round(ms / 1000) }
  }

  // --- verification (JwtVerifier) -----------------------------------------------------

  async verify(token: string, shape: JwtShape): Promise<Principal> {
    const key = shape.header.alg === 'ES256' ? await this.#verifyKey(shape.header.kid) : undefined
    if (key === undefined) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: 'local token with a foreign alg or kid' })
    let payload
    try {
      payload = (await jwtVerify(token, key, { issuer: this.iss, audience: AUDIENCE, algorithms: ['ES256'], requiredClaims: ['exp', 'sub'], currentDate: new Date(this.#now()) })).payload
    } catch (e) {
      const code = (e as { code?: string }).code
      const err = new GatehouseError(code === 'ERR_JWT_EXPIRED' ? 'ERR_TOKEN_EXPIRED' : 'ERR_INVALID_TOKEN', { detail: (e as Error).message })
      // jose checks the claims only after the signature: such a token is ours, not a guess (auth/throttle.ts).
      throw code === 'ERR_JWT_EXPIRED' || code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? signedFailure(err) : err
    }
    const user = await this.#store.getUser(String(payload.sub))
    if (user === undefined || payload.gen !== user.generation) throw signedFailure(new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: the token has been revoked', detail: 'revoked (generation)' }))
    if (typeof payload.fam === 'string' && (await this.#store.isFamilyRevoked(payload.fam))) throw signedFailure(new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: the token has been revoked', detail: 'revoked (family)' }))
    return Object.freeze({ user: user.username, groups: Object.freeze([user.role]), method: 'local' as const, mustChangePassword: payload.pcr === true })
  }

  revalidator(shape: JwtShape): (() => boolean) | undefined {
    const sub = String(shape.payload.sub)
    const gen = shape.payload.gen
    const fam = typeof shape.payload.fam === 'string' ? shape.payload.fam : undefined
    const kid = shape.header.kid
    // The kid is checked on every hit: revoking earlier signing keys refuses cached tokens too.
    return () => typeof kid === 'string' && this.#ring.verify.has(kid) && this.#store.generationSync(sub) === gen && (fam === undefined || !this.#store.familyRevokedSync(fam))
  }

  // --- users -------------------------------------------------------------------------

  async #requireUser(username: string): Promise<UserRecord> {
    const u = await this.#store.getUser(username)
    if (u === undefined) throw new GatehouseError('ERR_USER_NOT_FOUND')
    return u
  }

  async whoami(caller: Principal): Promise<Record<string, unknown>> {
    const u = await this.#requireUser(caller.user)
    return { username: u.username, role: u.role, source: isDirectoryUser(u) ? 'ldap' : 'local', uid: u.uid, org_id: 0, org_name: 'Root' }
  }

  async listUsers(): Promise<Record<string, unknown>[]> {
    const now = this.#now()
    return Promise.all(
      (await this.#store.listUsers()).map(async (u) => ({
        username: u.username,
        role: u.role,
        uid: u.uid,
        source: isDirectoryUser(u) ? 'ldap' : 'local',
        password_change_required: u.mustChangePassword,
        locked: (await this.#store.lockState(u.username, now)).lockedUntil > now,
      })),
    )
  }

  async createUser(username: unknown, password: unknown, role: unknown): Promise<Record<string, unknown>> {
    if (typeof username !== 'string' || !USERNAME_RE.test(username)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'username must be 1–64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit' })
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw new GatehouseError('ERR_BAD_REQUEST', { message: `role must be one of ${ROLES.join(', ')}` })
    if (typeof password !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'password is required' })
    assertPasswordPolicy(password)
    // The generation starts at the creation time, not 0: a user deleted and created again under
    // the same name must not accept the tokens (or sessions) of the one that was deleted.
    const u: UserRecord = { username, uid: randomUUID(), role: role as Role, passwordHash: await hashPassword(password), mustChangePassword: false, generation: this.#now(), createdAt: this.#now() }
    if (!(await this.#store.createUser(u))) throw new GatehouseError('ERR_USER_EXISTS')
    return { username, role, uid: u.uid }
  }

  async deleteUser(caller: Principal, username: string): Promise<void> {
    if (username === caller.user) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'you cannot delete yourself' })
    if (!(await this.#store.deleteUser(username))) throw new GatehouseError('ERR_USER_NOT_FOUND')
    await this.#store.deleteSessionsOf(username, 'local')
  }

  /**
   * `PUT /api/v2/users/{user}` with `{"role": …}` (Weka's `user update --role`). Tokens carry the
   * role, so the change revokes the user's earlier tokens and ends their sessions; nobody changes
   * their own role (the last admin cannot demote itself by accident).
   */
  async setRole(caller: Principal, username: string, role: unknown): Promise<Record<string, unknown>> {
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw new GatehouseError('ERR_BAD_REQUEST', { message: `role must be one of ${ROLES.join(', ')}` })
    if (username === caller.user) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'you cannot change your own role; another admin can' })
    if ((await this.#store.getUser(username))?.passwordHash === DIRECTORY_HASH) throw new GatehouseError('ERR_BAD_REQUEST', { message: `${username} is a directory user: the role comes from the directory's groups (docs/directory.md)` })
    if ((await this.#store.setRole(username, role as Role)) === undefined) throw new GatehouseError('ERR_USER_NOT_FOUND')
    await this.#store.deleteSessionsOf(username, 'local')
    return { username, role }
  }

  /** `PUT /api/v2/users/password`. Revokes every earlier token of the user. */
  async changePassword(caller: Principal, body: { username?: unknown; old_password?: unknown; new_password?: unknown }, meta: RequestMeta = NO_META): Promise<string> {
    if (body.username !== undefined && typeof body.username !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'username must be a string (or left out for your own password)' })
    const target = typeof body.username === 'string' && body.username !== '' ? body.username : caller.user
    if (typeof body.new_password !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'new_password is required: send {"old_password": "…", "new_password": "…"}' })
    const existing = await this.#store.getUser(target)
    if (existing !== undefined && isDirectoryUser(existing)) throw new GatehouseError('ERR_BAD_REQUEST', { message: `${target} is a directory user: the password is changed in the directory` })
    if (target === caller.user) {
      if (typeof body.old_password !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'old_password is required to change your own password' })
      // No stored password is longer than the cap: refuse before the lockout slot and the hash.
      if (body.old_password.length > MAX_PASSWORD_LENGTH) throw new GatehouseError('ERR_BAD_REQUEST', { message: `old_password is longer than ${MAX_PASSWORD_LENGTH} characters; no password is` })
      await this.#checkPassword(target, body.old_password, meta)
      if (body.old_password === body.new_password) throw new GatehouseError('ERR_WEAK_PASSWORD', { message: 'the new password must differ from the current one' })
    } else {
      if (!caller.groups.includes('admin') || caller.mustChangePassword === true) throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: only an admin may set another user’s password' })
      await this.#requireUser(target)
    }
    assertPasswordPolicy(body.new_password)
    const gen = await this.#store.setPassword(target, await hashPassword(body.new_password), false)
    if (gen === undefined) throw new GatehouseError('ERR_USER_NOT_FOUND')
    await this.#store.deleteSessionsOf(target, 'local') // SPEC §10: a password change ends every session
    return target
  }

  /** `DELETE /api/v2/users/{user}/revoke`. */
  async revoke(username: string): Promise<void> {
    if ((await this.#store.bumpGeneration(username)) === undefined) throw new GatehouseError('ERR_USER_NOT_FOUND')
    await this.#store.deleteSessionsOf(username, 'local') // SPEC §10: revoke-tokens ends every session
  }

  /**
   * Clear one account's failed-login count and lock (the web console's "Unlock"; the API clears
   * every lock with `DELETE /api/v2/lockoutPolicy`). A success finishes the count the same way a
   * right password does.
   */
  async unlock(username: string): Promise<void> {
    await this.#requireUser(username)
    const now = this.#now()
    const s = await this.#store.lockState(username, now)
    if (s.failures === 0 && s.lockedUntil <= now) return
    await this.#store.finishAttempt(username, true, await this.#policy(), now)
  }

  // --- policy and banner ----------------------------------------------------------------

  async lockoutPolicy(): Promise<{ failed_attempts: number; lockout_duration: number }> {
    const p = await this.#policy()
    return { failed_attempts: p.failedAttempts, lockout_duration: Math.round(p.lockoutMs / 1000) }
  }

  async setLockoutPolicy(failedAttempts: number | undefined, lockoutMs: number | undefined): Promise<{ failed_attempts: number; lockout_duration: number }> {
    const cur = await this.#policy()
    const next: LockPolicy = { failedAttempts: failedAttempts ?? cur.failedAttempts, lockoutMs: lockoutMs ?? cur.lockoutMs }
    if (!Number.isInteger(next.failedAttempts) || next.failedAttempts < 2 || next.failedAttempts > 50) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'failed_attempts must be an integer from 2 to 50' })
    if (!(next.lockoutMs >= 30_000 && next.lockoutMs <= 3_600_000)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'lockout_duration must be between 30s and 60m' })
    await this.#store.putSetting('lockoutPolicy', next)
    return this.lockoutPolicy()
  }

  async resetLockoutPolicy(): Promise<{ failed_attempts: number; lockout_duration: number }> {
    await this.#store.deleteSetting('lockoutPolicy')
    await this.#store.clearLocks()
    return this.lockoutPolicy()
  }

  async banner(): Promise<Banner> {
    return (await this.#store.getSetting<Banner>('banner')) ?? { text: this.#c.banner.text, enabled: this.#c.banner.enabled }
  }

  async updateBanner(change: Partial<Banner>): Promise<Banner> {
    if (change.text !== undefined && (typeof change.text !== 'string' || change.text.length > 4096)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'text must be a string of at most 4096 characters' })
    const next = { ...(await this.banner()), ...change }
    await this.#store.putSetting('banner', next)
    return next
  }
}

/**
 * Refuse a malformed login body with 400 before anything is counted or hashed: a client bug
 * is not a failed guess, and an over-long password (no account has one) costs no scrypt.
 */
function loginFields(username: unknown, password: unknown): { username: string; password: string } {
  const shape = 'send {"username": "…", "password": "…"} as JSON'
  if (typeof username !== 'string' || username === '') throw new GatehouseError('ERR_BAD_REQUEST', { message: `username is required and must be a non-empty string: ${shape}` })
  if (typeof password !== 'string' || password === '') throw new GatehouseError('ERR_BAD_REQUEST', { message: `password is required and must be a non-empty string: ${shape}` })
  if (username.length > 256) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'username is longer than 256 characters; no user name is' })
  if (password.length > MAX_PASSWORD_LENGTH) throw new GatehouseError('ERR_BAD_REQUEST', { message: `password is longer than ${MAX_PASSWORD_LENGTH} characters; no password is` })
  return { username, password }
}

/**
 * The first admin's random password: read from `file` when an earlier start wrote it (and then
 * stopped before creating the user), else generated and written once (`wx`: never overwritten),
 * mode 0600, fsynced before the user that depends on it exists.
 */
function initialPassword(file: string): string {
  try {
    const existing = readFileSync(file, 'utf8').trim()
    if (passwordProblem(existing) !== undefined) throw new GatehouseError('ERR_INTERNAL', { detail: `${file} does not hold a usable password; remove it and start again to generate a new one` })
    return existing
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  let pw: string
  do pw = randomBytes(18).toString('base64url')
  while (passwordProblem(pw) !== undefined)
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const fd = openSync(file, 'wx', 0o600)
  try {
    writeSync(fd, `${pw}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  chmodSync(file, 0o600) // whatever the umask did
  return pw
}

/** A new ES256 signing key with a random issuer and key id. */
async function newSigningKey(): Promise<KeyFile> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const id = randomBytes(8).toString('hex')
  return { iss: `urn:gatehouse:local:${id}`, kid: `local-${id}`, privateJwk: { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' }, createdAt: Date.now() }
}

/** The shared store's name of the local issuer's signing key (the ring as first created, or migrated). */
const SIGNING_KEY = 'localIssuer.signingKey'
/** The setting holding the ring once it was rotated on a shared store (published to every replica). */
export const SIGNING_KEY_RING = 'localIssuer.signingKeys'
/** The setting that tells the other workers of a file store that the key file changed (no key material). */
export const SIGNING_KEY_NOTICE = 'localIssuer.signingKeysChanged'

/** The hash unknown names are checked against (a random password nobody knows). */
function dummyPasswordHash(): Promise<string> {
  return hashPassword(randomBytes(16).toString('hex'))
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('base64url')
}
