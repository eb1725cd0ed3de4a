/**
 * RedisStore against a real redis-server (Debian's, on a random loopback port):
 *
 * - the StateStore contract, run against both the embedded FileStore and RedisStore with the
 *   same steps and the same expected answers (users, refresh tokens and reuse, family
 *   revocation, lockout reserve/finish, sessions with idle/absolute expiry, settings);
 * - atomicity across instances: 20 parallel reservations from two RedisStores never let more
 *   than `failedAttempts` through;
 * - TTLs on everything that expires (refresh tokens, lock counters, sessions, revoked families);
 * - the sync view: a revocation on one instance reaches the other's mirror within a second;
 *   settings changes fire onSettingChange on the other instance; an emptied store is noticed;
 * - the outage: with the server killed, operations reject with ERR_STORE_UNAVAILABLE and the
 *   sync view refuses after the staleness bound; after a restart every acknowledged write is
 *   there and the mirror is fresh again.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { GatehouseError } from '../../src/errors.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { RedisStore } from '../../src/store/redisStore.ts'
import { MAX_SESSIONS_PER_USER, type IssuerStore, type LockPolicy, type SessionRecord, type UserRecord } from '../../src/store/store.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'

const POLICY: LockPolicy = { failedAttempts: 5, lockoutMs: 60_000 }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
let prefixNo = 0
const prefix = (): string => `t${process.pid}-${++prefixNo}:`

function user(name: string, gen = 0): UserRecord {
  return { username: name, uid: `uid-${name}`, role: 'regular', passwordHash: 'scrypt$1$2$3$salt$hash', mustChangePassword: false, generation: gen, createdAt: 1_700_000_000_000 }
}

function session(username: string, method: 'local' | 'oidc', now: number, extra: Partial<SessionRecord> = {}): SessionRecord {
  return { kind: 'console', username, method, groups: [], csrfToken: 'csrf', createdAt: now, lastSeenAt: now, idleTimeoutMs: 30 * 60_000, expiresAt: now + 12 * 3_600_000, ...extra }
}

/** Wait until `check` holds (polling), at most `ms`; returns how long it took. */
async function within(ms: number, check: () => boolean, what: string): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    let ok = false
    try {
      ok = check()
    } catch {
      ok = false
    }
    if (ok) return Date.now() - t0
    if (Date.now() - t0 > ms) assert.fail(`${what} did not happen within ${ms} ms`)
    await sleep(20)
  }
}

async function rejectsUnavailable(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof GatehouseError && e.code === 'ERR_STORE_UNAVAILABLE' && e.status === 503)
}

let redis: RunningRedis
const dirs: string[] = []
const opened: RedisStore[] = []
before(async () => {
  redis = await startRedis({ persist: true })
})
after(async () => {
  for (const s of opened) await s.close()
  await redis?.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function openRedis(p: string, extra: Partial<Parameters<typeof RedisStore.open>[0]> = {}): Promise<RedisStore> {
  const s = await RedisStore.open({ url: redis.url, keyPrefix: p, commandTimeoutMs: 1000, connectTimeoutMs: 2000, ...extra })
  opened.push(s)
  return s
}

const KINDS: { name: string; open: () => Promise<IssuerStore> }[] = [
  {
    name: 'FileStore',
    open: async () => {
      const d = mkdtempSync(path.join(tmpdir(), 'gh-contract-'))
      dirs.push(d)
      return new FileStore(d)
    },
  },
  { name: 'RedisStore', open: () => openRedis(prefix()) },
]

for (const kind of KINDS) {
  describe(`StateStore contract: ${kind.name}`, () => {
    it('users: create (once), get, list sorted, setPassword and bumpGeneration move the generation, delete', async () => {
      const s = await kind.open()
      assert.equal(await s.createUser(user('bob')), true)
      assert.equal(await s.createUser(user('bob', 7)), false, 'a second create of the same name is refused')
      assert.equal(await s.createUser(user('alice')), true)
      assert.deepEqual(await s.getUser('bob'), user('bob'))
      assert.equal(await s.getUser('nobody'), undefined)
      assert.deepEqual((await s.listUsers()).map((u) => u.username), ['alice', 'bob'])
      assert.equal(await s.setPassword('bob', 'scrypt$new', true), 1)
      const b = await s.getUser('bob')
      assert.equal(b?.passwordHash, 'scrypt$new')
      assert.equal(b?.mustChangePassword, true)
      assert.equal(await s.bumpGeneration('bob'), 2)
      assert.equal(s.generationSync('bob'), 2)
      assert.equal(await s.setPassword('nobody', 'x', false), undefined)
      assert.equal(await s.bumpGeneration('nobody'), undefined)
      assert.equal(await s.setRole('bob', 'readonly'), 3, 'a role change moves the generation (tokens carry the role)')
      assert.equal((await s.getUser('bob'))?.role, 'readonly')
      assert.equal((await s.getUser('bob'))?.passwordHash, 'scrypt$new', 'nothing else changes')
      assert.equal(s.generationSync('bob'), 3)
      assert.equal(await s.setRole('nobody', 'admin'), undefined)
      assert.equal(await s.deleteUser('bob'), true)
      assert.equal(await s.deleteUser('bob'), false)
      assert.equal(await s.getUser('bob'), undefined)
      assert.equal(s.generationSync('bob'), undefined)
    })

    it('refresh tokens: use marks used and returns the state before; reuse shows used; family revocation removes the family', async () => {
      const s = await kind.open()
      const exp = Date.now() + 3_600_000
      await s.putRefresh('h1', { username: 'bob', family: 'fam1', generation: 0, expiresAt: exp, used: false })
      await s.putRefresh('h2', { username: 'bob', family: 'fam1', generation: 0, expiresAt: exp, used: false })
      await s.putRefresh('h3', { username: 'bob', family: 'fam2', generation: 0, expiresAt: exp, used: false })
      assert.deepEqual(await s.useRefresh('h1'), { username: 'bob', family: 'fam1', generation: 0, expiresAt: exp, used: false })
      assert.equal((await s.useRefresh('h1'))?.used, true, 'the second use sees it spent')
      assert.equal(await s.useRefresh('nope'), undefined)
      assert.equal(await s.isFamilyRevoked('fam1'), false)
      await s.revokeFamily('fam1')
      assert.equal(await s.isFamilyRevoked('fam1'), true)
      assert.equal(s.familyRevokedSync('fam1'), true)
      assert.equal(s.familyRevokedSync('fam2'), false)
      assert.equal(await s.useRefresh('h2'), undefined, 'every token of the family is gone')
      assert.equal((await s.useRefresh('h3'))?.used, false, 'another family is untouched')
    })

    it('lockout: reservations never exceed the limit; failures lock; success clears; locks run out; clearLocks', async () => {
      const s = await kind.open()
      const t = 1_800_000_000_000
      const p: LockPolicy = { failedAttempts: 3, lockoutMs: 60_000 }
      for (let i = 0; i < 3; i++) assert.deepEqual(await s.reserveAttempt('eve', p, t), { ok: true })
      assert.deepEqual(await s.reserveAttempt('eve', p, t), { ok: false, retryAfterMs: 1000 }, 'all remaining attempts are in flight')
      assert.deepEqual(await s.lockState('eve', t), { failures: 0, pending: 3, lockedUntil: 0 })
      assert.deepEqual(await s.finishAttempt('eve', false, p, t), { failures: 1, pending: 2, lockedUntil: 0 })
      assert.deepEqual(await s.finishAttempt('eve', false, p, t), { failures: 2, pending: 1, lockedUntil: 0 })
      assert.deepEqual(await s.finishAttempt('eve', false, p, t + 5), { failures: 3, pending: 0, lockedUntil: t + 5 + 60_000 })
      assert.deepEqual(await s.reserveAttempt('eve', p, t + 1000), { ok: false, retryAfterMs: 60_000 + 5 - 1000 })
      // The lock runs out: a fresh count.
      assert.deepEqual(await s.lockState('eve', t + 61_000), { failures: 0, pending: 0, lockedUntil: 0 })
      assert.deepEqual(await s.reserveAttempt('eve', p, t + 61_000), { ok: true })
      assert.deepEqual(await s.finishAttempt('eve', true, p, t + 61_000), { failures: 0, pending: 0, lockedUntil: 0 })
      // Success clears earlier failures.
      await s.reserveAttempt('mal', p, t)
      await s.finishAttempt('mal', false, p, t)
      await s.reserveAttempt('mal', p, t)
      assert.deepEqual(await s.finishAttempt('mal', true, p, t), { failures: 0, pending: 0, lockedUntil: 0 })
      // clearLocks: counts and locks go, attempts in flight stay.
      for (let i = 0; i < 3; i++) {
        await s.reserveAttempt('trudy', p, t)
        await s.finishAttempt('trudy', false, p, t)
      }
      await s.reserveAttempt('oscar', p, t)
      assert.ok((await s.lockState('trudy', t)).lockedUntil > t)
      await s.clearLocks()
      assert.deepEqual(await s.lockState('trudy', t), { failures: 0, pending: 0, lockedUntil: 0 })
      assert.equal((await s.lockState('oscar', t)).pending, 1)
    })

    it('sessions: put, get, touch extends, idle and absolute expiry delete, OIDC update only for OIDC sessions, delete by user and method', async () => {
      const s = await kind.open()
      const t = Date.now()
      const oidc = { issuer: 'https://idp.example', sealed: 'sealed-1', expiresAt: t + 60_000 }
      await s.putSession('s1', session('bob', 'local', t))
      await s.putSession('s2', session('bob', 'oidc', t, { oidc, groups: ['g1', 'g2'], email: 'bob@example.com', kind: 'browser' }))
      await s.putSession('s3', session('carol', 'local', t, { generation: 4 }))
      assert.deepEqual(await s.getSession('s1'), session('bob', 'local', t))
      assert.deepEqual(await s.getSession('s2'), session('bob', 'oidc', t, { oidc, groups: ['g1', 'g2'], email: 'bob@example.com', kind: 'browser' }))
      assert.equal(await s.getSession('none'), undefined)
      const touched = await s.touchSession('s1', t + 60_000)
      assert.ok(touched.ok)
      assert.equal(touched.ok && touched.session.lastSeenAt, t + 60_000)
      assert.equal((await s.getSession('s1'))?.lastSeenAt, t + 60_000)
      assert.deepEqual(await s.touchSession('none', t), { ok: false, reason: 'unknown' })
      assert.deepEqual(await s.touchSession('s1', t + 60_000 + 30 * 60_000), { ok: false, reason: 'idle-expired' })
      assert.equal(await s.getSession('s1'), undefined, 'an idle-expired session is deleted')
      assert.equal(await s.updateSessionOidc('s2', { ...oidc, sealed: 'sealed-2' }), true)
      assert.equal((await s.getSession('s2'))?.oidc?.sealed, 'sealed-2')
      assert.equal(await s.updateSessionOidc('s3', oidc), false, 'a local session never takes OIDC tokens')
      assert.equal(await s.updateSessionOidc('none', oidc), false)
      await s.putSession('s4', session('bob', 'local', t))
      assert.equal(await s.deleteSessionsOf('bob', 'local'), 1)
      assert.ok(await s.getSession('s2'), 'the OIDC session of the same name stays')
      assert.equal(await s.deleteSessionsOf('bob'), 1)
      assert.equal(await s.deleteSession('s3'), true)
      assert.equal(await s.deleteSession('s3'), false)
      await s.putSession('s5', session('dave', 'local', t, { expiresAt: t + 1000 }))
      assert.deepEqual(await s.touchSession('s5', t + 1000), { ok: false, reason: 'expired' })
    })

    it(`sessions: at most MAX_SESSIONS_PER_USER (${MAX_SESSIONS_PER_USER}) per user, method and kind; storing more ends the oldest`, async () => {
      const s = await kind.open()
      const t = Date.now()
      // Other users, methods and kinds, stored first (so they are the oldest of all).
      await s.putSession('carol-1', session('carol', 'local', t - 1000))
      await s.putSession('bob-oidc', session('bob', 'oidc', t - 1000))
      await s.putSession('bob-browser', session('bob', 'local', t - 1000, { kind: 'browser' }))
      // Stored out of order; bob-4 and bob-5 share a createdAt (the one seen earlier is the older).
      const order = [5, 3, 0, 1, 2, 4, ...Array.from({ length: 19 }, (_, i) => i + 6)]
      for (const i of order) await s.putSession(`bob-${i}`, session('bob', 'local', t + (i === 5 ? 4 : i), { lastSeenAt: t + i }))
      for (let i = 0; i < 5; i++) assert.equal(await s.getSession(`bob-${i}`), undefined, `bob-${i} (one of the 5 oldest) is gone`)
      for (let i = 5; i < 25; i++) assert.ok(await s.getSession(`bob-${i}`), `bob-${i} (one of the 20 newest) stays`)
      assert.ok(await s.getSession('carol-1'), "another user's session is untouched")
      assert.ok(await s.getSession('bob-oidc'), 'a session of another method is untouched')
      assert.ok(await s.getSession('bob-browser'), 'a session of another kind is untouched')
      // The session just stored stays even when it is not the newest (another replica's clock).
      await s.putSession('bob-late', session('bob', 'local', t - 5000))
      assert.ok(await s.getSession('bob-late'), 'the new session is never the one evicted')
      assert.equal(await s.getSession('bob-5'), undefined, 'the oldest other one went instead')
      assert.equal(await s.deleteSessionsOf('bob', 'local'), MAX_SESSIONS_PER_USER + 1, 'every remaining local session ends (both kinds)')
      assert.equal(await s.getSession('bob-24'), undefined)
      assert.equal(await s.getSession('bob-late'), undefined)
      assert.ok(await s.getSession('bob-oidc'))
      assert.equal(await s.deleteSessionsOf('bob'), 1)
      assert.ok(await s.getSession('carol-1'))
    })

    it('settings: put, get, replace, delete', async () => {
      const s = await kind.open()
      assert.equal(await s.getSetting('banner'), undefined)
      await s.putSetting('banner', { text: 'hello', enabled: true })
      assert.deepEqual(await s.getSetting('banner'), { text: 'hello', enabled: true })
      await s.putSetting('banner', { text: 'bye', enabled: false })
      assert.deepEqual(await s.getSetting('banner'), { text: 'bye', enabled: false })
      await s.deleteSetting('banner')
      await s.deleteSetting('banner')
      assert.equal(await s.getSetting('banner'), undefined)
    })
  })
}

describe('RedisStore across instances', () => {
  it('20 parallel reservations from two instances let exactly failedAttempts through, and their failures lock the account', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p), await openRedis(p)]
    const now = Date.now()
    const slots = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).reserveAttempt('admin', POLICY, now)))
    const granted = slots.filter((x) => x.ok).length
    assert.equal(granted, POLICY.failedAttempts)
    await Promise.all(Array.from({ length: granted }, (_, i) => (i % 2 === 0 ? b : a).finishAttempt('admin', false, POLICY, now)))
    const st = await a.lockState('admin', now)
    assert.equal(st.failures, POLICY.failedAttempts)
    assert.equal(st.lockedUntil, now + POLICY.lockoutMs)
    assert.deepEqual(await b.reserveAttempt('admin', POLICY, now + 1), { ok: false, retryAfterMs: POLICY.lockoutMs - 1 })
  })

  it('parallel reuse of one refresh token from two instances: exactly one sees it unused', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p), await openRedis(p)]
    await a.putRefresh('rt', { username: 'bob', family: 'f', generation: 0, expiresAt: Date.now() + 60_000, used: false })
    const seen = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).useRefresh('rt')))
    assert.equal(seen.filter((r) => r?.used === false).length, 1)
  })

  it('TTLs: refresh tokens expire with them, lock counters, sessions (idle and absolute), revoked families', async () => {
    const p = prefix()
    const s = await openRedis(p, { familyTtlMs: 7 * 86_400_000 })
    const now = Date.now()
    await s.putRefresh('rt', { username: 'bob', family: 'fam', generation: 0, expiresAt: now + 3_600_000, used: false })
    const pttl = async (k: string): Promise<number> => Number((await redis.command('PTTL', `${p}${k}`)).replace(/^:/, '').trim())
    const rt = await pttl('rt:rt')
    assert.ok(rt > 3_590_000 && rt <= 3_600_000, `refresh token TTL ${rt}`)
    assert.ok((await pttl('famrt:fam')) > 3_590_000, 'the family index expires with its tokens')
    await s.reserveAttempt('eve', POLICY, now)
    const pending = await pttl('lock:eve')
    assert.ok(pending > 30_000 && pending <= 32_000, `a reservation alone lives ~30 s (${pending})`)
    await s.finishAttempt('eve', false, POLICY, now)
    assert.ok((await pttl('lock:eve')) > 86_000_000, 'a failure is remembered for a day')
    await s.putSession('sx', session('bob', 'local', now, { idleTimeoutMs: 120_000 }))
    const sess = await pttl('sess:sx')
    assert.ok(sess > 170_000 && sess <= 180_000, `a session lives its idle timeout + 60 s grace (${sess})`)
    await s.putSession('sy', session('bob', 'local', now, { idleTimeoutMs: 3_600_000, expiresAt: now + 600_000 }))
    const sy = await pttl('sess:sy')
    assert.ok(sy > 650_000 && sy <= 660_000, `or its absolute end + grace when sooner (${sy})`)
    assert.ok((await pttl('usess:bob')) > 0, 'the per-user session index expires too')
    await s.revokeFamily('fam')
    const fam = await pttl('revokedFamilies')
    assert.ok(fam > 7 * 86_400_000 - 10_000, `revoked families (${fam})`)
    // A reservation whose replica died stops counting after 30 s (no key left behind forever).
    await s.reserveAttempt('ghost', POLICY, now)
    assert.equal((await s.lockState('ghost', now + 31_000)).pending, 0)
  })

  it('a revocation on one instance reaches the other mirror within a second; settings changes fire onSettingChange there', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p), await openRedis(p)]
    const changed: string[] = []
    b.onSettingChange((k) => changed.push(k))
    await a.createUser(user('bob'))
    await within(1000, () => b.generationSync('bob') === 0, 'user creation mirrored')
    await a.bumpGeneration('bob')
    const took = await within(1000, () => b.generationSync('bob') === 1, 'generation bump mirrored')
    assert.ok(took < 1000)
    await a.setRole('bob', 'admin')
    await within(1000, () => b.generationSync('bob') === 2, 'role change mirrored')
    await a.revokeFamily('famX')
    await within(1000, () => b.familyRevokedSync('famX'), 'family revocation mirrored')
    await a.putSetting('tls', { certPem: 'x' })
    await within(1000, () => changed.includes('tls'), 'onSettingChange on the other instance')
    await a.deleteUser('bob')
    await within(1000, () => b.generationSync('bob') === undefined, 'user deletion mirrored')
    // A third instance opened now starts from the snapshot.
    const c = await openRedis(p)
    assert.equal(c.familyRevokedSync('famX'), true)
  })

  it('sharedValue: created once; every instance gets the first one', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p), await openRedis(p)]
    const got = await Promise.all([a.sharedValue('k', async () => ({ who: 'a' })), b.sharedValue('k', async () => ({ who: 'b' }))])
    assert.deepEqual(got[0], got[1])
    assert.deepEqual(await b.sharedValue('k', async () => ({ who: 'late' })), got[0])
  })

  it('an emptied store (FLUSHALL) is noticed: the mirror forgets users it no longer has', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p), await openRedis(p)]
    await a.createUser(user('zed'))
    await within(1000, () => b.generationSync('zed') === 0, 'mirrored')
    await redis.command('FLUSHALL')
    await within(1500, () => b.generationSync('zed') === undefined && a.generationSync('zed') === undefined, 'mirror emptied after FLUSHALL')
  })
})

describe('RedisStore outage', () => {
  it('server killed: operations reject with ERR_STORE_UNAVAILABLE, the sync view refuses after the bound; restarted: every acknowledged write is there', async () => {
    const p = prefix()
    const [a, b] = [await openRedis(p, { maxStalenessMs: 500 }), await openRedis(p, { maxStalenessMs: 500 })]
    await a.createUser(user('kim'))
    assert.equal(await a.bumpGeneration('kim'), 1)
    await a.putSetting('banner', { text: 'kept', enabled: true })
    await a.revokeFamily('famK')
    await within(1000, () => b.generationSync('kim') === 1, 'mirrored before the outage')

    await redis.stop() // SIGKILL: no shutdown save; the AOF (fsync always) holds what was acknowledged
    const t0 = Date.now()
    await rejectsUnavailable(a.getUser('kim'))
    await rejectsUnavailable(a.bumpGeneration('kim'))
    await rejectsUnavailable(b.reserveAttempt('kim', POLICY, Date.now()))
    await rejectsUnavailable(b.putSetting('banner', { text: 'lost?', enabled: false }))
    assert.ok(Date.now() - t0 < 3000, 'rejected at once, not queued')
    // Within the bound the mirror answers; after it, it refuses (503) rather than guess.
    await within(2000, () => {
      try {
        b.generationSync('kim')
        return false
      } catch (e) {
        return e instanceof GatehouseError && e.code === 'ERR_STORE_UNAVAILABLE'
      }
    }, 'the sync view refusing')
    assert.throws(() => b.familyRevokedSync('famK'), (e: unknown) => e instanceof GatehouseError && e.code === 'ERR_STORE_UNAVAILABLE')
    assert.equal(b.status().fresh, false)

    await redis.restart()
    await within(5000, () => b.status().fresh && a.status().fresh, 'both mirrors fresh again after the restart')
    assert.equal(b.generationSync('kim'), 1)
    assert.equal((await b.getUser('kim'))?.generation, 1, 'the acknowledged bump survived; the refused one did not happen')
    assert.deepEqual(await b.getSetting('banner'), { text: 'kept', enabled: true })
    assert.equal(await b.isFamilyRevoked('famK'), true)
    assert.equal(await a.bumpGeneration('kim'), 2, 'writes work again')
    await within(1000, () => b.generationSync('kim') === 2, 'and are mirrored again')
  })
})
