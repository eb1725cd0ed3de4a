/**
 * Audit trail (issue 13): every security event done through the real admin API gets exactly one
 * structured line — event, actor, target, client address, request id, outcome — and access
 * lines carry the client address. Every password and token the test used is grepped for in
 * every captured line.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Adm1n-audit-pw'
const BOB_PW = 'Bob-audit-pw1'
const BOB_PW2 = 'Bob-audit-pw2'
const WRONG = 'Wrong-audit-pw9'

type Line = Record<string, unknown>

describe('audit trail', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  let admin: string
  const secrets = [ADMIN_PW, BOB_PW, BOB_PW2, WRONG]

  before(async () => {
    for (const s of secrets) usedSecrets.add(s)
    up = await startUpstream()
    gh = await startProxy({
      env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW },
      yaml: 'authentication:\n  local:\n    lockout:\n      failedAttempts: 2\n',
    })
    admin = tokens(await login('admin', ADMIN_PW)).access
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assertNoSecretsInLogs(gh.logs, secrets)
  })

  function tokens(r: Reply): { access: string; refresh: string } {
    assert.equal(r.status, 200, r.text)
    const d = r.json().data
    usedSecrets.add(d.access_token).add(d.refresh_token)
    secrets.push(d.access_token, d.refresh_token)
    return { access: d.access_token, refresh: d.refresh_token }
  }
  const login = (username: string, password: string): Promise<Reply> => gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
  const call = (p: string, method: string, token: string | undefined, body?: unknown): Promise<Reply> =>
    gh.admin(p, { method, ...(token === undefined ? {} : { token }), ...(body === undefined ? {} : { body: JSON.stringify(body) }) })

  const audits = (): Line[] => gh.logs.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'audit')
  /** The audit lines of one request (by the X-Request-Id of its answer). */
  function linesOf(r: Reply): Line[] {
    const id = r.headers['x-request-id']
    assert.equal(typeof id, 'string', 'every admin answer carries X-Request-Id')
    return audits().filter((l) => l.requestId === id)
  }
  /** Exactly one line of `event` for this request, with these fields. */
  function expectOne(r: Reply, event: string, fields: Line): Line {
    const lines = linesOf(r).filter((l) => l.event === event)
    assert.equal(lines.length, 1, `one ${event} line for ${String(r.headers['x-request-id'])}: ${JSON.stringify(linesOf(r))}`)
    const line = lines[0] as Line
    assert.equal(line.audit, true)
    assert.equal(line.client, '127.0.0.1')
    for (const [k, v] of Object.entries(fields)) assert.deepEqual(line[k], v, `${event}.${k}`)
    return line
  }

  it('login success and failure (a known and an unknown name alike)', async () => {
    const ok = await login('admin', ADMIN_PW)
    tokens(ok)
    expectOne(ok, 'login', { actor: 'admin', target: 'admin', outcome: 'success', level: 'info' })
    const bad = await login('admin', WRONG)
    assert.equal(bad.status, 401)
    expectOne(bad, 'login', { actor: '-', target: 'admin', outcome: 'failure', reason: 'ERR_LOGIN_FAILED', level: 'warn' })
    assert.equal(bad.json().requestId, bad.headers['x-request-id'])
    const unknown = await login('nobody-here', WRONG)
    expectOne(unknown, 'login', { actor: '-', target: 'nobody-here', outcome: 'failure', reason: 'ERR_LOGIN_FAILED' })
    assert.equal((await login('admin', ADMIN_PW)).status, 200, 'admin not locked (a success reset its count)')
  })

  it('user created, and a refused creation by a non-admin names that actor', async () => {
    const r = await call('/api/v2/users', 'POST', admin, { username: 'bob', password: BOB_PW, role: 'regular' })
    assert.equal(r.status, 201, r.text)
    expectOne(r, 'user.created', { actor: 'admin', target: 'bob', outcome: 'success', role: 'regular' })
    const bob = tokens(await login('bob', BOB_PW)).access
    const denied = await call('/api/v2/users', 'POST', bob, { username: 'mallory', password: 'Mallory-pw1', role: 'admin' })
    assert.equal(denied.status, 403)
    // Refused before its body is read: the target is unknown, the actor is not.
    expectOne(denied, 'user.created', { actor: 'bob', target: '-', outcome: 'failure', reason: 'ERR_FORBIDDEN' })
  })

  it('account locked, then every lock cleared (with the lockout-policy reset)', async () => {
    await login('bob', WRONG)
    const second = await login('bob', WRONG)
    assert.equal(second.status, 401)
    expectOne(second, 'account.locked', { actor: '-', target: 'bob', outcome: 'success', lockedForSeconds: 120, level: 'warn' })
    assert.equal((await login('bob', BOB_PW)).status, 429, 'locked')
    const reset = await call('/api/v2/lockoutPolicy', 'DELETE', admin)
    assert.equal(reset.status, 200)
    expectOne(reset, 'lockout_policy.reset', { actor: 'admin', target: 'lockoutPolicy', outcome: 'success' })
    expectOne(reset, 'locks.cleared', { actor: 'admin', target: 'lockoutPolicy', outcome: 'success' })
    tokens(await login('bob', BOB_PW))
  })

  it('lockout policy changed', async () => {
    const r = await call('/api/v2/lockoutPolicy', 'PUT', admin, { failed_attempts: 7, lockout_duration: '3m' })
    assert.equal(r.status, 200, r.text)
    expectOne(r, 'lockout_policy.changed', { actor: 'admin', outcome: 'success', failed_attempts: 7, lockout_duration: '3m' })
    const bad = await call('/api/v2/lockoutPolicy', 'PUT', admin, { failed_attempts: 1 })
    expectOne(bad, 'lockout_policy.changed', { actor: 'admin', outcome: 'failure', reason: 'ERR_BAD_REQUEST' })
  })

  it('password changed (by an admin for another user, and by a user for itself) — never the passwords', async () => {
    const r = await call('/api/v2/users/password', 'PUT', admin, { username: 'bob', new_password: BOB_PW2 })
    assert.equal(r.status, 200, r.text)
    const line = expectOne(r, 'password.changed', { actor: 'admin', target: 'bob', outcome: 'success' })
    assert.equal(JSON.stringify(line).includes(BOB_PW2), false)
    const bob = tokens(await login('bob', BOB_PW2)).access
    const own = await call('/api/v2/users/password', 'PUT', bob, { old_password: WRONG, new_password: BOB_PW })
    expectOne(own, 'password.changed', { actor: 'bob', target: 'bob', outcome: 'failure', reason: 'ERR_LOGIN_FAILED' })
  })

  it('tokens revoked, long-lived token generated', async () => {
    const g = await call('/api/v2/users/tokens', 'POST', admin, { access_token_timeout: '1d' })
    assert.equal(g.status, 200, g.text)
    secrets.push(g.json().data.access_token)
    usedSecrets.add(g.json().data.access_token)
    expectOne(g, 'token.generated', { actor: 'admin', target: 'admin', outcome: 'success', lifetime: '1d' })
    const r = await call('/api/v2/users/bob/revoke', 'DELETE', admin)
    assert.equal(r.status, 200, r.text)
    expectOne(r, 'tokens.revoked', { actor: 'admin', target: 'bob', outcome: 'success' })
  })

  it('refresh-token reuse revokes the family and is logged as such', async () => {
    const t = tokens(await login('bob', BOB_PW2))
    tokens(await call('/api/v2/login/refresh', 'POST', undefined, { refresh_token: t.refresh }))
    const reuse = await call('/api/v2/login/refresh', 'POST', undefined, { refresh_token: t.refresh })
    assert.equal(reuse.status, 401)
    expectOne(reuse, 'refresh_token.reused', { actor: '-', target: 'bob', outcome: 'success', familyRevoked: true, level: 'warn' })
  })

  it('banner changed (text, enable, disable, clear)', async () => {
    const steps: [string, string, unknown, string][] = [
      ['/api/v2/security/banner', 'PUT', { text: 'Authorized use only' }, 'text'],
      ['/api/v2/security/banner/enable', 'POST', undefined, 'enabled'],
      ['/api/v2/security/banner/disable', 'POST', undefined, 'disabled'],
      ['/api/v2/security/banner', 'DELETE', undefined, 'cleared'],
    ]
    for (const [p, m, body, change] of steps) {
      const r = await call(p, m, admin, body)
      assert.equal(r.status, 200, r.text)
      expectOne(r, 'banner.changed', { actor: 'admin', target: 'banner', outcome: 'success', change })
    }
  })

  it('TLS certificate set (a bad one is a failure) and unset — never the private key', async () => {
    const pair = generateSelfSignedCertificate({ commonName: 'audit rotation' })
    const bad = await call('/api/v2/tls', 'POST', admin, { certificate: pair.certPem, private_key: 'not a key' })
    assert.equal(bad.status, 400)
    expectOne(bad, 'tls.changed', { actor: 'admin', target: 'tls', outcome: 'failure', reason: 'ERR_BAD_CERTIFICATE', change: 'set' })
    const set = await call('/api/v2/tls', 'POST', admin, { certificate: pair.certPem, private_key: pair.keyPem })
    assert.equal(set.status, 200, set.text)
    expectOne(set, 'tls.changed', { actor: 'admin', target: 'tls', outcome: 'success', change: 'set' })
    const unset = await call('/api/v2/tls', 'DELETE', admin)
    expectOne(unset, 'tls.changed', { actor: 'admin', target: 'tls', outcome: 'success', change: 'unset' })
    const keyBody = pair.keyPem.split('\n')[1] as string
    for (const l of gh.logs) assert.ok(!l.includes(keyBody), 'the private key is never logged')
  })

  it('CA certificate set and unset', async () => {
    const pair = generateSelfSignedCertificate({ commonName: 'audit ca' })
    const set = await call('/api/v2/security/caCert', 'PUT', admin, { certificate: pair.certPem })
    assert.equal(set.status, 200, set.text)
    expectOne(set, 'ca_cert.changed', { actor: 'admin', target: 'caCert', outcome: 'success', change: 'set' })
    const unset = await call('/api/v2/security/caCert', 'DELETE', admin)
    expectOne(unset, 'ca_cert.changed', { actor: 'admin', target: 'caCert', outcome: 'success', change: 'unset' })
  })

  it('user deleted', async () => {
    const r = await call('/api/v2/users/bob', 'DELETE', admin)
    assert.equal(r.status, 200, r.text)
    expectOne(r, 'user.deleted', { actor: 'admin', target: 'bob', outcome: 'success' })
  })

  it('reads write no audit line', async () => {
    for (const p of ['/api/v2/users', '/api/v2/lockoutPolicy', '/api/v2/users/whoami']) assert.deepEqual(linesOf(await call(p, 'GET', admin)), [])
  })

  it('access lines carry the client address on both listeners', async () => {
    const key = 'audit-no-such-key'
    usedSecrets.add(key)
    const data = await gh.request('/v1/objects', { token: key })
    assert.equal(data.status, 401)
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
    const access = gh.logs.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'request')
    const dataLine = access.find((l) => l.requestId === data.headers['x-request-id'])
    assert.ok(dataLine, 'the data listener’s access line')
    assert.equal(dataLine.client, '127.0.0.1')
    const adminLines = access.filter((l) => l.listener === 'admin')
    assert.ok(adminLines.length > 10)
    for (const l of adminLines) assert.equal(l.client, '127.0.0.1')
  })

  it('no password, token or key appears in any line', () => {
    assertNoSecretsInLogs(gh.logs, secrets)
    for (const l of audits()) assert.doesNotMatch(JSON.stringify(l), /password"|ghr_|eyJ/)
  })
})
