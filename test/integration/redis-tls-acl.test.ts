/**
 * RedisStore over `rediss://` with a private CA (store.caFile) and an ACL user whose keys and
 * channels are limited to gatehouse's prefix: every operation stays under `keyPrefix` (Redis
 * refuses anything else with NOPERM, inside scripts too); a wrong password or an untrusted
 * server certificate fails `open` with ERR_STORE_UNAVAILABLE, and the error never carries the
 * password.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { GatehouseError } from '../../src/errors.ts'
import { RedisStore } from '../../src/store/redisStore.ts'
import { generateLocalCa, issueServerCertificate } from '../../src/tls/selfsigned.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'

const PW = 'Acl-user-password-77'
const PREFIX = 'ghtls:'
const POLICY = { failedAttempts: 3, lockoutMs: 60_000 }

describe('RedisStore over TLS with an ACL user', () => {
  let redis: RunningRedis
  let dir: string
  let caFile: string
  let otherCaFile: string
  const opened: RedisStore[] = []

  before(async () => {
    const ca = generateLocalCa({ commonName: 'test redis CA' })
    const server = issueServerCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
    dir = mkdtempSync(path.join(tmpdir(), 'gh-redis-tls-'))
    caFile = path.join(dir, 'ca.pem')
    writeFileSync(caFile, ca.certPem)
    otherCaFile = path.join(dir, 'other-ca.pem')
    writeFileSync(otherCaFile, generateLocalCa({ commonName: 'unrelated CA' }).certPem)
    redis = await startRedis({ tls: { certPem: server.certPem, keyPem: server.keyPem } })
    // Keys and channels of this user: only under the prefix.
    const r = await redis.command('ACL', 'SETUSER', 'gatehouse', 'on', `>${PW}`, `~${PREFIX}*`, `&${PREFIX}*`, '+@all')
    assert.match(r, /OK/)
  })

  after(async () => {
    for (const s of opened) await s.close()
    await redis?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const open = async (extra: Partial<Parameters<typeof RedisStore.open>[0]> = {}): Promise<RedisStore> => {
    const s = await RedisStore.open({ url: redis.tlsUrl as string, caFile, username: 'gatehouse', password: PW, keyPrefix: PREFIX, connectTimeoutMs: 2000, ...extra })
    opened.push(s)
    return s
  }

  it('every kind of operation works within the ACL user’s prefix (a key outside it would be NOPERM)', async () => {
    const s = await open()
    const t = Date.now()
    assert.equal(await s.createUser({ username: 'bob', uid: 'u1', role: 'admin', passwordHash: 'h', mustChangePassword: false, generation: 0, createdAt: t }), true)
    assert.equal(await s.bumpGeneration('bob'), 1)
    assert.equal((await s.listUsers()).length, 1)
    await s.putRefresh('r1', { username: 'bob', family: 'f1', generation: 1, expiresAt: t + 60_000, used: false })
    assert.equal((await s.useRefresh('r1'))?.used, false)
    await s.revokeFamily('f1')
    assert.equal(await s.isFamilyRevoked('f1'), true)
    assert.deepEqual(await s.reserveAttempt('bob', POLICY, t), { ok: true })
    await s.finishAttempt('bob', false, POLICY, t)
    await s.clearLocks()
    await s.putSession('s1', { kind: 'console', username: 'bob', method: 'local', groups: ['admin'], csrfToken: 'c', createdAt: t, lastSeenAt: t, idleTimeoutMs: 60_000, expiresAt: t + 3_600_000 })
    assert.equal((await s.touchSession('s1', t + 1)).ok, true)
    assert.equal(await s.deleteSessionsOf('bob'), 1)
    await s.putSetting('banner', { text: 'x', enabled: true })
    assert.deepEqual(await s.sharedValue('k', async () => 1), 1)
    assert.equal(s.status().fresh, true, 'the heartbeat (pub/sub within the prefix) works')
    assert.equal(s.generationSync('bob'), 1)
    const keys = await redis.command('KEYS', '*')
    for (const k of keys.split('\r\n').filter((l) => l !== '' && !/^[*$]/.test(l))) assert.ok(k.startsWith(PREFIX), `key outside the prefix: ${k}`)
  })

  it('a wrong password or an untrusted server certificate: open fails with ERR_STORE_UNAVAILABLE, never echoing the password', async () => {
    const wrong = 'Wrong-acl-password-1'
    for (const extra of [{ password: wrong }, { caFile: otherCaFile }]) {
      await assert.rejects(open(extra), (e: unknown) => {
        assert.ok(e instanceof GatehouseError && e.code === 'ERR_STORE_UNAVAILABLE', String(e))
        assert.ok(!`${e.message} ${e.detail ?? ''}`.includes(wrong) && !`${e.message} ${e.detail ?? ''}`.includes(PW))
        return true
      })
    }
  })
})
