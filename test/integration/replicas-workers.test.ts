/**
 * The real binary on a shared store: `gatehouse serve` with `workers: 2` and `store.url:
 * redis://…` (each worker connects to Redis itself), next to a second replica, on Debian's
 * redis-server. `gatehouse user revoke-tokens` (the real CLI) through the second replica refuses
 * the token on every worker of the first within a second; a store that cannot be reached stops
 * `serve` with exit 1 and a clear message that never shows the store password.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { runCliAsync, startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { freePort, startRedis, type RunningRedis } from '../helpers/redis.ts'

const ADMIN_PW = 'Workers-admin-1'
const BOB_PW = 'Bob-workers-1'
const STORE_PW = 'Store-secret-pw-42'

async function call(url: string, opts: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; json: () => any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await request(url, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }), ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  })
  const text = await r.body.text()
  return { status: r.statusCode, json: () => JSON.parse(text) }
}

describe('gatehouse serve with workers on a shared store', () => {
  let redis: RunningRedis
  let gh: ServeProcess
  let B: TestProxy
  let dir: string

  before(async () => {
    for (const s of [ADMIN_PW, BOB_PW, STORE_PW]) usedSecrets.add(s)
    redis = await startRedis()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-replica-workers-'))
    const common = { GATEHOUSE_STORE_URL: redis.url, GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true' }
    gh = await startServe({ ...common, GATEHOUSE_WORKERS: '2', GATEHOUSE_STATE_DIR: path.join(dir, 'state-a'), GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, { cwd: dir })
    B = await startProxy({ env: common })
  })

  after(async () => {
    gh?.child.kill('SIGTERM')
    if (gh !== undefined) assert.equal(await gh.exited, 0)
    await B?.stop()
    await redis?.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...(gh?.stdout ?? []), ...(B?.logs ?? [])])
  })

  it('a token from the workers works on the other replica; revoke-tokens (CLI) through that replica refuses it on every worker within a second', async () => {
    const login = await call(`${gh.adminUrl}/api/v2/login`, { method: 'POST', body: { username: 'admin', password: ADMIN_PW } })
    assert.equal(login.status, 200)
    const admin = login.json().data.access_token as string
    usedSecrets.add(admin)
    assert.equal((await call(`${gh.adminUrl}/api/v2/users`, { method: 'POST', token: admin, body: { username: 'bob', password: BOB_PW, role: 'regular' } })).status, 201)
    const bob = (await call(`${gh.adminUrl}/api/v2/login`, { method: 'POST', body: { username: 'bob', password: BOB_PW } })).json().data.access_token as string
    usedSecrets.add(bob)
    assert.equal((await call(`${B.url}/x`, { token: bob })).status, 200, 'issued by a worker, verified by the other replica')
    // Requests spread over both workers: each verifies (and caches) the token.
    const before = await Promise.all(Array.from({ length: 10 }, () => call(`${gh.dataUrl}/x`, { token: bob })))
    assert.deepEqual(before.map((r) => r.status), Array(10).fill(200))

    const home = path.join(dir, 'home')
    const cliEnv = { HOME: home, GATEHOUSE_HOST: B.adminUrl as string }
    const l = await runCliAsync(['user', 'login', 'admin', ADMIN_PW], cliEnv, dir)
    assert.equal(l.code, 0, l.stderr)
    const t0 = Date.now()
    const r = await runCliAsync(['user', 'revoke-tokens', 'bob'], cliEnv, dir)
    assert.equal(r.code, 0, r.stderr)
    for (;;) {
      const after = await Promise.all(Array.from({ length: 10 }, () => call(`${gh.dataUrl}/x`, { token: bob })))
      if (after.every((x) => x.status === 401)) break
      assert.ok(Date.now() - t0 < 1000, `still accepted somewhere after ${Date.now() - t0} ms: ${after.map((x) => x.status).join(',')}`)
      await new Promise((res) => setTimeout(res, 25))
    }
  })

  it('a store that cannot be reached stops serve with exit 1, naming the store but never its password', async () => {
    const port = await freePort()
    const cfg = path.join(dir, 'unreachable.yaml')
    writeFileSync(cfg, 'store:\n  connectTimeout: 500ms\n')
    const r = await runCliAsync(['serve', '--config', cfg], { GATEHOUSE_STORE_URL: `redis://127.0.0.1:${port}`, GATEHOUSE_STORE_PASSWORD: STORE_PW, GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_STATE_DIR: path.join(dir, 'state-x') }, dir)
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`cannot reach the state store at redis://127\\.0\\.0\\.1:${port}`))
    assert.ok(!`${r.stdout}${r.stderr}`.includes(STORE_PW))
  })
})
