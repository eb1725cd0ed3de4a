/**
 * No guessable admin on a network (issue 13): the first `admin` is admin/admin (to be changed)
 * only while the admin listener is bound to loopback. On any other address it gets
 * GATEHOUSE_ADMIN_PASSWORD, or a random password written once to
 * `<stateDir>/initial-admin-password` (mode 0600) and named — not printed — in the log.
 *
 * The first start on a network address is the issuer's bootstrap with `admin.address: 0.0.0.0`
 * (tests bind to 127.0.0.1 only); the same state directory is then served by an in-process
 * gatehouse on 127.0.0.1, whose real admin API is what the assertions talk to.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { loadConfig } from '../../src/config/load.ts'
import { INITIAL_PASSWORD_FILE, isLoopbackAddress, LocalIssuer } from '../../src/issuer/localIssuer.ts'
import { createLogger } from '../../src/log.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream } from '../helpers/upstream.ts'

const root = mkdtempSync(path.join(tmpdir(), 'gh-initial-admin-'))
after(() => rmSync(root, { recursive: true, force: true }))

/** Bootstrap the issuer as `serve` does on first start, with the admin listener on `address`. */
async function firstStart(stateDir: string, address: string, env: Record<string, string> = {}): Promise<string[]> {
  const logs: string[] = []
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      logs.push(...c.toString('utf8').split('\n').filter((l) => l !== ''))
      cb()
    },
  })
  const r = loadConfig({ env: { GATEHOUSE_STATE_DIR: stateDir, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_ADDRESS: address, ...env }, cwd: root })
  assert.ok(r.config, JSON.stringify(r.problems))
  await LocalIssuer.open(r.config, new FileStore(stateDir), createLogger('info', sink))
  return logs
}

async function serve(stateDir: string): Promise<TestProxy> {
  return startProxy({ env: { GATEHOUSE_STATE_DIR: stateDir, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_UPSTREAM_URL: 'echo:' } })
}

const login = (gh: TestProxy, username: string, password: string) => gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })

describe('the first admin on a network address', () => {
  const stateDir = path.join(root, 'network')
  let logs: string[]
  let gh: TestProxy
  let password: string

  after(async () => {
    await gh?.stop()
    assertNoSecretsInLogs([...logs, ...(gh?.logs ?? [])], [password])
  })

  it('admin.address 0.0.0.0: a random password is written to <stateDir>/initial-admin-password, mode 0600', async () => {
    logs = await firstStart(stateDir, '0.0.0.0')
    const file = path.join(stateDir, INITIAL_PASSWORD_FILE)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    password = readFileSync(file, 'utf8').trim()
    usedSecrets.add(password)
    assert.ok(password.length >= 20, 'a strong password')
    assert.match(password, /[A-Z]/)
    assert.match(password, /[a-z]/)
  })

  it('the log names the file, not the password', () => {
    const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => typeof l.msg === 'string' && l.msg.includes('random password'))
    assert.ok(line, logs.join('\n'))
    assert.equal(line.file, path.join(stateDir, INITIAL_PASSWORD_FILE))
    assert.equal(line.level, 'warn')
    for (const l of logs) assert.ok(!l.includes(password), 'the password is never logged')
  })

  it('admin/admin is refused with 401 through the real admin API', async () => {
    gh = await serve(stateDir)
    const r = await login(gh, 'admin', 'admin')
    assert.equal(r.status, 401, r.text)
    assert.equal(r.json().reason, 'ERR_LOGIN_FAILED')
  })

  it('the file’s password logs in; it must be changed first, and afterwards it no longer works', async () => {
    const r = await login(gh, 'admin', password)
    assert.equal(r.status, 200, r.text)
    const d = r.json().data
    usedSecrets.add(d.access_token).add(d.refresh_token)
    assert.equal(d.password_change_required, true)
    assert.equal((await gh.admin('/api/v2/users', { token: d.access_token })).json().reason, 'ERR_PASSWORD_CHANGE_REQUIRED')
    usedSecrets.add('Chosen-by-op-1')
    const c = await gh.admin('/api/v2/users/password', { method: 'PUT', token: d.access_token, body: JSON.stringify({ old_password: password, new_password: 'Chosen-by-op-1' }) })
    assert.equal(c.status, 200, c.text)
    assert.equal((await login(gh, 'admin', password)).status, 401)
    const again = await login(gh, 'admin', 'Chosen-by-op-1')
    assert.equal(again.status, 200)
    usedSecrets.add(again.json().data.access_token).add(again.json().data.refresh_token)
  })

  it('a later start never overwrites the file', async () => {
    const before = readFileSync(path.join(stateDir, INITIAL_PASSWORD_FILE), 'utf8')
    await firstStart(stateDir, '0.0.0.0')
    assert.equal(readFileSync(path.join(stateDir, INITIAL_PASSWORD_FILE), 'utf8'), before)
  })
})

describe('the first admin elsewhere', () => {
  it('GATEHOUSE_ADMIN_PASSWORD on a network address: no file, that password logs in without a forced change', async () => {
    const stateDir = path.join(root, 'given')
    usedSecrets.add('Given-by-env-1')
    await firstStart(stateDir, '0.0.0.0', { GATEHOUSE_ADMIN_PASSWORD: 'Given-by-env-1' })
    assert.throws(() => statSync(path.join(stateDir, INITIAL_PASSWORD_FILE)), /ENOENT/)
    const gh = await serve(stateDir)
    try {
      assert.equal((await login(gh, 'admin', 'admin')).status, 401)
      const r = await login(gh, 'admin', 'Given-by-env-1')
      assert.equal(r.status, 200, r.text)
      usedSecrets.add(r.json().data.access_token).add(r.json().data.refresh_token)
      assert.equal(r.json().data.password_change_required, undefined)
    } finally {
      await gh.stop()
    }
  })

  it('an admin listener on loopback keeps Weka’s admin/admin with a forced change, and writes no file', async () => {
    const stateDir = path.join(root, 'loopback')
    const up = await startUpstream()
    const gh = await serve(stateDir) // startProxy binds the admin listener to 127.0.0.1
    try {
      const r = await login(gh, 'admin', 'admin')
      assert.equal(r.status, 200, r.text)
      usedSecrets.add(r.json().data.access_token).add(r.json().data.refresh_token)
      assert.equal(r.json().data.password_change_required, true)
      assert.throws(() => statSync(path.join(stateDir, INITIAL_PASSWORD_FILE)), /ENOENT/)
      assert.equal(up.requests.length, 0)
    } finally {
      await gh.stop()
      await up.close()
    }
  })

  it('which addresses count as loopback', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) assert.equal(isLoopbackAddress(a), true, a)
    for (const a of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.10', '::ffff:10.0.0.1', 'fe80::1', 'gatehouse.example', '128.0.0.1', '']) assert.equal(isLoopbackAddress(a), false, a)
  })
})
