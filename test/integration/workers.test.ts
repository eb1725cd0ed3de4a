/**
 * `workers: 2` through the real binary: state that must be shared (revocation, lockout) is
 * correct across worker processes, and SIGTERM stops them all.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'

const PW = 'W0rkers-admin-pw'

describe('workers: 2', () => {
  let gh: ServeProcess
  let dir: string
  // No keep-alive: every request is a new connection, so the cluster spreads them over both workers.
  const fresh = new Agent({ pipelining: 0, keepAliveTimeout: 1 })

  before(async () => {
    usedSecrets.add(PW)
    dir = mkdtempSync(path.join(tmpdir(), 'gh-workers-'))
    gh = await startServe({ GATEHOUSE_WORKERS: '2', GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: PW }, { cwd: dir })
    // wait for the second worker too
    for (let i = 0; i < 100 && gh.stdout.filter((l) => l.includes('"gatehouse is ready"')).length < 2; i++) await new Promise((r) => setTimeout(r, 50))
  })
  after(async () => {
    await fresh.close()
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
    rmSync(dir, { recursive: true, force: true })
  })

  async function call(url: string, opts: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await request(url, { method: (opts.method ?? 'GET') as 'GET', headers: { ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }) }, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), dispatcher: fresh })
    const text = await r.body.text()
    return { status: r.statusCode, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
  }
  const login = async (password: string): Promise<{ status: number; json: Record<string, unknown> }> => call(`${gh.adminUrl}/api/v2/login`, { method: 'POST', body: { username: 'admin', password } })

  it('both workers serve', () => {
    const workers = new Set(gh.stdout.filter((l) => l.includes('"gatehouse is ready"')).map((l) => (JSON.parse(l) as { worker: number }).worker))
    assert.equal(workers.size, 2)
  })

  it('revoke-tokens through one worker: the token fails on every worker at once', async () => {
    const t = ((await login(PW)).json.data as { access_token: string }).access_token
    usedSecrets.add(t)
    for (let i = 0; i < 6; i++) assert.equal((await call(`${gh.dataUrl}/x`, { token: t })).status, 200)
    assert.equal((await call(`${gh.adminUrl}/api/v2/users/admin/revoke`, { method: 'DELETE', token: t })).status, 200)
    const after = await Promise.all(Array.from({ length: 10 }, () => call(`${gh.dataUrl}/x`, { token: t })))
    assert.deepEqual(after.map((r) => r.status), Array(10).fill(401))
  })

  it('lockout is counted once across workers: 20 parallel wrong attempts never exceed the limit', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => login('Wrong-pass-1')))
    const checked = results.filter((r) => r.status === 401).length
    assert.ok(checked <= 5, `${checked} wrong passwords were checked`)
    assert.equal((await login(PW)).status, 429)
  })
})
