/**
 * `gatehouse store migrate` end to end, with the real binary (SPEC §2, §11; docs/replicas.md,
 * "Moving from one replica to several"):
 *
 * - a gatehouse on the file store gets users, logins (access + refresh tokens kept), a
 *   long-lived token, a banner, a lockout policy and a failure count, and is stopped;
 * - `--dry-run` lists what would be copied and writes nothing to the Redis (password from
 *   GATEHOUSE_STORE_PASSWORD);
 * - the migration copies it; a second one without --force is refused and changes nothing;
 *   --force gives the same keys again (idempotent);
 * - two replicas started on the Redis accept the old access token, the long-lived token and the
 *   refresh tokens (each on a different replica), list the users, serve the banner and the
 *   policy and the same JWKS as the old server; the refresh token that was already used on one
 *   replica revokes its family when presented on the other;
 * - the migrated records read back through RedisStore itself (the layout is the store's);
 * - no password, token, password hash or private key appears in the CLI's output or any log.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { RedisStore } from '../../src/store/redisStore.ts'
import { runCliAsync, startServe, type CliRun, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'

const ADMIN_PW = 'Migrate-admin-1'
const BOB_PW = 'Migrate-bob-22'
const CAROL_PW = 'Migrate-carol-3'
const STORE_PW = 'Migrate-store-secret-77'
const BANNER = 'Authorised use only: migrated banner'

interface Res {
  status: number
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string
}

async function call(url: string, opts: { method?: string; token?: string; body?: unknown } = {}): Promise<Res> {
  const r = await request(url, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }), ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  })
  const text = await r.body.text()
  return { status: r.statusCode, text, json: () => JSON.parse(text) }
}

describe('gatehouse store migrate: one replica on the file store → several on Redis', () => {
  let dir: string
  let stateDir: string
  let redis: RunningRedis
  const servers: ServeProcess[] = []
  const cliOutput: string[] = []
  const tokens = { adminAccess: '', adminRefresh: '', bobAccess: '', bobRefresh: '', longLived: '' }
  let oldJwks = ''
  let A: ServeProcess, B: ServeProcess

  const migrate = async (...args: string[]): Promise<CliRun> => {
    const r = await runCliAsync(['store', 'migrate', '--from', `file:${stateDir}`, '--to', redis.url, ...args], { HOME: dir, GATEHOUSE_STORE_PASSWORD: STORE_PW }, dir)
    cliOutput.push(r.stdout, r.stderr)
    return r
  }
  const dbsize = async (): Promise<number> => Number((await redis.command('DBSIZE')).match(/:(\d+)/)?.[1])
  const replica = async (name: string): Promise<ServeProcess> => {
    const p = await startServe({ GATEHOUSE_STORE_URL: redis.url, GATEHOUSE_STORE_PASSWORD: STORE_PW, GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_STATE_DIR: path.join(dir, `state-${name}`) }, { cwd: dir })
    servers.push(p)
    return p
  }

  before(async () => {
    for (const s of [ADMIN_PW, BOB_PW, CAROL_PW, STORE_PW]) usedSecrets.add(s)
    dir = mkdtempSync(path.join(tmpdir(), 'gh-migrate-'))
    stateDir = path.join(dir, 'single')
    // The single replica, on the file store.
    const single = await startServe({ GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_STATE_DIR: stateDir, GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, { cwd: dir })
    servers.push(single)
    const login = async (username: string, password: string): Promise<{ access: string; refresh: string }> => {
      const r = await call(`${single.adminUrl}/api/v2/login`, { method: 'POST', body: { username, password } })
      assert.equal(r.status, 200, r.text)
      const d = r.json().data
      usedSecrets.add(d.access_token)
      usedSecrets.add(d.refresh_token)
      return { access: d.access_token, refresh: d.refresh_token }
    }
    const admin = await login('admin', ADMIN_PW)
    tokens.adminAccess = admin.access
    tokens.adminRefresh = admin.refresh
    for (const [u, pw, role] of [['bob', BOB_PW, 'regular'], ['carol', CAROL_PW, 'readonly']] as const) {
      const r = await call(`${single.adminUrl}/api/v2/users`, { method: 'POST', token: admin.access, body: { username: u, password: pw, role } })
      assert.equal(r.status, 201, r.text)
    }
    const bob = await login('bob', BOB_PW)
    tokens.bobAccess = bob.access
    tokens.bobRefresh = bob.refresh
    const ll = await call(`${single.adminUrl}/api/v2/users/tokens`, { method: 'POST', token: bob.access, body: { access_token_timeout: '30d' } })
    assert.equal(ll.status, 200, ll.text)
    tokens.longLived = ll.json().data.access_token
    usedSecrets.add(tokens.longLived)
    assert.equal((await call(`${single.adminUrl}/api/v2/security/banner`, { method: 'PUT', token: admin.access, body: { text: BANNER } })).status, 200)
    assert.equal((await call(`${single.adminUrl}/api/v2/security/banner/enable`, { method: 'POST', token: admin.access })).status, 200)
    assert.equal((await call(`${single.adminUrl}/api/v2/lockoutPolicy`, { method: 'PUT', token: admin.access, body: { failed_attempts: 7, lockout_duration: 600 } })).status, 200)
    // Two wrong passwords for carol: a failure count to carry over.
    for (let i = 0; i < 2; i++) assert.equal((await call(`${single.adminUrl}/api/v2/login`, { method: 'POST', body: { username: 'carol', password: 'Wrong-password-1' } })).status, 401)
    oldJwks = (await call(`${single.adminUrl}/.well-known/jwks.json`)).text
    single.child.kill('SIGTERM')
    assert.equal(await single.exited, 0)
    redis = await startRedis({ password: STORE_PW })
    // The private key and the password hashes must never be printed either.
    const key = JSON.parse(readFileSync(path.join(stateDir, 'issuer', 'signing-key.json'), 'utf8')) as { privateJwk: { d: string } }
    usedSecrets.add(key.privateJwk.d)
    for (const u of Object.values(JSON.parse(readFileSync(path.join(stateDir, 'store', 'users.json'), 'utf8')) as Record<string, { passwordHash: string }>)) usedSecrets.add(u.passwordHash)
  })

  after(async () => {
    for (const p of servers) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM')
        await p.exited
      }
    }
    await redis?.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...cliOutput, ...servers.flatMap((p) => [...p.stdout, ...p.stderr])])
  })

  it('--dry-run lists what would be copied and writes nothing', async () => {
    const r = await migrate('--dry-run')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /users\s+3 \(admin, bob, carol\)/)
    assert.match(r.stdout, /refresh tokens\s+2/)
    assert.match(r.stdout, /lockout counters\s+1/)
    assert.match(r.stdout, /settings\s+banner, lockoutPolicy/)
    assert.match(r.stdout, /signing key\s+kid local-/)
    assert.match(r.stdout, /: empty\n/)
    assert.match(r.stdout, /Dry run: nothing was written/)
    assert.equal(await dbsize(), 0)
    const j = await migrate('--dry-run', '--json')
    assert.equal(j.code, 0, j.stderr)
    const out = JSON.parse(j.stdout)
    assert.deepEqual(out.copy.users, ['admin', 'bob', 'carol'])
    assert.equal(out.written, false)
    assert.equal(await dbsize(), 0)
  })

  it('copies into the empty store; a second run without --force is refused and changes nothing; --force gives the same keys', async () => {
    const r = await migrate()
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /Copied into redis:\/\/127\.0\.0\.1:\d+ \(\d+ keys under gatehouse:\)/)
    const keys = await dbsize()
    assert.ok(keys > 5, String(keys))

    const again = await migrate()
    assert.equal(again.code, 1)
    assert.match(again.stderr, /^gatehouse store migrate: the target redis:\/\/127\.0\.0\.1:\d+ already holds 3 users, 2 refresh tokens, 1 lockout counter, settings \(banner, lockoutPolicy\), a signing key under gatehouse:; nothing was written\. Use --force/)
    assert.equal(again.stderr.trim().split('\n').length, 1, 'one line')
    assert.equal(await dbsize(), keys)

    const dry = await migrate('--dry-run')
    assert.equal(dry.code, 0)
    assert.match(dry.stdout, /a real run needs --force/)

    const forced = await migrate('--force')
    assert.equal(forced.code, 0, forced.stderr)
    assert.equal(await dbsize(), keys, 'the same keys again')
  })

  it('usage errors exit 2 with one line', async () => {
    const r = await runCliAsync(['store', 'migrate', '--from', stateDir, '--to', redis.url], { HOME: dir }, dir)
    assert.equal(r.code, 2)
    assert.match(r.stderr, /--from must be file:DIR/)
    const noTarget = await runCliAsync(['store', 'migrate', '--from', `file:${stateDir}`], { HOME: dir }, dir)
    assert.equal(noTarget.code, 2)
    assert.match(noTarget.stderr, /--to redis:\/\//)
    const pwInUrl = await runCliAsync(['store', 'migrate', '--from', `file:${stateDir}`, '--to', `redis://:${STORE_PW}@127.0.0.1:${redis.port}`], { HOME: dir }, dir)
    cliOutput.push(pwInUrl.stdout, pwInUrl.stderr)
    assert.equal(pwInUrl.code, 2)
    assert.match(pwInUrl.stderr, /carries a password/)
    const wrongPw = await runCliAsync(['store', 'migrate', '--from', `file:${stateDir}`, '--to', redis.url], { HOME: dir, GATEHOUSE_STORE_PASSWORD: 'not-the-password' }, dir)
    assert.equal(wrongPw.code, 1)
    assert.match(wrongPw.stderr, /cannot reach the target store at redis:\/\/127\.0\.0\.1:\d+: .*nothing was written/)
    assert.ok(!wrongPw.stderr.includes('not-the-password'))
  })

  it('the migrated records read back through RedisStore', async () => {
    const pwFile = path.join(dir, 'store-password')
    writeFileSync(pwFile, `${STORE_PW}\n`, { mode: 0o600 })
    const s = await RedisStore.open({ url: redis.url, passwordFile: pwFile })
    try {
      const users = await s.listUsers()
      // Generations exactly as in the file store (a created user's starts at its creation time).
      const source = JSON.parse(readFileSync(path.join(stateDir, 'store', 'users.json'), 'utf8')) as Record<string, { generation: number }>
      const gen = (u: string): number => source[u]?.generation as number
      assert.equal(gen('admin'), 0, 'the first admin starts at 0')
      assert.ok(gen('bob') > 0)
      assert.deepEqual(users.map((u) => [u.username, u.role, u.mustChangePassword, u.generation]), [['admin', 'admin', false, 0], ['bob', 'regular', false, gen('bob')], ['carol', 'readonly', false, gen('carol')]])
      assert.deepEqual(await s.getSetting('lockoutPolicy'), { failedAttempts: 7, lockoutMs: 600_000 })
      assert.deepEqual(await s.getSetting('banner'), { text: BANNER, enabled: true })
      const lock = await s.lockState('carol', Date.now())
      assert.equal(lock.failures, 2)
      assert.equal(lock.lockedUntil, 0)
      assert.equal(s.generationSync('bob'), gen('bob'))
    } finally {
      await s.close()
    }
  })

  it('two replicas on the Redis accept the old access, long-lived and refresh tokens, and have the users, banner and policy', async () => {
    A = await replica('a')
    B = await replica('b')
    for (const p of [A, B]) {
      assert.equal((await call(`${p.adminUrl}/.well-known/jwks.json`)).text, oldJwks, 'the same signing key')
      for (const t of [tokens.bobAccess, tokens.longLived]) {
        const r = await call(`${p.dataUrl}/v1/things`, { token: t })
        assert.equal(r.status, 200, r.text)
        assert.equal(r.json().headers['x-forwarded-user'], 'bob')
      }
      const users = await call(`${p.adminUrl}/api/v2/users`, { token: tokens.adminAccess })
      assert.equal(users.status, 200, users.text)
      assert.deepEqual(users.json().data.map((u: { username: string }) => u.username).sort(), ['admin', 'bob', 'carol'])
      assert.deepEqual((await call(`${p.adminUrl}/api/v2/security/banner`)).json().data, { text: BANNER, enabled: true })
      assert.deepEqual((await call(`${p.adminUrl}/api/v2/lockoutPolicy`, { token: tokens.adminAccess })).json().data, { failed_attempts: 7, lockout_duration: 600 })
    }
    // Each refresh token on a different replica; the rotated one works on the other.
    const ra = await call(`${A.adminUrl}/api/v2/login/refresh`, { method: 'POST', body: { refresh_token: tokens.adminRefresh } })
    assert.equal(ra.status, 200, ra.text)
    const next = ra.json().data.refresh_token as string
    usedSecrets.add(next)
    usedSecrets.add(ra.json().data.access_token)
    const rb = await call(`${B.adminUrl}/api/v2/login/refresh`, { method: 'POST', body: { refresh_token: next } })
    assert.equal(rb.status, 200, rb.text)
    usedSecrets.add(rb.json().data.refresh_token)
    usedSecrets.add(rb.json().data.access_token)
    const bobB = await call(`${B.adminUrl}/api/v2/login/refresh`, { method: 'POST', body: { refresh_token: tokens.bobRefresh } })
    assert.equal(bobB.status, 200, bobB.text)
    usedSecrets.add(bobB.json().data.refresh_token)
    usedSecrets.add(bobB.json().data.access_token)
    // bob's migrated refresh token, spent on B, presented again on A: the family is revoked.
    const reuse = await call(`${A.adminUrl}/api/v2/login/refresh`, { method: 'POST', body: { refresh_token: tokens.bobRefresh } })
    assert.equal(reuse.status, 401)
    const fresh = await call(`${A.dataUrl}/v1/things`, { token: bobB.json().data.access_token })
    assert.equal(fresh.status, 401, 'the access token of a revoked family')
    // A login on a replica works with the migrated password.
    assert.equal((await call(`${B.adminUrl}/api/v2/login`, { method: 'POST', body: { username: 'carol', password: CAROL_PW } })).status, 200)
  })
})
