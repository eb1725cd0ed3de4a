/**
 * Every kind of record `gatehouse store migrate` copies, read back through `RedisStore` itself
 * (the layout is the store's), on a real redis-server with an ACL user limited to a custom key
 * prefix: local and directory users, refresh tokens (used flag, TTL at their expiry), revoked families, a running
 * lock and a failure count, console and OIDC browser sessions (idle and absolute TTLs, the
 * sealed tokens, the per-user index), settings, the signing key. What has run out is left
 * behind; malformed records stop the migration before anything is written; a replica already
 * running on the target reloads its mirror after a --force migration; nothing lands outside
 * the prefix. The real CLI does the same over rediss:// with a private CA and its flags.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { DIRECTORY_HASH } from '../../src/issuer/localIssuer.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { inspectTarget, MigrationError, openTarget, readFileState, SIGNING_KEY_NAME, writePlan, type TargetOptions } from '../../src/store/migrate.ts'
import { RedisStore } from '../../src/store/redisStore.ts'
import type { SessionRecord } from '../../src/store/store.ts'
import { generateLocalCa, issueServerCertificate } from '../../src/tls/selfsigned.ts'
import { runCliAsync } from '../helpers/cli.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'

const PREFIX = 'mig:'
const ACL_PW = 'Acl-user-password-9'
const DAY = 86_400_000
const FAMILY_TTL = 30 * DAY

describe('store migrate: every record kind, read back through RedisStore', () => {
  let redis: RunningRedis
  let dir: string
  let stateDir: string
  let target: TargetOptions
  let caFile: string
  const now = Date.now()
  const session = (over: Partial<SessionRecord>): SessionRecord => ({
    kind: 'console',
    username: 'bob',
    method: 'local',
    groups: ['regular'],
    generation: 3,
    csrfToken: 'csrf-token-value',
    createdAt: now - 60_000,
    lastSeenAt: now - 10_000,
    idleTimeoutMs: 30 * 60_000,
    expiresAt: now + 8 * 3_600_000,
    ...over,
  })

  before(async () => {
    const ca = generateLocalCa({ commonName: 'migrate test redis CA' })
    const server = issueServerCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
    redis = await startRedis({ tls: { certPem: server.certPem, keyPem: server.keyPem } })
    assert.match(await redis.command('ACL', 'SETUSER', 'migrator', 'on', `>${ACL_PW}`, `~${PREFIX}*`, `&${PREFIX}*`, '+@all'), /OK/)
    target = { url: redis.url, username: 'migrator', password: ACL_PW, keyPrefix: PREFIX }
    dir = mkdtempSync(path.join(tmpdir(), 'gh-migrate-records-'))
    stateDir = path.join(dir, 'state')
    caFile = path.join(dir, 'redis-ca.pem')
    writeFileSync(caFile, ca.certPem)
    const fs = new FileStore(stateDir)
    const user = (username: string, role: 'admin' | 'readonly' | 'regular', generation: number, mustChangePassword = false) => ({ username, uid: `uid-${username}`, role, passwordHash: `scrypt$32768$8$1$c2FsdA$aGFzaC0${username}`, mustChangePassword, generation, createdAt: now - DAY })
    assert.ok(await fs.createUser(user('admin', 'admin', 0, true)))
    assert.ok(await fs.createUser(user('bob', 'regular', 3)))
    assert.ok(await fs.createUser(user('carol', 'readonly', 1)))
    // A directory user (LDAP): its password is checked by the directory, the store holds a marker.
    assert.ok(await fs.createUser({ ...user('dora', 'regular', 2), passwordHash: DIRECTORY_HASH }))
    await fs.putRefresh('hash-live', { username: 'bob', family: 'fam-1', generation: 3, expiresAt: now + 10 * DAY, used: false })
    await fs.putRefresh('hash-used', { username: 'bob', family: 'fam-1', generation: 3, expiresAt: now + 20 * DAY, used: true })
    await fs.putRefresh('hash-carol', { username: 'carol', family: 'fam-2', generation: 1, expiresAt: now + 5 * DAY, used: false })
    await fs.revokeFamily('fam-revoked')
    const policy = { failedAttempts: 3, lockoutMs: 3_600_000 }
    for (let i = 0; i < 3; i++) {
      await fs.reserveAttempt('carol', policy, now)
      await fs.finishAttempt('carol', false, policy, now)
    }
    await fs.reserveAttempt('admin', policy, now)
    await fs.finishAttempt('admin', false, policy, now)
    await fs.putSession('sess-console', session({}))
    await fs.putSession('sess-browser', session({ kind: 'browser', method: 'oidc', username: 'dave@example.com', groups: ['g'], generation: undefined, oidc: { issuer: 'https://idp.example', sealed: 'sealed-blob', expiresAt: now + 3_600_000 } }))
    await fs.putSetting('banner', { text: 'Hello', enabled: true })
    await fs.putSetting('lockoutPolicy', policy)
    await fs.putSetting('caCert', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    mkdirSync(path.join(stateDir, 'issuer'), { recursive: true })
    writeFileSync(path.join(stateDir, 'issuer', 'signing-key.json'), JSON.stringify({ iss: 'urn:gatehouse:local:test', kid: 'local-test', privateJwk: { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' } }))
    // What has run out: written straight into the files (the store would not keep them).
    const files = path.join(stateDir, 'store')
    const refresh = JSON.parse(JSON.stringify(fs.contents().refresh)) as Record<string, unknown>
    refresh['hash-expired'] = { username: 'bob', family: 'fam-3', generation: 3, expiresAt: now - 1000, used: false }
    writeFileSync(path.join(files, 'refresh.json'), JSON.stringify(refresh))
    const fams = { ...fs.contents().revokedFamilies, 'fam-ancient': now - 2 * FAMILY_TTL }
    writeFileSync(path.join(files, 'revokedFamilies.json'), JSON.stringify(fams))
  })

  after(async () => {
    await redis?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('reads and validates the file store; what ran out is counted, not copied', async () => {
    const plan = await readFileState(stateDir, { now, familyTtlMs: FAMILY_TTL })
    assert.deepEqual(plan.users.map((u) => u.username).sort(), ['admin', 'bob', 'carol', 'dora'])
    assert.deepEqual(plan.refresh.map(([h]) => h).sort(), ['hash-carol', 'hash-live', 'hash-used'])
    assert.deepEqual(plan.revokedFamilies.map(([f]) => f), ['fam-revoked'])
    assert.deepEqual(plan.locks.map(([n, s]) => [n, s.failures, s.lockedUntil > now]).sort(), [['admin', 1, false], ['carol', 3, true]])
    assert.equal(plan.sessions.length, 2)
    assert.deepEqual(plan.settings.map(([k]) => k).sort(), ['banner', 'caCert', 'lockoutPolicy'])
    assert.equal(plan.signingKey?.kid, 'local-test')
    assert.deepEqual(plan.skipped, { refresh: 1, revokedFamilies: 1, locks: 0, sessions: 0 })
  })

  it('writes one transaction under the prefix; RedisStore reads every record back as the file store had it', async () => {
    const plan = await readFileState(stateDir, { now, familyTtlMs: FAMILY_TTL })
    const t = await openTarget(target)
    try {
      assert.equal((await inspectTarget(t)).keys, 0)
      await writePlan(t, plan, { replace: false, now })
    } finally {
      await t.close()
    }
    // Nothing outside the prefix (the ACL user could not have written it anyway; the default user sees all).
    const all = (await redis.command('KEYS', '*')).split(/\r?\n/).filter((l) => /^[a-z]/i.test(l) && l.includes(':'))
    assert.ok(all.length > 10 && all.every((k) => k.startsWith(PREFIX)), all.join(' '))

    const s = await RedisStore.open({ url: redis.url, username: 'migrator', password: ACL_PW, keyPrefix: PREFIX, familyTtlMs: FAMILY_TTL })
    try {
      assert.deepEqual((await s.listUsers()).map((u) => [u.username, u.role, u.generation, u.mustChangePassword, u.uid]), [['admin', 'admin', 0, true, 'uid-admin'], ['bob', 'regular', 3, false, 'uid-bob'], ['carol', 'readonly', 1, false, 'uid-carol'], ['dora', 'regular', 2, false, 'uid-dora']])
      assert.equal((await s.getUser('dora'))?.passwordHash, DIRECTORY_HASH, 'a directory user stays one')
      assert.equal((await s.getUser('bob'))?.passwordHash, 'scrypt$32768$8$1$c2FsdA$aGFzaC0bob')
      assert.equal(s.generationSync('bob'), 3, 'the mirror loaded the migrated generations')
      // Refresh tokens: the used flag survives (a reuse still revokes), the TTL is the expiry.
      assert.deepEqual(await s.useRefresh('hash-used'), { username: 'bob', family: 'fam-1', generation: 3, expiresAt: now + 20 * DAY, used: true })
      assert.equal((await s.useRefresh('hash-live'))?.used, false)
      assert.equal(await s.useRefresh('hash-expired'), undefined)
      const pttl = Number((await redis.command('PTTL', `${PREFIX}rt:hash-carol`)).match(/:(\d+)/)?.[1])
      assert.ok(Math.abs(pttl - 5 * DAY) < 60_000, String(pttl))
      await s.revokeFamily('fam-1')
      assert.equal(await s.useRefresh('hash-live'), undefined, 'the family index came along')
      // Revoked families, remembered as long as serve would.
      assert.equal(await s.isFamilyRevoked('fam-revoked'), true)
      assert.equal(s.familyRevokedSync('fam-revoked'), true)
      assert.equal(await s.isFamilyRevoked('fam-ancient'), false)
      // Lockout: carol stays locked, admin's failure counts on.
      const carol = await s.lockState('carol', Date.now())
      assert.equal(carol.failures, 3)
      assert.ok(carol.lockedUntil > Date.now())
      assert.deepEqual(await s.reserveAttempt('carol', { failedAttempts: 3, lockoutMs: 3_600_000 }, Date.now()).then((r) => r.ok), false)
      assert.equal((await s.lockState('admin', Date.now())).failures, 1)
      // Sessions: both kinds, the sealed OIDC tokens, the idle TTL, the per-user index.
      const consoleTouch = await s.touchSession('sess-console', Date.now())
      assert.equal(consoleTouch.ok, true)
      assert.equal(consoleTouch.ok && consoleTouch.session.generation, 3)
      const browser = await s.getSession('sess-browser')
      assert.deepEqual(browser?.oidc, { issuer: 'https://idp.example', sealed: 'sealed-blob', expiresAt: now + 3_600_000 })
      assert.equal(browser?.kind, 'browser')
      const sttl = Number((await redis.command('PTTL', `${PREFIX}sess:sess-console`)).match(/:(\d+)/)?.[1])
      assert.ok(sttl > 29 * 60_000 && sttl <= 31 * 60_000, String(sttl))
      assert.equal(await s.deleteSessionsOf('bob'), 1)
      // Settings and the signing key.
      assert.deepEqual(await s.getSetting('banner'), { text: 'Hello', enabled: true })
      assert.deepEqual(await s.getSetting('lockoutPolicy'), { failedAttempts: 3, lockoutMs: 3_600_000 })
      const key = await s.sharedValue<{ kid: string }>(SIGNING_KEY_NAME, async () => assert.fail('the key must be there'), { readOnly: true })
      assert.equal(key.kid, 'local-test')
    } finally {
      await s.close()
    }
  })

  it('a target that is not empty is refused (nothing written); --force replaces it and a running replica reloads its mirror', async () => {
    const s = await RedisStore.open({ url: redis.url, username: 'migrator', password: ACL_PW, keyPrefix: PREFIX, familyTtlMs: FAMILY_TTL })
    try {
      // Changes after the first migration: bob's generation moved on, a stray user appeared.
      await s.bumpGeneration('bob')
      assert.ok(await s.createUser({ username: 'stray', uid: 'u', role: 'regular', passwordHash: 'scrypt$x', mustChangePassword: false, generation: 0, createdAt: now }))
      assert.equal(s.generationSync('bob'), 4)
      const plan = await readFileState(stateDir, { now, familyTtlMs: FAMILY_TTL })
      const t = await openTarget(target)
      try {
        const before = await inspectTarget(t)
        assert.equal(before.users, 5)
        assert.equal(before.signingKey, true)
        await assert.rejects(writePlan(t, plan, { replace: false, now }), (e: Error) => e instanceof MigrationError && /already holds \d+ keys under mig:/.test(e.message))
        assert.equal((await s.listUsers()).length, 5, 'nothing written')
        await writePlan(t, plan, { replace: true, now })
      } finally {
        await t.close()
      }
      assert.deepEqual((await s.listUsers()).map((u) => u.username), ['admin', 'bob', 'carol', 'dora'])
      // The replica's next heartbeat sees the feed's counter move and reloads: bob is back at 3.
      const t0 = Date.now()
      while (s.generationSync('bob') !== 3) {
        assert.ok(Date.now() - t0 < 3000, 'the running replica did not reload its mirror')
        await new Promise((r) => setTimeout(r, 25))
      }
    } finally {
      await s.close()
    }
  })

  it('the real CLI over rediss:// with --ca-file, --username, --password-file and --key-prefix; an untrusted certificate is refused', async () => {
    const pwFile = path.join(dir, 'store-password')
    writeFileSync(pwFile, `${ACL_PW}\n`, { mode: 0o600 })
    const tlsUrl = redis.tlsUrl as string
    const args = ['store', 'migrate', '--from', `file:${stateDir}`, '--to', tlsUrl, '--username', 'migrator', '--password-file', pwFile, '--key-prefix', PREFIX]
    const untrusted = path.join(dir, 'other-ca.pem')
    writeFileSync(untrusted, generateLocalCa({ commonName: 'unrelated CA' }).certPem)
    const refused = await runCliAsync([...args, '--ca-file', untrusted, '--force'], { HOME: dir }, dir)
    assert.equal(refused.code, 1, refused.stderr)
    assert.match(refused.stderr, /^gatehouse store migrate: cannot reach the target store at rediss:\/\/localhost:\d+: .*nothing was written/)
    const r = await runCliAsync([...args, '--ca-file', caFile, '--force', '--json'], { HOME: dir }, dir)
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.equal(out.written, true)
    assert.equal(out.keyPrefix, PREFIX)
    assert.deepEqual(out.copy.users, ['admin', 'bob', 'carol', 'dora'])
    assert.equal(out.targetBefore.empty, false)
    for (const text of [r.stdout, r.stderr, refused.stderr]) {
      assert.ok(!text.includes(ACL_PW), 'the store password is never printed')
      assert.ok(!text.includes('scrypt$'), 'no password hash is printed')
    }
    const s = await RedisStore.open({ url: tlsUrl, caFile, username: 'migrator', passwordFile: pwFile, keyPrefix: PREFIX })
    try {
      assert.equal((await s.getUser('dora'))?.passwordHash, DIRECTORY_HASH)
    } finally {
      await s.close()
    }
  })

  it('a malformed record stops the migration before anything is written, naming the file but not the value', async () => {
    const bad = path.join(dir, 'bad')
    const fs = new FileStore(bad)
    await fs.createUser({ username: 'eve', uid: 'u', role: 'regular', passwordHash: 'scrypt$a', mustChangePassword: false, generation: 0, createdAt: now })
    writeFileSync(path.join(bad, 'store', 'users.json'), JSON.stringify({ eve: { username: 'eve', uid: 'u', role: 'superuser', passwordHash: 'secret-hash-value', mustChangePassword: false, generation: 0, createdAt: now } }))
    await assert.rejects(readFileState(bad, { now, familyTtlMs: FAMILY_TTL }), (e: Error) => e instanceof MigrationError && /users\.json: eve: role is not admin, readonly or regular/.test(e.message) && !e.message.includes('secret-hash-value'))
    await assert.rejects(readFileState(path.join(dir, 'nothing-here'), { now, familyTtlMs: FAMILY_TTL }), /holds no gatehouse state/)
  })
})
