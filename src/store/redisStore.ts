/**
 * The shared state store on Redis (or Valkey) for several replicas (SPEC §11, docs/replicas.md).
 *
 * - Every operation is one Lua script (or one read command) executed atomically by Redis:
 *   nothing is read into Node, changed and written back, so two replicas can never interleave
 *   inside an operation (lockout reservations, refresh-token reuse, generation bumps).
 * - An operation resolves only after Redis answered it. While Redis is unreachable, operations
 *   reject at once (no offline queue: a queued write could run long after the client was told
 *   503) with ERR_STORE_UNAVAILABLE, and the client reconnects with capped exponential backoff.
 * - The verified-token cache needs generations and revoked families synchronously (`SyncView`):
 *   a mirror loaded at open and kept current by publish/subscribe. Every script that revokes or
 *   changes a setting numbers its message (INCR) and publishes it in the same atomic step, so a
 *   gap or a lost subscription is detected and answered with a fresh snapshot.
 * - Freshness is proven, not assumed: every replica publishes a heartbeat through Redis and waits
 *   for its own echo on the subscription. Redis delivers messages in order, so when the echo of a
 *   heartbeat sent at t arrives, every revocation acknowledged before t has been applied. A mirror
 *   not proven fresh within `maxStalenessMs` refuses (503) instead of answering.
 *
 * Key layout (all under `keyPrefix`): `user:<name>` hash + `users` set; `rt:<sha256>` refresh
 * token hash (TTL: its expiry) + `famrt:<family>` set; `revokedFamilies` sorted set (score: when
 * the entry may be forgotten); `lock:<name>` hash (TTL); `sess:<sha256>` hash (TTL: idle/absolute
 * end) + `usess:<user>` set (every method and kind; putSession keeps at most
 * MAX_SESSIONS_PER_USER live ones per method and kind); `settings` hash; `shared:<name>` (the
 * local issuer's key); `seq`; channel `sync`. Keys are built inside the scripts, so Redis
 * Cluster is not supported (one primary, with replicas and Sentinel for failover, is).
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { createClient } from '@redis/client'
import { GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { SharedValues } from './shared.ts'
import { MAX_SESSIONS_PER_USER, type AttemptSlot, type IssuerStore, type LockPolicy, type LockState, type RefreshRecord, type SessionRecord, type SessionTouch, type UserRecord } from './store.ts'

/** How to reach the store; see the `store` group in docs/configuration.md. */
export interface RedisStoreOptions {
  /** `redis://HOST:PORT[/DB]` or `rediss://…` (no password in it). */
  readonly url: string
  readonly username?: string | undefined
  readonly password?: string | undefined
  readonly passwordFile?: string | undefined
  /** PEM CA bundle for rediss:// (added to the system CAs). */
  readonly caFile?: string | undefined
  readonly keyPrefix?: string
  /** ms; each connection attempt, and how long `open` waits for the first. */
  readonly connectTimeoutMs?: number
  /** ms; each operation. */
  readonly commandTimeoutMs?: number
  /** ms; how long the sync view answers without a proven-fresh mirror (see the module comment). */
  readonly maxStalenessMs?: number
  /** ms; how long a revoked token family is remembered (≥ the longest refresh-token lifetime). */
  readonly familyTtlMs?: number
  readonly logger?: Logger | undefined
}

/** What `/readyz` and the logs can say about the store (never a password). */
export interface StoreStatus {
  readonly kind: 'redis'
  readonly url: string
  readonly connected: boolean
  /** ms since the mirror was last proven fresh. */
  readonly staleMs: number
  readonly fresh: boolean
}

// A reservation whose replica died before finishing it stops counting after this long.
const PENDING_TTL_MS = 30_000
// Consecutive failures of a name are forgotten this long after the last one (sprayed names
// must not stay forever; a lock itself lasts its lockoutDuration).
export const FAILURE_TTL_MS = 86_400_000
// Session keys outlive their idle/absolute end by this much, so that a touch just after the end
// still tells why (idle-expired / expired) instead of "unknown"; the script decides by `now`.
export const SESSION_GRACE_MS = 60_000
const DEFAULT_FAMILY_TTL_MS = 366 * 86_400_000

/** Helpers every script starts with. ARGV[1] is always the key prefix. */
const PRELUDE = `
local P = ARGV[1]
local function pub(msg)
  local s = redis.call('INCR', P .. 'seq')
  redis.call('PUBLISH', P .. 'sync', '{"s":' .. s .. ',' .. msg .. '}')
end
local function extend(k, ms)
  local t = redis.call('PTTL', k)
  if t < ms then redis.call('PEXPIRE', k, ms) end
end
`

const LOCK_LOAD = `
local function lockLoad(k, now)
  local v = redis.call('HMGET', k, 'failures', 'pending', 'pendingUntil', 'lockedUntil')
  local f, p, pu, lu = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
  if pu <= now then p = 0 end
  if lu ~= 0 and lu <= now then f = 0; lu = 0 end
  return f, p, pu, lu
end
local function lockSave(k, f, p, pu, lu, now)
  if f == 0 and p == 0 and lu == 0 then redis.call('DEL', k); return end
  redis.call('HSET', k, 'failures', f, 'pending', p, 'pendingUntil', pu, 'lockedUntil', lu)
  local ttl = 1000
  if p > 0 and pu - now > ttl then ttl = pu - now end
  if lu > now and lu - now > ttl then ttl = lu - now end
  if f > 0 and ${FAILURE_TTL_MS} > ttl then ttl = ${FAILURE_TTL_MS} end
  redis.call('PEXPIRE', k, ttl + 1000)
end
`

const SCRIPTS = {
  createUser: `
local k = P .. 'user:' .. ARGV[2]
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'username', ARGV[2], 'uid', ARGV[3], 'role', ARGV[4], 'passwordHash', ARGV[5], 'mustChangePassword', ARGV[6], 'generation', ARGV[7], 'createdAt', ARGV[8])
redis.call('SADD', P .. 'users', ARGV[2])
pub('"g":[' .. cjson.encode(ARGV[2]) .. ',' .. tonumber(ARGV[7]) .. ']')
return 1`,
  listUsers: `
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', P .. 'users')) do
  local r = redis.call('HGETALL', P .. 'user:' .. n)
  if #r > 0 then out[#out + 1] = r end
end
return out`,
  setPassword: `
local k = P .. 'user:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return false end
local g = redis.call('HINCRBY', k, 'generation', 1)
redis.call('HSET', k, 'passwordHash', ARGV[3], 'mustChangePassword', ARGV[4])
pub('"g":[' .. cjson.encode(ARGV[2]) .. ',' .. g .. ']')
return g`,
  setRole: `
local k = P .. 'user:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return false end
local g = redis.call('HINCRBY', k, 'generation', 1)
redis.call('HSET', k, 'role', ARGV[3])
pub('"g":[' .. cjson.encode(ARGV[2]) .. ',' .. g .. ']')
return g`,
  bumpGeneration: `
local k = P .. 'user:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return false end
local g = redis.call('HINCRBY', k, 'generation', 1)
pub('"g":[' .. cjson.encode(ARGV[2]) .. ',' .. g .. ']')
return g`,
  deleteUser: `
local n = redis.call('DEL', P .. 'user:' .. ARGV[2])
redis.call('SREM', P .. 'users', ARGV[2])
if n == 1 then pub('"g":[' .. cjson.encode(ARGV[2]) .. ',null]') end
return n`,
  putRefresh: `
local k = P .. 'rt:' .. ARGV[2]
local ttl = tonumber(ARGV[8])
redis.call('DEL', k)
redis.call('HSET', k, 'username', ARGV[3], 'family', ARGV[4], 'generation', ARGV[5], 'expiresAt', ARGV[6], 'used', ARGV[7])
redis.call('PEXPIRE', k, ttl)
local fk = P .. 'famrt:' .. ARGV[4]
redis.call('SADD', fk, ARGV[2])
extend(fk, ttl)
return 1`,
  useRefresh: `
local k = P .. 'rt:' .. ARGV[2]
local r = redis.call('HGETALL', k)
if #r == 0 then return false end
if redis.call('HGET', k, 'used') ~= '1' then redis.call('HSET', k, 'used', '1') end
return r`,
  revokeFamily: `
local fk = P .. 'famrt:' .. ARGV[2]
for _, h in ipairs(redis.call('SMEMBERS', fk)) do redis.call('DEL', P .. 'rt:' .. h) end
redis.call('DEL', fk)
local z = P .. 'revokedFamilies'
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
redis.call('ZADD', z, now + ttl, ARGV[2])
extend(z, ttl)
pub('"f":' .. cjson.encode(ARGV[2]))
return 1`,
  reserveAttempt: `${LOCK_LOAD}
local k = P .. 'lock:' .. ARGV[2]
local max, now = tonumber(ARGV[3]), tonumber(ARGV[5])
local f, p, pu, lu = lockLoad(k, now)
if lu > now then return {0, lu - now} end
if f + p >= max then return {0, 1000} end
lockSave(k, f, p + 1, now + ${PENDING_TTL_MS}, lu, now)
return {1, 0}`,
  finishAttempt: `${LOCK_LOAD}
local k = P .. 'lock:' .. ARGV[2]
local ok, max, lockout, now = ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local f, p, pu, lu = lockLoad(k, now)
p = p - 1
if p < 0 then p = 0 end
if ok then f = 0; lu = 0 else
  f = f + 1
  if f >= max then lu = now + lockout end
end
lockSave(k, f, p, pu, lu, now)
return {f, p, lu}`,
  lockState: `${LOCK_LOAD}
local f, p, pu, lu = lockLoad(P .. 'lock:' .. ARGV[2], tonumber(ARGV[3]))
return {f, p, lu}`,
  clearLocks: `${LOCK_LOAD}
local now = tonumber(ARGV[2])
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', P .. 'lock:*', 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local f, p, pu, lu = lockLoad(k, now)
    if p > 0 then lockSave(k, 0, p, pu, 0, now) else redis.call('DEL', k) end
  end
until cursor == '0'
return 1`,
  putSession: `
local k = P .. 'sess:' .. ARGV[2]
redis.call('DEL', k)
redis.call('HSET', k, 'rec', ARGV[3], 'lastSeenAt', ARGV[4], 'expiresAt', ARGV[5], 'idleTimeoutMs', ARGV[6], 'username', ARGV[7], 'method', ARGV[8], 'kind', ARGV[10], 'createdAt', ARGV[11])
if ARGV[9] ~= '' then redis.call('HSET', k, 'oidc', ARGV[9]) end
local last, exp, idle = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = math.min(exp - last, idle)
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', k, ttl + ${SESSION_GRACE_MS})
local ik = P .. 'usess:' .. ARGV[7]
redis.call('SADD', ik, ARGV[2])
extend(ik, math.max(exp - last, 1) + ${SESSION_GRACE_MS})
-- The cap: the user's other live sessions of the same method and kind (judged at the new
-- session's createdAt); beyond ARGV[12] in all, the oldest go (createdAt, lastSeenAt, hash).
-- Sessions stored before the kind/createdAt fields existed are read from their record.
local now, max = tonumber(ARGV[11]), tonumber(ARGV[12])
local mine = {}
for _, h in ipairs(redis.call('SMEMBERS', ik)) do
  if h ~= ARGV[2] then
    local v = redis.call('HMGET', P .. 'sess:' .. h, 'method', 'kind', 'createdAt', 'lastSeenAt', 'expiresAt', 'idleTimeoutMs', 'rec')
    if not v[1] then redis.call('SREM', ik, h)
    elseif v[1] == ARGV[8] then
      local kind, created = v[2], tonumber(v[3])
      if not kind or not created then
        local r = cjson.decode(v[7])
        kind, created = r.kind, tonumber(r.createdAt) or 0
      end
      local l, e, i = tonumber(v[4]), tonumber(v[5]), tonumber(v[6])
      if kind == ARGV[10] and now < e and now - l < i then mine[#mine + 1] = {h, created, l} end
    end
  end
end
local excess = #mine + 1 - max
if excess > 0 then
  table.sort(mine, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[1] < b[1]
  end)
  for n = 1, excess do
    redis.call('DEL', P .. 'sess:' .. mine[n][1])
    redis.call('SREM', ik, mine[n][1])
  end
end
return 1`,
  touchSession: `
local k = P .. 'sess:' .. ARGV[2]
local now = tonumber(ARGV[3])
local v = redis.call('HMGET', k, 'rec', 'lastSeenAt', 'expiresAt', 'idleTimeoutMs', 'username', 'oidc')
if not v[1] then return {'unknown'} end
local last, exp, idle = tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
local why = false
if now >= exp then why = 'expired' elseif now - last >= idle then why = 'idle-expired' end
if why then
  redis.call('DEL', k)
  redis.call('SREM', P .. 'usess:' .. v[5], ARGV[2])
  return {why}
end
if now > last then last = now end
redis.call('HSET', k, 'lastSeenAt', last)
local ttl = math.min(exp - last, idle)
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', k, ttl + ${SESSION_GRACE_MS})
return {'ok', v[1], last, v[6] or ''}`,
  updateSessionOidc: `
local k = P .. 'sess:' .. ARGV[2]
if redis.call('HEXISTS', k, 'oidc') == 0 then return 0 end
redis.call('HSET', k, 'oidc', ARGV[3])
return 1`,
  deleteSession: `
local k = P .. 'sess:' .. ARGV[2]
local u = redis.call('HGET', k, 'username')
if not u then return 0 end
redis.call('DEL', k)
redis.call('SREM', P .. 'usess:' .. u, ARGV[2])
return 1`,
  deleteSessionsOf: `
local ik = P .. 'usess:' .. ARGV[2]
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', ik)) do
  local k = P .. 'sess:' .. h
  local m = redis.call('HGET', k, 'method')
  if not m then redis.call('SREM', ik, h)
  elseif ARGV[3] == '' or m == ARGV[3] then
    redis.call('DEL', k)
    redis.call('SREM', ik, h)
    n = n + 1
  end
end
return n`,
  putSetting: `
redis.call('HSET', P .. 'settings', ARGV[2], ARGV[3])
pub('"k":' .. cjson.encode(ARGV[2]))
return 1`,
  deleteSetting: `
if redis.call('HDEL', P .. 'settings', ARGV[2]) == 1 then pub('"k":' .. cjson.encode(ARGV[2])) end
return 1`,
  sharedValue: `
redis.call('SET', P .. 'shared:' .. ARGV[2], ARGV[3], 'NX')
return redis.call('GET', P .. 'shared:' .. ARGV[2])`,
  heartbeat: `
redis.call('PUBLISH', P .. 'sync', '{"hb":"' .. ARGV[2] .. '","t":' .. ARGV[3] .. ',"q":' .. (redis.call('GET', P .. 'seq') or '0') .. '}')
return 1`,
  snapshot: `
local gens = {}
for _, n in ipairs(redis.call('SMEMBERS', P .. 'users')) do
  local g = redis.call('HGET', P .. 'user:' .. n, 'generation')
  if g then gens[#gens + 1] = n; gens[#gens + 1] = g end
end
local fams = redis.call('ZRANGEBYSCORE', P .. 'revokedFamilies', '(' .. ARGV[2], '+inf', 'WITHSCORES')
return {redis.call('GET', P .. 'seq') or '0', gens, fams, redis.call('HKEYS', P .. 'settings')}`,
} as const

type ScriptName = keyof typeof SCRIPTS
const LUA: Record<ScriptName, { text: string; sha: string }> = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, body]) => {
    const text = PRELUDE + body
    return [name, { text, sha: createHash('sha1').update(text).digest('hex') }]
  }),
) as Record<ScriptName, { text: string; sha: string }>

type Client = ReturnType<typeof createClient>
type Reply = string | number | null | Reply[]

/** A message on the sync channel: a generation, a revoked family, a setting, or a heartbeat. */
type SyncMessage = { s: number; g: [string, number | null] } | { s: number; f: string } | { s: number; k: string } | { hb: string; t: number; q: number }

/** The shared state store. Create with `RedisStore.open`. */
export class RedisStore implements IssuerStore, SharedValues {
  readonly #client: Client
  readonly #sub: Client
  readonly #prefix: string
  readonly #channel: string
  readonly #url: string
  readonly #timeoutMs: number
  readonly #maxStaleMs: number
  readonly #familyTtlMs: number
  readonly #logger: Logger | undefined
  readonly #id = randomBytes(8).toString('hex')
  // The mirror (SyncView).
  readonly #gens = new Map<string, number>()
  /** Revoked family → when it may be forgotten (epoch ms). */
  readonly #families = new Map<string, number>()
  readonly #settingListeners: ((key: string) => void)[] = []
  #seq = 0
  /** performance.now() of the last proof that the mirror is complete (a heartbeat's echo, or a snapshot). */
  #freshAt = -Infinity
  #resyncNeeded = true
  #resyncing: Promise<void> | undefined
  /** Messages that arrived while a snapshot was in flight (re-applied on top of it). */
  #buffered: SyncMessage[] | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #closed = false

  private constructor(o: RedisStoreOptions) {
    this.#prefix = o.keyPrefix ?? 'gatehouse:'
    this.#channel = `${this.#prefix}sync`
    this.#url = o.url
    this.#timeoutMs = o.commandTimeoutMs ?? 2000
    this.#maxStaleMs = o.maxStalenessMs ?? 1000
    this.#familyTtlMs = o.familyTtlMs ?? DEFAULT_FAMILY_TTL_MS
    this.#logger = o.logger
    this.#client = createClient({
      ...redisConnection(o),
      // A write queued while offline could run long after its caller was told 503.
      disableOfflineQueue: true,
      name: `gatehouse-${this.#id}`,
    })
    this.#sub = this.#client.duplicate({ name: `gatehouse-${this.#id}-sync` })
    let lastLogged = 0
    const onError = (which: string) => (e: Error): void => {
      // Reconnect attempts fail every few hundred ms during an outage: log at most every 10 s.
      if (performance.now() - lastLogged < 10_000) return
      lastLogged = performance.now()
      this.#logger?.warn({ store: this.#url, connection: which, error: e.message }, 'state store connection error; reconnecting with backoff')
    }
    this.#client.on('error', onError('commands'))
    this.#sub.on('error', onError('subscription'))
    // Anything published while the subscription was down is lost to it: mark, and take a new
    // snapshot once it is back.
    this.#sub.on('end', () => (this.#resyncNeeded = true))
    this.#sub.on('reconnecting', () => (this.#resyncNeeded = true))
    this.#sub.on('ready', () => {
      if (this.#resyncNeeded && this.#freshAt !== -Infinity) void this.#resync()
    })
  }

  /**
   * Connect (both the command and the subscription connection), load the mirror, and start the
   * heartbeat. Rejects with ERR_STORE_UNAVAILABLE when the store cannot be reached within the
   * connect timeout.
   */
  static async open(o: RedisStoreOptions): Promise<RedisStore> {
    const s = new RedisStore(o)
    const deadline = o.connectTimeoutMs ?? 5000
    try {
      await withTimeout(
        (async () => {
          await s.#client.connect()
          await s.#sub.connect()
          await s.#sub.subscribe(s.#channel, (m: string) => s.#onMessage(m))
        })(),
        deadline,
      )
      await s.#resync()
    } catch (e) {
      await s.close()
      throw unavailable(e, `cannot reach the state store at ${s.#url} within ${deadline} ms`)
    }
    const every = Math.max(50, Math.floor(s.#maxStaleMs / 4))
    s.#heartbeat = setInterval(() => s.#beat(), every)
    s.#heartbeat.unref()
    return s
  }

  /** Stop the heartbeat and close both connections. */
  async close(): Promise<void> {
    this.#closed = true
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat)
    for (const c of [this.#sub, this.#client]) {
      try {
        if (c.isOpen) c.destroy()
      } catch {
        // already closed
      }
    }
  }

  /** For /readyz and the logs. */
  status(): StoreStatus {
    const staleMs = Math.max(0, Math.round(performance.now() - this.#freshAt))
    return { kind: 'redis', url: this.#url, connected: this.#client.isReady, staleMs, fresh: staleMs <= this.#maxStaleMs }
  }

  // --- the mirror -----------------------------------------------------------------------

  #beat(): void {
    if (this.#closed) return
    if (this.#resyncNeeded && this.#resyncing === undefined && this.#sub.isReady) void this.#resync()
    this.#run('heartbeat', [this.#id, String(performance.now())]).catch(() => {
      // The store is unreachable: the echo does not come, and the mirror ages.
    })
  }

  #onMessage(text: string): void {
    let m: SyncMessage
    try {
      m = JSON.parse(text) as SyncMessage
    } catch {
      return
    }
    if ('hb' in m) {
      // Only our own echo proves our subscription: everything published before it has arrived,
      // so the counter it read must be the one we hold. Otherwise a message was lost, or the
      // store was emptied or replaced (FLUSHALL publishes nothing): take a new snapshot.
      if (m.hb !== this.#id || this.#buffered !== undefined || this.#resyncNeeded) return
      if (m.q !== this.#seq) {
        this.#resyncNeeded = true
        void this.#resync()
        return
      }
      if (m.t > this.#freshAt) this.#freshAt = m.t
      return
    }
    if (this.#buffered !== undefined) this.#buffered.push(m)
    if (m.s !== this.#seq + 1 && this.#buffered === undefined) {
      // A gap (a message lost) or a reset counter (the store was emptied): trust nothing until a
      // new snapshot; apply this one meanwhile (it is newer than anything held).
      this.#resyncNeeded = true
      void this.#resync()
    }
    this.#seq = Math.max(this.#seq, m.s)
    this.#apply(m)
  }

  #apply(m: SyncMessage): void {
    if ('g' in m) {
      const [user, gen] = m.g
      if (gen === null) this.#gens.delete(user)
      else this.#gens.set(user, gen)
    } else if ('f' in m) this.#families.set(m.f, Date.now() + this.#familyTtlMs)
    else if ('k' in m) this.#settingChanged(m.k)
  }

  #settingChanged(key: string): void {
    for (const fn of this.#settingListeners) {
      try {
        fn(key)
      } catch (e) {
        this.#logger?.error({ key, error: (e as Error).message }, 'a setting-change listener failed')
      }
    }
  }

  /** Replace the mirror with a snapshot (at open, after the subscription was lost, after a gap). */
  #resync(): Promise<void> {
    this.#resyncing ??= (async () => {
      try {
        for (;;) {
          this.#resyncNeeded = false
          const started = performance.now()
          this.#buffered = []
          const r = (await this.#run('snapshot', [String(Date.now())])) as [string, string[], string[], string[]]
          const buffered = this.#buffered
          this.#buffered = undefined
          const seq = Number(r[0])
          this.#gens.clear()
          for (let i = 0; i + 1 < r[1].length; i += 2) this.#gens.set(r[1][i] as string, Number(r[1][i + 1]))
          this.#families.clear()
          for (let i = 0; i + 1 < r[2].length; i += 2) this.#families.set(r[2][i] as string, Number(r[2][i + 1]))
          this.#seq = seq
          for (const m of buffered) {
            if ('s' in m && m.s > seq) {
              this.#seq = Math.max(this.#seq, m.s)
              this.#apply(m)
            }
          }
          if (this.#resyncNeeded) continue // the subscription dropped again meanwhile
          const wasFresh = this.#freshAt !== -Infinity
          this.#freshAt = Math.max(this.#freshAt, started)
          // Settings may have changed while we were not listening: let every listener look again.
          if (wasFresh) for (const k of new Set([...r[3], 'tls', 'caCert'])) this.#settingChanged(k)
          return
        }
      } catch (e) {
        this.#buffered = undefined
        this.#resyncNeeded = true
        if (this.#freshAt === -Infinity) throw e
        // The heartbeat tries again.
      } finally {
        this.#resyncing = undefined
      }
    })()
    return this.#resyncing
  }

  /** Refuse to answer from a mirror that has not been proven fresh within the bound. */
  #assertFresh(): void {
    const age = performance.now() - this.#freshAt
    if (age > this.#maxStaleMs) {
      throw new GatehouseError('ERR_STORE_UNAVAILABLE', {
        message: 'the state store is unreachable, so local tokens cannot be checked for revocation; try again shortly',
        detail: `revocation feed not confirmed for ${Number.isFinite(age) ? Math.round(age) : '∞'} ms (bound ${this.#maxStaleMs} ms)`,
      })
    }
  }

  generationSync(username: string): number | undefined {
    this.#assertFresh()
    return this.#gens.get(username)
  }

  familyRevokedSync(family: string): boolean {
    this.#assertFresh()
    const until = this.#families.get(family)
    return until !== undefined && until > Date.now()
  }

  onSettingChange(fn: (key: string) => void): void {
    this.#settingListeners.push(fn)
  }

  // --- running scripts ----------------------------------------------------------------

  /** Run one script atomically (EVALSHA, EVAL when Redis does not know it yet). */
  async #run(name: ScriptName, args: readonly string[]): Promise<Reply> {
    const { sha, text } = LUA[name]
    const tail = ['0', this.#prefix, ...args]
    try {
      try {
        return await this.#client.sendCommand<Reply>(['EVALSHA', sha, ...tail], { timeout: this.#timeoutMs })
      } catch (e) {
        if (!String((e as Error).message).startsWith('NOSCRIPT')) throw e
        return await this.#client.sendCommand<Reply>(['EVAL', text, ...tail], { timeout: this.#timeoutMs })
      }
    } catch (e) {
      throw unavailable(e, `${name}`)
    }
  }

  async #cmd(args: string[]): Promise<Reply> {
    try {
      return await this.#client.sendCommand<Reply>(args, { timeout: this.#timeoutMs })
    } catch (e) {
      throw unavailable(e, args[0] ?? '')
    }
  }

  // --- users ---------------------------------------------------------------------------

  async getUser(username: string): Promise<UserRecord | undefined> {
    const r = (await this.#cmd(['HGETALL', `${this.#prefix}user:${username}`])) as string[] | Record<string, string>
    return toUser(r)
  }

  async listUsers(): Promise<UserRecord[]> {
    const r = (await this.#run('listUsers', [])) as string[][]
    return r.map((x) => toUser(x) as UserRecord).sort((a, b) => a.username.localeCompare(b.username))
  }

  async createUser(u: UserRecord): Promise<boolean> {
    return (await this.#run('createUser', [u.username, u.uid, u.role, u.passwordHash, u.mustChangePassword ? '1' : '0', String(u.generation), String(u.createdAt)])) === 1
  }

  async setPassword(username: string, passwordHash: string, mustChangePassword: boolean): Promise<number | undefined> {
    const g = await this.#run('setPassword', [username, passwordHash, mustChangePassword ? '1' : '0'])
    return this.#appliedGeneration(username, g)
  }

  async setRole(username: string, role: UserRecord['role']): Promise<number | undefined> {
    return this.#appliedGeneration(username, await this.#run('setRole', [username, role]))
  }

  async bumpGeneration(username: string): Promise<number | undefined> {
    return this.#appliedGeneration(username, await this.#run('bumpGeneration', [username]))
  }

  /** Apply our own change to the mirror at once (the published copy follows). */
  #appliedGeneration(username: string, g: Reply): number | undefined {
    if (g === null) return undefined
    const gen = Number(g)
    if ((this.#gens.get(username) ?? -1) < gen) this.#gens.set(username, gen)
    return gen
  }

  async deleteUser(username: string): Promise<boolean> {
    const n = await this.#run('deleteUser', [username])
    if (n === 1) this.#gens.delete(username)
    return n === 1
  }

  // --- refresh tokens -----------------------------------------------------------------

  async putRefresh(hash: string, r: RefreshRecord): Promise<void> {
    const ttl = Math.max(1, r.expiresAt - Date.now())
    await this.#run('putRefresh', [hash, r.username, r.family, String(r.generation), String(r.expiresAt), r.used ? '1' : '0', String(ttl)])
  }

  async useRefresh(hash: string): Promise<RefreshRecord | undefined> {
    const r = await this.#run('useRefresh', [hash])
    if (r === null) return undefined
    const h = pairs(r as string[])
    return { username: h.username ?? '', family: h.family ?? '', generation: Number(h.generation), expiresAt: Number(h.expiresAt), used: h.used === '1' }
  }

  async revokeFamily(family: string): Promise<void> {
    await this.#run('revokeFamily', [family, String(Date.now()), String(this.#familyTtlMs)])
    this.#families.set(family, Date.now() + this.#familyTtlMs)
  }

  async isFamilyRevoked(family: string): Promise<boolean> {
    const score = await this.#cmd(['ZSCORE', `${this.#prefix}revokedFamilies`, family])
    return score !== null && Number(score) > Date.now()
  }

  // --- lockout -------------------------------------------------------------------------

  async reserveAttempt(name: string, policy: LockPolicy, now: number): Promise<AttemptSlot> {
    const [ok, retry] = (await this.#run('reserveAttempt', [name, String(policy.failedAttempts), String(policy.lockoutMs), String(now)])) as [number, number]
    return ok === 1 ? { ok: true } : { ok: false, retryAfterMs: Number(retry) }
  }

  async finishAttempt(name: string, success: boolean, policy: LockPolicy, now: number): Promise<LockState> {
    const [failures, pending, lockedUntil] = (await this.#run('finishAttempt', [name, success ? '1' : '0', String(policy.failedAttempts), String(policy.lockoutMs), String(now)])) as number[]
    return { failures: Number(failures), pending: Number(pending), lockedUntil: Number(lockedUntil) }
  }

  async lockState(name: string, now: number): Promise<LockState> {
    const [failures, pending, lockedUntil] = (await this.#run('lockState', [name, String(now)])) as number[]
    return { failures: Number(failures), pending: Number(pending), lockedUntil: Number(lockedUntil) }
  }

  async clearLocks(): Promise<void> {
    await this.#run('clearLocks', [String(Date.now())])
  }

  // --- sessions ------------------------------------------------------------------------

  async putSession(hash: string, s: SessionRecord): Promise<void> {
    const { lastSeenAt: _l, oidc, ...rest } = s
    await this.#run('putSession', [
      hash,
      JSON.stringify(rest),
      String(s.lastSeenAt),
      String(s.expiresAt),
      String(s.idleTimeoutMs),
      s.username,
      s.method,
      oidc === undefined ? '' : JSON.stringify(oidc),
      s.kind,
      String(s.createdAt),
      String(MAX_SESSIONS_PER_USER),
    ])
  }

  async getSession(hash: string): Promise<SessionRecord | undefined> {
    const [rec, last, oidc] = (await this.#cmd(['HMGET', `${this.#prefix}sess:${hash}`, 'rec', 'lastSeenAt', 'oidc'])) as (string | null)[]
    if (rec === null || rec === undefined) return undefined
    return toSession(rec, Number(last), oidc ?? '')
  }

  async touchSession(hash: string, now: number): Promise<SessionTouch> {
    const r = (await this.#run('touchSession', [hash, String(now)])) as [string, string?, number?, string?]
    if (r[0] !== 'ok') return { ok: false, reason: r[0] as 'unknown' | 'idle-expired' | 'expired' }
    return { ok: true, session: toSession(r[1] as string, Number(r[2]), r[3] ?? '') }
  }

  async updateSessionOidc(hash: string, oidc: NonNullable<SessionRecord['oidc']>): Promise<boolean> {
    return (await this.#run('updateSessionOidc', [hash, JSON.stringify({ issuer: oidc.issuer, sealed: oidc.sealed, expiresAt: oidc.expiresAt })])) === 1
  }

  async deleteSession(hash: string): Promise<boolean> {
    return (await this.#run('deleteSession', [hash])) === 1
  }

  async deleteSessionsOf(username: string, method?: SessionRecord['method']): Promise<number> {
    return Number(await this.#run('deleteSessionsOf', [username, method ?? '']))
  }

  // --- settings ------------------------------------------------------------------------

  async getSetting<T>(key: string): Promise<T | undefined> {
    const v = await this.#cmd(['HGET', `${this.#prefix}settings`, key])
    return v === null ? undefined : (JSON.parse(v as string) as T)
  }

  async putSetting(key: string, value: unknown): Promise<void> {
    await this.#run('putSetting', [key, JSON.stringify(value)])
  }

  async deleteSetting(key: string): Promise<void> {
    await this.#run('deleteSetting', [key])
  }

  async sharedValue<T>(name: string, create: () => Promise<T>, opts: { readonly readOnly?: boolean } = {}): Promise<T> {
    const got = await this.#cmd(['GET', `${this.#prefix}shared:${name}`])
    if (got !== null) return JSON.parse(got as string) as T
    if (opts.readOnly === true) throw new GatehouseError('ERR_STORE_UNAVAILABLE', { detail: `the shared store holds no ${name} yet` })
    const winner = await this.#run('sharedValue', [name, JSON.stringify(await create())])
    return JSON.parse(winner as string) as T
  }
}

/**
 * The client's connection options for `o` (address, TLS with the CA, user, password, database):
 * one place, so that `gatehouse store migrate` connects exactly as a replica does.
 */
export function redisConnection(o: Pick<RedisStoreOptions, 'url' | 'username' | 'password' | 'passwordFile' | 'caFile' | 'connectTimeoutMs'>): Pick<NonNullable<Parameters<typeof createClient>[0]>, 'socket' | 'username' | 'password' | 'database'> {
  const u = new URL(o.url)
  const password = o.password ?? (o.passwordFile === undefined ? undefined : readFileSync(o.passwordFile, 'utf8').replace(/\r?\n$/, ''))
  const tls = u.protocol === 'rediss:'
  const connectTimeout = o.connectTimeoutMs ?? 5000
  // Capped exponential backoff with jitter, forever: a replica outlives its store's outages.
  const reconnectStrategy = (retries: number): number => Math.min(50 * 2 ** Math.min(retries, 10), 2000) + Math.floor(Math.random() * 100)
  const socket = tls
    ? { tls: true as const, host: u.hostname, port: Number(u.port || 6379), servername: u.hostname, ...(o.caFile === undefined ? {} : { ca: readFileSync(o.caFile) }), connectTimeout, reconnectStrategy }
    : { host: u.hostname, port: Number(u.port || 6379), connectTimeout, reconnectStrategy }
  const db = u.pathname.replace(/^\//, '')
  return {
    socket,
    ...(o.username !== undefined && o.username !== '' ? { username: o.username } : u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(password === undefined ? {} : { password }),
    ...(db === '' ? {} : { database: Number(db) }),
  }
}

/** Map a client error (offline, timeout, refused, an error reply) to the store-unavailable error. */
function unavailable(e: unknown, what: string): GatehouseError {
  if (e instanceof GatehouseError) return e
  const err = e as Error
  return new GatehouseError('ERR_STORE_UNAVAILABLE', {
    message: 'the state store is unreachable; try again shortly',
    detail: `${what}: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}`,
    cause: e,
  })
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** A flat [field, value, …] reply (RESP2) or a map (RESP3) as an object. */
function pairs(r: string[] | Record<string, string>): Record<string, string> {
  if (!Array.isArray(r)) return r
  const o: Record<string, string> = {}
  for (let i = 0; i + 1 < r.length; i += 2) o[r[i] as string] = r[i + 1] as string
  return o
}

function toUser(r: string[] | Record<string, string>): UserRecord | undefined {
  const h = pairs(r)
  if (h.username === undefined) return undefined
  return {
    username: h.username,
    uid: h.uid ?? '',
    role: h.role as UserRecord['role'],
    passwordHash: h.passwordHash ?? '',
    mustChangePassword: h.mustChangePassword === '1',
    generation: Number(h.generation),
    createdAt: Number(h.createdAt),
  }
}

function toSession(rec: string, lastSeenAt: number, oidc: string): SessionRecord {
  const base = JSON.parse(rec) as Omit<SessionRecord, 'lastSeenAt' | 'oidc'>
  return { ...base, lastSeenAt, ...(oidc === '' ? {} : { oidc: JSON.parse(oidc) as NonNullable<SessionRecord['oidc']> }) }
}
