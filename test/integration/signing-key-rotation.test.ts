/**
 * Rotating the local issuer's signing key (docs/security.md, "Signing keys"; issue 15).
 *
 * File store, the real binary with `workers: 2` (so the ring must reach the worker that did not
 * rotate): tokens issued before a rotation — access, refreshed, long-lived — keep working after
 * it; new ones carry the new kid; the JWKS lists both; `security signing-key status` names the
 * current and the retired key; only an admin rotates; a restart keeps the ring;
 * `rotate --revoke-previous` refuses every earlier token at once, also one sitting in the
 * verified-token cache, while new ones work.
 *
 * Two replicas on one real redis-server: rotate through A; a token A issues right after works on
 * B at once; B signs with the new key within seconds; old tokens work on both; revoke-previous
 * through A refuses the old tokens on B (cached there) within two seconds. `store migrate` takes
 * the ring along (retired keys too).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { jwtShape } from '../../src/auth/jwtShape.ts'
import { runCliAsync, startServe, type CliRun, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Rotate-admin-1'
const BOB_PW = 'Rotate-bob-pw-1'
const RITA_PW = 'Rotate-rita-pw-1'
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const kidOf = (token: string): string => String(jwtShape(token)?.header.kid)

interface Res {
  status: number
  body: string
}

/** One request on a fresh connection (so that `workers: 2` spreads them over both workers). */
function call(url: string, ca: string, opts: { method?: string; token?: string; body?: unknown } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {}
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    const req = https.request(url, { method: opts.method ?? 'GET', agent: false, ca, headers }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body))
  })
}

/** Poll until `check` holds; returns the ms it took; fails after `ms`. */
async function within(ms: number, check: () => Promise<boolean>, what: string): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    if (await check()) return Date.now() - t0
    if (Date.now() - t0 > ms) assert.fail(`${what} did not happen within ${ms} ms`)
    await sleep(25)
  }
}

describe('signing-key rotation, file store, real binary with workers: 2', () => {
  let dir: string
  let state: string
  let home: string
  let ca: string
  let up: RecordingUpstream
  let gh: ServeProcess
  const outputs: string[] = []
  const env = (): Record<string, string> => ({ GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, GATEHOUSE_WORKERS: '2' })
  const admin = (p: string, o: { method?: string; token?: string; body?: unknown } = {}): Promise<Res> => call(`${gh.adminUrl}${p}`, ca, o)
  const data = (token: string): Promise<Res> => call(`${gh.dataUrl}/v1/objects`, ca, { token })
  /** The status of `token` on several fresh connections (both workers); all must agree. */
  const everywhere = async (token: string): Promise<number> => {
    const s = await Promise.all(Array.from({ length: 6 }, () => data(token).then((r) => r.status)))
    assert.equal(new Set(s).size, 1, `the workers disagree: ${s.join(', ')}`)
    return s[0] as number
  }
  const login = async (username: string, password: string): Promise<{ access: string; refresh: string }> => {
    const r = await admin('/api/v2/login', { method: 'POST', body: { username, password } })
    assert.equal(r.status, 200, r.body)
    const d = JSON.parse(r.body).data
    usedSecrets.add(d.access_token).add(d.refresh_token)
    return { access: d.access_token, refresh: d.refresh_token }
  }
  const cli = async (args: string[]): Promise<CliRun> => {
    const r = await runCliAsync(args, { HOME: home, GATEHOUSE_HOST: gh.adminUrl, GATEHOUSE_STATE_DIR: state }, dir)
    outputs.push(r.stdout + r.stderr)
    return r
  }
  const ok = async (args: string[]): Promise<CliRun> => {
    const r = await cli(args)
    assert.equal(r.code, 0, `gatehouse ${args.join(' ')} failed:\n${r.stderr}${r.stdout}`)
    return r
  }
  const start = async (): Promise<void> => {
    gh = await startServe(env(), { cwd: dir })
    ca = readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8')
  }
  const stop = async (): Promise<void> => {
    gh.child.kill('SIGTERM')
    await gh.exited
    outputs.push(...gh.stdout, ...gh.stderr)
  }

  let adminToken: string
  let before1: { access: string; refresh: string }
  let longLived: string
  let firstKid: string
  let secondKid: string
  let afterRotation: string

  before(async () => {
    for (const s of [ADMIN_PW, BOB_PW, RITA_PW]) usedSecrets.add(s)
    dir = mkdtempSync(path.join(tmpdir(), 'gh-rotate-'))
    state = path.join(dir, 'state')
    home = path.join(dir, 'home')
    up = await startUpstream()
    await start()
    adminToken = (await login('admin', ADMIN_PW)).access
    for (const [u, pw, role] of [['bob', BOB_PW, 'regular'], ['rita', RITA_PW, 'readonly']] as const) {
      const r = await admin('/api/v2/users', { method: 'POST', token: adminToken, body: { username: u, password: pw, role } })
      assert.equal(r.status, 201, r.body)
    }
    await ok(['user', 'login', 'admin', ADMIN_PW])
  })
  after(async () => {
    await stop()
    await up.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs(outputs)
  })

  it('tokens from before a rotation keep working after it; new ones carry the new kid; the JWKS lists both', async () => {
    before1 = await login('bob', BOB_PW)
    const lt = await admin('/api/v2/users/tokens', { method: 'POST', token: before1.access, body: { access_token_timeout: '30d' } })
    assert.equal(lt.status, 200, lt.body)
    longLived = JSON.parse(lt.body).data.access_token
    usedSecrets.add(longLived)
    firstKid = kidOf(before1.access)
    assert.equal(kidOf(longLived), firstKid)
    assert.equal(await everywhere(before1.access), 200)
    assert.equal(await everywhere(longLived), 200)

    const rotated = await ok(['security', 'signing-key', 'rotate', '--json'])
    const s = JSON.parse(rotated.stdout)
    secondKid = s.current_kid
    assert.notEqual(secondKid, firstKid)
    assert.deepEqual(s.keys.map((k: { kid: string; current: boolean }) => [k.kid, k.current]), [[secondKid, true], [firstKid, false]])
    assert.ok(!rotated.stdout.includes('"d"'), 'no private part in the answer')

    // Every earlier token works on both workers: access, long-lived, and the admin's own.
    assert.equal(await everywhere(before1.access), 200)
    assert.equal(await everywhere(longLived), 200)
    assert.equal((await admin('/api/v2/users/whoami', { token: adminToken })).status, 200)
    // New tokens (a login, a refresh) are signed with the new key, on whichever worker, and verify on both.
    for (let i = 0; i < 4; i++) {
      const fresh = await login('bob', BOB_PW)
      assert.equal(kidOf(fresh.access), secondKid)
      assert.equal(await everywhere(fresh.access), 200)
    }
    const refreshed = await admin('/api/v2/login/refresh', { method: 'POST', body: { refresh_token: before1.refresh } })
    assert.equal(refreshed.status, 200, refreshed.body)
    afterRotation = JSON.parse(refreshed.body).data.access_token
    usedSecrets.add(afterRotation).add(JSON.parse(refreshed.body).data.refresh_token)
    assert.equal(kidOf(afterRotation), secondKid)
    assert.equal(await everywhere(afterRotation), 200)

    const jwks = JSON.parse((await admin('/.well-known/jwks.json')).body) as { keys: Record<string, unknown>[] }
    assert.deepEqual(jwks.keys.map((k) => k.kid), [secondKid, firstKid])
    for (const k of jwks.keys) assert.equal(k.d, undefined)
    // The ring is one file, 0600, with the retired key's public half only.
    const file = path.join(state, 'issuer', 'signing-key.json')
    assert.equal(statSync(file).mode & 0o777, 0o600)
    const ring = JSON.parse(readFileSync(file, 'utf8'))
    assert.equal(ring.kid, secondKid)
    assert.equal(ring.retired[0].kid, firstKid)
    assert.equal(ring.retired[0].publicJwk.d, undefined)
  })

  it('status shows the current and the retired key; readers may look, only an admin rotates (403)', async () => {
    const human = await ok(['security', 'signing-key', 'status'])
    assert.match(human.stdout, new RegExp(`current key:\\s+${secondKid}`))
    assert.match(human.stdout, new RegExp(`${firstKid}\\s+retired\\s+created \\S+\\s+retired \\S+`))
    const rita = await login('rita', RITA_PW)
    const st = await admin('/api/v2/security/signingKey', { token: rita.access })
    assert.equal(st.status, 200, st.body)
    assert.equal(JSON.parse(st.body).data.current_kid, secondKid)
    for (const t of [rita.access, afterRotation]) {
      const r = await admin('/api/v2/security/signingKey/rotate', { method: 'POST', token: t, body: {} })
      assert.equal(r.status, 403, r.body)
    }
    assert.equal((await admin('/api/v2/security/signingKey', { token: afterRotation })).status, 403, 'a regular user does not read it')
    const bad = await admin('/api/v2/security/signingKey/rotate', { method: 'POST', token: adminToken, body: { revoke_previous: 'yes' } })
    assert.equal(bad.status, 400, bad.body)
    assert.equal(JSON.parse((await admin('/api/v2/security/signingKey', { token: adminToken })).body).data.current_kid, secondKid, 'nothing rotated')
  })

  it('a restart keeps the ring: old and new tokens work, the same key signs', async () => {
    await stop()
    await start()
    assert.equal(await everywhere(before1.access), 200)
    assert.equal(await everywhere(longLived), 200)
    assert.equal(await everywhere(afterRotation), 200)
    assert.equal(kidOf((await login('bob', BOB_PW)).access), secondKid)
    const st = JSON.parse((await admin('/api/v2/security/signingKey', { token: adminToken })).body).data
    assert.deepEqual(st.keys.map((k: { kid: string }) => k.kid), [secondKid, firstKid])
  })

  it('rotate --revoke-previous refuses every earlier token at once (cached ones too); new tokens work', async () => {
    // Cached on both workers by successful requests.
    for (const t of [before1.access, longLived, afterRotation]) assert.equal(await everywhere(t), 200)
    const r = await ok(['security', 'signing-key', 'rotate', '--revoke-previous'])
    assert.match(r.stdout, /every earlier key was dropped/)
    const thirdKid = /signed with (local-[0-9a-f]+)/.exec(r.stdout)?.[1]
    assert.ok(thirdKid !== undefined && thirdKid !== secondKid && thirdKid !== firstKid, r.stdout)
    // At once: the rotate answered, so both workers refuse now.
    for (const t of [before1.access, longLived, afterRotation]) assert.equal(await everywhere(t), 401)
    assert.equal((await admin('/api/v2/users/whoami', { token: adminToken })).status, 401, 'the admin listener too')
    const fresh = await login('bob', BOB_PW)
    assert.equal(kidOf(fresh.access), thirdKid)
    assert.equal(await everywhere(fresh.access), 200)
    const jwks = JSON.parse((await admin('/.well-known/jwks.json')).body) as { keys: { kid: string }[] }
    assert.deepEqual(jwks.keys.map((k) => k.kid), [thirdKid])
    const st = await ok(['security', 'signing-key', 'status', '--json'])
    assert.deepEqual(JSON.parse(st.stdout).keys.map((k: { kid: string; current: boolean }) => [k.kid, k.current]), [[thirdKid, true]])
  })

  it('every rotation is in the audit trail', () => {
    const lines = gh.stdout.filter((l) => l.includes('"signing_key.rotated"')).map((l) => JSON.parse(l))
    assert.equal(lines.length, 1, 'one since the restart')
    assert.equal(lines[0].actor, 'admin')
    assert.equal(lines[0].outcome, 'success')
    assert.equal(lines[0].revokePrevious, true)
  })
})

describe('signing-key rotation across two replicas on one Redis', () => {
  let redis: RunningRedis
  let up: RecordingUpstream
  const replicas: TestProxy[] = []
  let A: TestProxy, B: TestProxy
  let adminToken: string

  const start = async (extra: Record<string, string> = {}): Promise<TestProxy> => {
    const p = await startProxy({ env: { GATEHOUSE_STORE_URL: redis.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_UPSTREAM_URL: up.url, ...extra }, logLevel: 'debug' })
    replicas.push(p)
    return p
  }
  const tokenOf = async (p: TestProxy, username: string, password: string): Promise<string> => {
    const r: Reply = await p.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
    assert.equal(r.status, 200, r.text)
    const d = r.json().data
    usedSecrets.add(d.access_token).add(d.refresh_token)
    return d.access_token
  }
  const status = (p: TestProxy, token: string): Promise<number> => p.request('/v1/x', { token }).then((r) => r.status)

  before(async () => {
    for (const s of [ADMIN_PW, BOB_PW]) usedSecrets.add(s)
    redis = await startRedis()
    up = await startUpstream()
    A = await start({ GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW })
    B = await start()
    adminToken = await tokenOf(A, 'admin', ADMIN_PW)
    const r = await A.admin('/api/v2/users', { method: 'POST', token: adminToken, body: JSON.stringify({ username: 'bob', password: BOB_PW, role: 'regular' }) })
    assert.equal(r.status, 201, r.text)
  })
  after(async () => {
    for (const p of replicas) await p.stop()
    await up?.close()
    await redis?.close()
    for (const p of replicas) assertNoSecretsInLogs(p.logs)
  })

  it('rotate through A: A’s next token works on B at once, B signs with the new key within seconds, old tokens work on both', async () => {
    const old = await tokenOf(B, 'bob', BOB_PW)
    const oldKid = kidOf(old)
    for (const p of [A, B]) assert.equal(await status(p, old), 200)
    const r = await A.admin('/api/v2/security/signingKey/rotate', { method: 'POST', token: adminToken })
    assert.equal(r.status, 200, r.text)
    const newKid = r.json().data.current_kid
    assert.notEqual(newKid, oldKid)
    const fromA = await tokenOf(A, 'bob', BOB_PW)
    assert.equal(kidOf(fromA), newKid)
    assert.equal(await status(B, fromA), 200, 'B verifies the new kid at once')
    await within(3000, async () => kidOf(await tokenOf(B, 'bob', BOB_PW)) === newKid, 'B signing with the new key')
    for (const p of [A, B]) {
      assert.equal(await status(p, old), 200)
      assert.equal(await status(p, fromA), 200)
      assert.deepEqual((await p.admin('/.well-known/jwks.json')).json().keys.map((k: { kid: string }) => k.kid), [newKid, oldKid])
      assert.deepEqual((await p.admin('/api/v2/security/signingKey', { token: adminToken })).json().data.keys.map((k: { kid: string; current: boolean }) => [k.kid, k.current]), [[newKid, true], [oldKid, false]])
    }
  })

  it('revoke-previous through A refuses the old tokens on B (cached there) within two seconds; new ones work', async () => {
    const old = await tokenOf(A, 'bob', BOB_PW)
    for (let i = 0; i < 3; i++) assert.equal(await status(B, old), 200) // cached on B
    const r = await A.admin('/api/v2/security/signingKey/rotate', { method: 'POST', token: adminToken, body: JSON.stringify({ revoke_previous: true }) })
    assert.equal(r.status, 200, r.text)
    const newKid = r.json().data.current_kid
    assert.deepEqual(r.json().data.keys.map((k: { kid: string }) => k.kid), [newKid])
    assert.equal(await status(A, old), 401, 'at once on A')
    const took = await within(2000, async () => (await status(B, old)) === 401, 'refusal on B')
    assert.ok(took < 2000)
    const fresh = await tokenOf(A, 'bob', BOB_PW)
    assert.equal(kidOf(fresh), newKid)
    assert.equal(await status(B, fresh), 200)
    await within(3000, async () => (await B.admin('/.well-known/jwks.json')).json().keys.length === 1, 'B’s JWKS with the new key only')
  })

  it('store migrate copies the ring: tokens signed by a retired file-store key work on a replica of the target', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-rotate-migrate-'))
    try {
      const state = path.join(dir, 'state')
      const single = await startProxy({ env: { GATEHOUSE_STATE_DIR: state, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW } })
      let old: string, fresh: string, kids: string[]
      try {
        const admin = await tokenOf(single, 'admin', ADMIN_PW)
        old = await tokenOf(single, 'admin', ADMIN_PW)
        const r = await single.admin('/api/v2/security/signingKey/rotate', { method: 'POST', token: admin })
        assert.equal(r.status, 200, r.text)
        kids = r.json().data.keys.map((k: { kid: string }) => k.kid)
        fresh = await tokenOf(single, 'admin', ADMIN_PW)
      } finally {
        await single.stop()
        assertNoSecretsInLogs(single.logs)
      }
      const m = await runCliAsync(['store', 'migrate', '--from', `file:${state}`, '--to', redis.url, '--key-prefix', 'migrated:'], { HOME: dir }, dir)
      assert.equal(m.code, 0, m.stderr + m.stdout)
      const C = await start({ GATEHOUSE_STORE_KEY_PREFIX: 'migrated:' })
      assert.equal(await status(C, old), 200, 'signed by the retired key')
      assert.equal(await status(C, fresh), 200, 'signed by the current key')
      assert.deepEqual((await C.admin('/.well-known/jwks.json')).json().keys.map((k: { kid: string }) => k.kid), kids)
      assert.equal(kidOf(await tokenOf(C, 'admin', ADMIN_PW)), kids[0])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
