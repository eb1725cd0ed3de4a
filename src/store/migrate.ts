/**
 * `gatehouse store migrate`: copy the state of one gatehouse on the file store (`<stateDir>/store/`
 * and the local issuer's key in `<stateDir>/issuer/`) into a shared Redis/Valkey store, so that
 * every replica started on it has the same users, tokens, settings and signing key (SPEC §2, §11;
 * docs/replicas.md, "Moving from one replica to several").
 *
 * Three steps, and nothing is written before the last:
 *
 * 1. `readFileState` reads and validates everything (a record that does not look like what
 *    gatehouse writes stops the migration, naming the file and the record, never its content);
 *    what has run out (refresh tokens, locks, sessions, revoked families past their memory) is
 *    left behind and counted.
 * 2. `inspectTarget` looks at what the target already holds under the key prefix.
 * 3. `writePlan` writes the plan as one MULTI/EXEC transaction (all or nothing), under WATCH of
 *    the keys a replica starting meanwhile would write, so a target that changed after it was
 *    inspected is refused rather than mixed. With `replace`, what was there is deleted in the
 *    same transaction. The change feed's counter is bumped, so a replica already running on the
 *    target notices and reloads its mirror.
 *
 * The key layout is redisStore.ts's (its module comment); test/integration/store-migrate.test.ts
 * reads every migrated record back through `RedisStore` and through real replicas.
 */
import { readFileSync, existsSync } from 'node:fs'
import path from 'node:path'
import { createClient, WatchError } from '@redis/client'
import { importJWK } from 'jose'
import { FileStore } from './fileStore.ts'
import { FAILURE_TTL_MS, redisConnection, SESSION_GRACE_MS, type RedisStoreOptions } from './redisStore.ts'
import type { LockState, RefreshRecord, SessionRecord, UserRecord } from './store.ts'

/** The local issuer's key as `<stateDir>/issuer/signing-key.json` and the shared store hold it. */
export interface SigningKey {
  readonly iss: string
  readonly kid: string
  readonly privateJwk: Record<string, unknown>
  /** After a rotation (localIssuer.ts `KeyFile`): when the current key was made, and the retired, verify-only keys. */
  readonly createdAt?: number
  readonly retired?: readonly { readonly kid: string; readonly publicJwk: Record<string, unknown>; readonly createdAt?: number; readonly retiredAt: number }[]
}

/** Everything that will be copied, validated, with what was left behind. */
export interface MigrationPlan {
  readonly source: string
  readonly users: readonly UserRecord[]
  readonly refresh: readonly (readonly [string, RefreshRecord])[]
  /** Revoked family → when it may be forgotten (epoch ms). */
  readonly revokedFamilies: readonly (readonly [string, number])[]
  readonly locks: readonly (readonly [string, LockState])[]
  readonly sessions: readonly (readonly [string, SessionRecord])[]
  /** Setting name → value (banner, lockoutPolicy, tls, caCert, … whatever the admin API stored). */
  readonly settings: readonly (readonly [string, unknown])[]
  readonly signingKey: SigningKey | undefined
  /** What has run out and is not copied. */
  readonly skipped: { readonly refresh: number; readonly revokedFamilies: number; readonly locks: number; readonly sessions: number }
}

/** What the target holds under the prefix before the migration (counts only: never a value). */
export interface TargetContents {
  readonly keys: number
  readonly users: number
  readonly refreshTokens: number
  readonly sessions: number
  readonly locks: number
  readonly settings: readonly string[]
  readonly signingKey: boolean
  readonly other: number
}

/** How to reach the target (the `store.*` settings). */
export type TargetOptions = Pick<RedisStoreOptions, 'url' | 'username' | 'password' | 'passwordFile' | 'caFile' | 'connectTimeoutMs' | 'commandTimeoutMs'> & { readonly keyPrefix: string }

/** The shared store's name of the local issuer's signing key (localIssuer.ts `SIGNING_KEY`, under `shared:`). */
export const SIGNING_KEY_NAME = 'localIssuer.signingKey'

const ROLES = new Set(['admin', 'readonly', 'regular'])
// What users.json holds as a password: an scrypt hash (issuer/passwords.ts), or the marker of a
// directory user, whose password only the directory checks (issuer/localIssuer.ts DIRECTORY_HASH).
const PASSWORD_HASH = /^(scrypt\$|directory:)/

/** A migration that cannot go on: the message says what and what to do (printed as one line). */
export class MigrationError extends Error {
  override name = 'MigrationError'
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)
const isStr = (v: unknown): v is string => typeof v === 'string' && v !== ''
// Store keys are built from names and hashes: no control characters, bounded.
const isName = (v: unknown): v is string => isStr(v) && v.length <= 512 && ![...v].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)

/**
 * Read and validate the file store in `stateDir` (and its signing key) at `now`. Nothing is
 * written. `familyTtlMs`: how long a revoked family is remembered (the longest refresh-token plus
 * access-token lifetime, as `serve` uses).
 *
 * @throws MigrationError when the directory holds no gatehouse state or a record is malformed
 */
export async function readFileState(stateDir: string, opts: { readonly now: number; readonly familyTtlMs: number }): Promise<MigrationPlan> {
  const dir = path.resolve(stateDir)
  const keyFile = path.join(dir, 'issuer', 'signing-key.json')
  if (!existsSync(path.join(dir, 'store')) && !existsSync(keyFile)) {
    throw new MigrationError(`${dir} holds no gatehouse state (neither store/ nor issuer/signing-key.json); give the stateDir of the single replica with --from file:DIR`)
  }
  let c
  try {
    c = new FileStore(dir).contents()
  } catch (e) {
    throw new MigrationError(`cannot read the file store in ${path.join(dir, 'store')}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).name}; nothing was written`)
  }
  const { now } = opts
  const problems: string[] = []
  const bad = (file: string, id: string, what: string): void => {
    if (problems.length < 10) problems.push(`${file}: ${id}: ${what}`)
  }

  const users: UserRecord[] = []
  for (const [k, u] of Object.entries(c.users)) {
    if (!isName(u.username) || u.username !== k) bad('users.json', JSON.stringify(k), 'username missing or not the key')
    else if (!ROLES.has(u.role)) bad('users.json', k, 'role is not admin, readonly or regular')
    else if (typeof u.passwordHash !== 'string' || !PASSWORD_HASH.test(u.passwordHash)) bad('users.json', k, 'passwordHash is neither an scrypt hash nor a directory marker')
    else if (!isInt(u.generation) || u.generation < 0 || !isInt(u.createdAt) || typeof u.mustChangePassword !== 'boolean' || typeof u.uid !== 'string') bad('users.json', k, 'generation, createdAt, uid or mustChangePassword malformed')
    else users.push(u)
  }

  const refresh: [string, RefreshRecord][] = []
  let refreshSkipped = 0
  for (const [h, r] of Object.entries(c.refresh)) {
    if (!isName(h) || !isName(r.username) || !isName(r.family) || !isInt(r.generation) || !isInt(r.expiresAt) || typeof r.used !== 'boolean') bad('refresh.json', 'a record', 'username, family, generation, expiresAt or used malformed')
    else if (r.expiresAt <= now) refreshSkipped++
    else refresh.push([h, r])
  }

  const revokedFamilies: [string, number][] = []
  let familiesSkipped = 0
  for (const [f, at] of Object.entries(c.revokedFamilies)) {
    if (!isName(f) || !isInt(at)) bad('revokedFamilies.json', 'a record', 'not family → epoch ms')
    else if (at + opts.familyTtlMs <= now) familiesSkipped++
    else revokedFamilies.push([f, at + opts.familyTtlMs])
  }

  // A lock that ran out starts a fresh count (as in both stores); failures below the limit carry
  // over, forgotten 24 h after the migration as on Redis (the file store has no time of the last).
  const locks: [string, LockState][] = []
  let locksSkipped = 0
  for (const [n, s] of Object.entries(c.lockout)) {
    if (!isName(n) || !isInt(s.failures) || !isInt(s.lockedUntil)) bad('lockout.json', 'a record', 'failures or lockedUntil malformed')
    else if (s.lockedUntil > now) locks.push([n, { failures: s.failures, pending: 0, lockedUntil: s.lockedUntil }])
    else if (s.lockedUntil === 0 && s.failures > 0) locks.push([n, { failures: s.failures, pending: 0, lockedUntil: 0 }])
    else locksSkipped++
  }

  const sessions: [string, SessionRecord][] = []
  let sessionsSkipped = 0
  for (const [h, s] of Object.entries(c.sessions)) {
    const ok = isName(h) && isName(s.username) && (s.kind === 'console' || s.kind === 'browser') && (s.method === 'local' || s.method === 'oidc') && isInt(s.createdAt) && isInt(s.lastSeenAt) && isInt(s.idleTimeoutMs) && isInt(s.expiresAt) && isStr(s.csrfToken)
    if (!ok) bad('sessions.json', 'a record', 'kind, method, username or times malformed')
    else if (now >= s.expiresAt || now - s.lastSeenAt >= s.idleTimeoutMs) sessionsSkipped++
    else sessions.push([h, s])
  }

  const settings: [string, unknown][] = []
  for (const [k, v] of Object.entries(c.settings)) {
    if (!isName(k) || v === undefined) bad('settings.json', JSON.stringify(k), 'not a setting')
    else settings.push([k, v])
  }

  let signingKey: SigningKey | undefined
  if (existsSync(keyFile)) {
    try {
      const k = JSON.parse(readFileSync(keyFile, 'utf8')) as SigningKey
      const jwk = k.privateJwk
      if (!isStr(k.iss) || !isStr(k.kid) || typeof jwk !== 'object' || jwk === null || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !isStr(jwk.d)) throw new Error('shape')
      await importJWK(jwk, 'ES256')
      if (k.createdAt !== undefined && typeof k.createdAt !== 'number') throw new Error('shape')
      if (k.retired !== undefined && !Array.isArray(k.retired)) throw new Error('shape')
      // The retired keys go along: the tokens they signed keep working on the replicas.
      for (const r of k.retired ?? []) {
        const p = r.publicJwk as Record<string, unknown> | undefined
        if (!isStr(r.kid) || typeof r.retiredAt !== 'number' || typeof p !== 'object' || p === null || p.kty !== 'EC' || p.crv !== 'P-256' || p.d !== undefined) throw new Error('shape')
        await importJWK(p, 'ES256')
      }
      signingKey = { iss: k.iss, kid: k.kid, privateJwk: jwk, ...(k.createdAt === undefined ? {} : { createdAt: k.createdAt }), ...(k.retired === undefined ? {} : { retired: k.retired }) }
    } catch {
      bad('issuer/signing-key.json', 'the key', 'not an ES256 private JWK with iss and kid (and retired public keys) as gatehouse writes it')
    }
  }

  if (problems.length > 0) throw new MigrationError(`the file store in ${dir} has malformed records, so nothing was copied: ${problems.join('; ')}`)
  return { source: dir, users, refresh, revokedFamilies, locks, sessions, settings, signingKey, skipped: { refresh: refreshSkipped, revokedFamilies: familiesSkipped, locks: locksSkipped, sessions: sessionsSkipped } }
}

/** A client that tries once: a command-line tool says what is wrong instead of retrying forever. */
function newClient(o: TargetOptions) {
  const conn = redisConnection(o)
  return createClient({ ...conn, socket: { ...conn.socket, reconnectStrategy: false }, disableOfflineQueue: true, name: 'gatehouse-store-migrate' })
}

type Client = ReturnType<typeof newClient>

/** A connection to the target, opened with the same options as a replica's (redisConnection). */
export interface Target {
  readonly client: Client
  readonly prefix: string
  close(): Promise<void>
}

/**
 * Connect to the target store.
 *
 * @throws MigrationError when it cannot be reached or refuses the credentials (never echoing the password)
 */
export async function openTarget(o: TargetOptions): Promise<Target> {
  const client = newClient(o)
  let lastError: Error | undefined
  client.on('error', (e: Error) => (lastError = e))
  const close = async (): Promise<void> => {
    try {
      if (client.isOpen) client.destroy()
    } catch {
      // already closed
    }
  }
  const ms = o.connectTimeoutMs ?? 5000
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([client.connect(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))])
  } catch (e) {
    await close()
    const why = (lastError ?? (e as Error)).message
    throw new MigrationError(`cannot reach the target store at ${o.url}: ${why}; check --to, the password (GATEHOUSE_STORE_PASSWORD or --password-file) and for rediss:// the CA (--ca-file); nothing was written`)
  } finally {
    clearTimeout(timer)
  }
  return { client, prefix: o.keyPrefix, close }
}

/** Count what the target holds under its prefix (SCAN; reads key names only). */
export async function inspectTarget(t: Target): Promise<TargetContents> {
  const P = t.prefix
  let keys = 0
  let users = 0
  let refreshTokens = 0
  let sessions = 0
  let locks = 0
  let other = 0
  let signingKey = false
  for await (const batch of t.client.scanIterator({ MATCH: `${escapeGlob(P)}*`, COUNT: 1000 })) {
    for (const key of batch as unknown as string[]) {
      const k = key.slice(P.length)
      // The change feed's counter alone is what replicas leave behind after everything expired.
      if (k === 'seq') continue
      keys++
      if (k.startsWith('user:')) users++
      else if (k.startsWith('rt:')) refreshTokens++
      else if (k.startsWith('sess:')) sessions++
      else if (k.startsWith('lock:')) locks++
      else if (k === `shared:${SIGNING_KEY_NAME}`) signingKey = true
      else if (k !== 'settings' && k !== 'users' && !k.startsWith('famrt:') && !k.startsWith('usess:')) other++
    }
  }
  const settings = ((await t.client.sendCommand(['HKEYS', `${P}settings`])) as string[]).slice().sort()
  return { keys, users, refreshTokens, sessions, locks, settings, signingKey, other }
}

/** True when the target holds nothing of gatehouse under the prefix. */
export function isEmptyTarget(c: TargetContents): boolean {
  return c.keys === 0
}

/** The Redis commands that write `plan` under `prefix` at `now` (the layout of redisStore.ts). */
export function planCommands(plan: MigrationPlan, prefix: string, now: number): string[][] {
  const P = prefix
  const cmds: string[][] = []
  for (const u of plan.users) {
    cmds.push(['HSET', `${P}user:${u.username}`, 'username', u.username, 'uid', u.uid, 'role', u.role, 'passwordHash', u.passwordHash, 'mustChangePassword', u.mustChangePassword ? '1' : '0', 'generation', String(u.generation), 'createdAt', String(u.createdAt)])
  }
  if (plan.users.length > 0) cmds.push(['SADD', `${P}users`, ...plan.users.map((u) => u.username)])

  const familyEnd = new Map<string, number>()
  for (const [h, r] of plan.refresh) {
    cmds.push(['HSET', `${P}rt:${h}`, 'username', r.username, 'family', r.family, 'generation', String(r.generation), 'expiresAt', String(r.expiresAt), 'used', r.used ? '1' : '0'])
    cmds.push(['PEXPIREAT', `${P}rt:${h}`, String(r.expiresAt)])
    cmds.push(['SADD', `${P}famrt:${r.family}`, h])
    familyEnd.set(r.family, Math.max(familyEnd.get(r.family) ?? 0, r.expiresAt))
  }
  for (const [f, end] of familyEnd) cmds.push(['PEXPIREAT', `${P}famrt:${f}`, String(end)])

  if (plan.revokedFamilies.length > 0) {
    const z = `${P}revokedFamilies`
    cmds.push(['ZADD', z, ...plan.revokedFamilies.flatMap(([f, until]) => [String(until), f])])
    cmds.push(['PEXPIREAT', z, String(Math.max(...plan.revokedFamilies.map(([, until]) => until)))])
  }

  for (const [n, s] of plan.locks) {
    const k = `${P}lock:${n}`
    cmds.push(['HSET', k, 'failures', String(s.failures), 'pending', '0', 'pendingUntil', '0', 'lockedUntil', String(s.lockedUntil)])
    // As the store's lockSave: the lock's end, or 24 h for the failure count, plus a second.
    let ttl = 1000
    if (s.lockedUntil > now) ttl = Math.max(ttl, s.lockedUntil - now)
    if (s.failures > 0) ttl = Math.max(ttl, FAILURE_TTL_MS)
    cmds.push(['PEXPIRE', k, String(ttl + 1000)])
  }

  const userSessionsEnd = new Map<string, number>()
  for (const [h, s] of plan.sessions) {
    const k = `${P}sess:${h}`
    const { lastSeenAt, oidc, ...rest } = s
    cmds.push(['HSET', k, 'rec', JSON.stringify(rest), 'lastSeenAt', String(lastSeenAt), 'expiresAt', String(s.expiresAt), 'idleTimeoutMs', String(s.idleTimeoutMs), 'username', s.username, 'method', s.method, 'kind', s.kind, 'createdAt', String(s.createdAt)])
    if (oidc !== undefined) cmds.push(['HSET', k, 'oidc', JSON.stringify({ issuer: oidc.issuer, sealed: oidc.sealed, expiresAt: oidc.expiresAt })])
    cmds.push(['PEXPIRE', k, String(Math.max(1, Math.min(s.expiresAt - lastSeenAt, s.idleTimeoutMs)) + SESSION_GRACE_MS)])
    cmds.push(['SADD', `${P}usess:${s.username}`, h])
    userSessionsEnd.set(s.username, Math.max(userSessionsEnd.get(s.username) ?? 0, s.expiresAt + SESSION_GRACE_MS))
  }
  for (const [u, end] of userSessionsEnd) cmds.push(['PEXPIREAT', `${P}usess:${u}`, String(end)])

  if (plan.settings.length > 0) cmds.push(['HSET', `${P}settings`, ...plan.settings.flatMap(([k, v]) => [k, JSON.stringify(v)])])
  if (plan.signingKey !== undefined) cmds.push(['SET', `${P}shared:${SIGNING_KEY_NAME}`, JSON.stringify(plan.signingKey)])
  // A replica already running on the target sees the counter move in its next heartbeat and
  // reloads its mirror (generations, revoked families) and its settings.
  cmds.push(['INCR', `${P}seq`])
  return cmds
}

/**
 * Write `plan` into the target as one transaction. Without `replace`, a target that is not empty
 * (or becomes non-empty meanwhile) is refused; with it, every key under the prefix is deleted in
 * the same transaction (the change feed's counter excepted: it only moves forward).
 *
 * @returns how many keys the target holds under the prefix afterwards
 * @throws MigrationError when the target is not empty (without `replace`) or changed meanwhile
 */
export async function writePlan(t: Target, plan: MigrationPlan, opts: { readonly replace: boolean; readonly now: number }): Promise<number> {
  const P = t.prefix
  // A replica starting meanwhile writes the signing key, the users or the settings: watching
  // them makes EXEC fail instead of mixing two states.
  const c = t.client
  const watched = [`${P}shared:${SIGNING_KEY_NAME}`, `${P}users`, `${P}settings`, `${P}seq`]
  await c.watch(watched)
  const existing: string[] = []
  for await (const batch of c.scanIterator({ MATCH: `${escapeGlob(P)}*`, COUNT: 1000 })) {
    for (const key of batch as unknown as string[]) if (key !== `${P}seq`) existing.push(key)
  }
  if (existing.length > 0 && !opts.replace) {
    await c.unwatch()
    throw new MigrationError(`the target already holds ${existing.length} keys under ${P}; nothing was written (run with --dry-run to see what is there, and --force to replace it)`)
  }
  const m = c.multi()
  for (let i = 0; i < existing.length; i += 500) m.addCommand(['DEL', ...existing.slice(i, i + 500)])
  for (const cmd of planCommands(plan, P, opts.now)) m.addCommand(cmd)
  try {
    await m.exec()
  } catch (e) {
    if (e instanceof WatchError) throw new MigrationError('the target changed while the migration was being prepared (a replica started on it?); nothing was written: stop the replicas and run again')
    throw new MigrationError(`the target refused the write: ${(e as Error).message}; nothing was written`)
  }
  let n = 0
  for await (const batch of c.scanIterator({ MATCH: `${escapeGlob(P)}*`, COUNT: 1000 })) n += (batch as unknown as string[]).length
  return n
}

/** A key prefix as a literal SCAN pattern. */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}
