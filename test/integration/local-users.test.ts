/**
 * Local users over the real admin API (in-process gatehouse, real sockets), and their tokens on
 * the data listener in front of a recording upstream.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Adm1n-initial-pw'

async function login(gh: TestProxy, username: string, password: string): Promise<Reply> {
  usedSecrets.add(password)
  return gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
}
function tokens(r: Reply): { access: string; refresh: string } {
  const d = r.json().data
  usedSecrets.add(d.access_token).add(d.refresh_token)
  return { access: d.access_token, refresh: d.refresh_token }
}
const json = (o: unknown): string => JSON.stringify(o)

describe('local users: login, tokens, revocation', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  let admin: string

  before(async () => {
    up = await startUpstream()
    gh = await startProxy({
      env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, AUTHORIZATION_ADMINLIST_ENABLED: 'true', AUTHORIZATION_ADMINLIST_GROUPS: 'admin', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'readonly' },
      yaml: 'authentication:\n  local:\n    lockout:\n      failedAttempts: 5\n',
    })
    const r = await login(gh, 'admin', ADMIN_PW)
    assert.equal(r.status, 200, r.text)
    admin = tokens(r).access
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assertNoSecretsInLogs(gh.logs)
  })

  const asAdmin = (p: string, method = 'GET', body?: unknown): Promise<Reply> => gh.admin(p, { method, token: admin, ...(body === undefined ? {} : { body: json(body) }) })

  it('login answers Weka’s shape; the access token works on the data listener with the role as group', async () => {
    const r = await login(gh, 'admin', ADMIN_PW)
    const d = r.json().data
    assert.deepEqual(Object.keys(d).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
    assert.equal(d.token_type, 'Bearer')
    assert.equal(d.expires_in, 300)
    up.reset()
    const res = await gh.request('/v1/objects', { method: 'POST', token: tokens(r).access, body: '{}' })
    assert.equal(res.status, 200)
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'admin')
    assert.equal(up.requests[0]?.headers['x-forwarded-groups'], 'admin')
    assert.equal(up.requests[0]?.headers['x-forwarded-auth-method'], 'local')
  })

  it('a wrong password and an unknown user get the same 401 answer', async () => {
    const a = await login(gh, 'admin', 'Wrong-pass-1')
    const b = await login(gh, 'nobody-here', 'Wrong-pass-1')
    assert.equal(a.status, 401)
    assert.equal(b.status, 401)
    assert.equal(a.json().message, 'Invalid username or password')
    assert.equal(b.json().message, a.json().message)
    assert.equal(b.json().reason, a.json().reason)
    // a success resets the count for admin
    assert.equal((await login(gh, 'admin', ADMIN_PW)).status, 200)
  })

  it('the four password rules each reject a bad password with a message naming the rule', async () => {
    const cases: [string, RegExp][] = [
      ['Sh0rt!', /at least 8 characters/],
      ['alllowercase1', /uppercase/],
      ['ALLUPPERCASE1', /lowercase/],
      ['NoDigitsOrSpecials', /number or a special character/],
    ]
    for (const [pw, rule] of cases) {
      const r = await asAdmin('/api/v2/users', 'POST', { username: 'weak', password: pw, role: 'regular' })
      assert.equal(r.status, 400, pw)
      assert.equal(r.json().reason, 'ERR_WEAK_PASSWORD')
      assert.match(r.json().message, rule)
    }
    assert.equal((await asAdmin('/api/v2/users', 'POST', { username: 'weak', password: 'x'.repeat(200) + 'A1a' , role: 'regular' })).status, 400, 'length cap')
  })

  it('roles: readonly may list users but not create; regular may neither; the data listener follows the admin list by role', async () => {
    assert.equal((await asAdmin('/api/v2/users', 'POST', { username: 'rita', password: 'Reader-pass-1', role: 'readonly' })).status, 201)
    assert.equal((await asAdmin('/api/v2/users', 'POST', { username: 'greg', password: 'Regular-pass-1', role: 'regular' })).status, 201)
    assert.equal((await asAdmin('/api/v2/users', 'POST', { username: 'greg', password: 'Regular-pass-1', role: 'regular' })).status, 409)
    const rita = tokens(await login(gh, 'rita', 'Reader-pass-1')).access
    const greg = tokens(await login(gh, 'greg', 'Regular-pass-1')).access
    assert.equal((await gh.admin('/api/v2/users', { token: rita })).status, 200)
    assert.equal((await gh.admin('/api/v2/users', { method: 'POST', token: rita, body: json({ username: 'x1', password: 'Xx-pass-11', role: 'regular' }) })).status, 403)
    assert.equal((await gh.admin('/api/v2/users', { token: greg })).status, 403)
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: greg })).json().data.role, 'regular')
    up.reset()
    assert.equal((await gh.request('/x', { token: rita })).status, 200)
    assert.equal((await gh.request('/x', { method: 'POST', token: rita, body: '{}' })).status, 403)
    assert.equal((await gh.request('/x', { token: greg })).status, 403)
    assert.equal(up.requests.length, 1)
  })

  it('refresh rotates; presenting a spent refresh token revokes the whole family, access tokens included', async () => {
    const first = tokens(await login(gh, 'admin', ADMIN_PW))
    const r1 = await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: first.refresh }) })
    assert.equal(r1.status, 200)
    const second = tokens(r1)
    assert.notEqual(second.refresh, first.refresh)
    assert.equal((await gh.request('/x', { token: second.access })).status, 200)
    // Reuse of the spent one: refused, and the family (including `second`) is revoked.
    const reuse = await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: first.refresh }) })
    assert.equal(reuse.status, 401)
    assert.equal(reuse.json().reason, 'ERR_INVALID_REFRESH_TOKEN')
    assert.equal((await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: second.refresh }) })).status, 401)
    assert.equal((await gh.request('/x', { token: second.access })).status, 401, 'access tokens of the revoked family stop too (through the token cache)')
    // Other sessions are unaffected.
    assert.equal((await gh.request('/x', { token: admin })).status, 200)
  })

  it('revoke-tokens kills access, refresh and long-lived tokens at once (through the verified-token cache); a login right after works', async () => {
    await asAdmin('/api/v2/users', 'POST', { username: 'rev', password: 'Revoke-me-1', role: 'admin' })
    const t = tokens(await login(gh, 'rev', 'Revoke-me-1'))
    const ll = (await gh.admin('/api/v2/users/tokens', { method: 'POST', token: t.access, body: json({ access_token_timeout: '30d' }) })).json().data
    usedSecrets.add(ll.access_token)
    assert.equal(ll.expires_in, 30 * 86400)
    for (let i = 0; i < 3; i++) {
      assert.equal((await gh.request('/x', { token: t.access })).status, 200) // now cached
      assert.equal((await gh.request('/x', { token: ll.access_token })).status, 200)
    }
    assert.equal((await asAdmin('/api/v2/users/rev/revoke', 'DELETE')).status, 200)
    assert.equal((await gh.request('/x', { token: t.access })).status, 401)
    assert.equal((await gh.request('/x', { token: ll.access_token })).status, 401)
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: t.access })).status, 401, 'the admin listener too')
    assert.equal((await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: t.refresh }) })).status, 401)
    // Same second: a new login works.
    const again = tokens(await login(gh, 'rev', 'Revoke-me-1'))
    assert.equal((await gh.request('/x', { token: again.access })).status, 200)
  })

  it('a user deleted and created again under the same name does not inherit the old tokens', async () => {
    await asAdmin('/api/v2/users', 'POST', { username: 'again', password: 'Again-pass-1', role: 'admin' })
    const t = tokens(await login(gh, 'again', 'Again-pass-1'))
    const ll = (await gh.admin('/api/v2/users/tokens', { method: 'POST', token: t.access, body: json({ access_token_timeout: 'infinite' }) })).json().data
    usedSecrets.add(ll.access_token)
    assert.equal((await gh.request('/x', { token: ll.access_token })).status, 200) // now cached
    assert.equal((await asAdmin('/api/v2/users/again', 'DELETE')).status, 200)
    assert.equal((await asAdmin('/api/v2/users', 'POST', { username: 'again', password: 'Again-pass-1', role: 'admin' })).status, 201)
    assert.equal((await gh.request('/x', { token: ll.access_token })).status, 401, 'the deleted user’s long-lived token')
    assert.equal((await gh.request('/x', { token: t.access })).status, 401, 'the deleted user’s access token')
    assert.equal((await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: t.refresh }) })).status, 401, 'the deleted user’s refresh token')
    assert.equal((await gh.request('/x', { token: tokens(await login(gh, 'again', 'Again-pass-1')).access })).status, 200, 'the new user’s own tokens work')
  })

  it('an infinite long-lived token, and a password change that revokes earlier tokens', async () => {
    await asAdmin('/api/v2/users', 'POST', { username: 'pat', password: 'Pat-pass-001', role: 'regular' })
    const t = tokens(await login(gh, 'pat', 'Pat-pass-001'))
    const inf = (await gh.admin('/api/v2/users/tokens', { method: 'POST', token: t.access, body: json({ access_token_timeout: 'infinite' }) })).json().data
    usedSecrets.add(inf.access_token)
    assert.equal(inf.expires_in, null)
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: inf.access_token })).status, 200)
    const wrongOld = await gh.admin('/api/v2/users/password', { method: 'PUT', token: t.access, body: json({ old_password: 'Not-the-one-1', new_password: 'Pat-pass-002' }) })
    assert.equal(wrongOld.status, 401)
    const ok = await gh.admin('/api/v2/users/password', { method: 'PUT', token: t.access, body: json({ old_password: 'Pat-pass-001', new_password: 'Pat-pass-002' }) })
    assert.equal(ok.status, 200, ok.text)
    usedSecrets.add('Pat-pass-002')
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: t.access })).status, 401)
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: inf.access_token })).status, 401)
    assert.equal((await login(gh, 'pat', 'Pat-pass-001')).status, 401)
    assert.equal((await login(gh, 'pat', 'Pat-pass-002')).status, 200)
  })

  it('lockout: 5 wrong passwords lock; the right one is refused while locked (429 + Retry-After); unknown names alike; reset unlocks', async () => {
    await asAdmin('/api/v2/users', 'POST', { username: 'lock', password: 'Lock-pass-01', role: 'regular' })
    for (let i = 0; i < 5; i++) assert.equal((await login(gh, 'lock', 'Bad-pass-001')).status, 401)
    const locked = await login(gh, 'lock', 'Lock-pass-01')
    assert.equal(locked.status, 429)
    assert.equal(locked.json().reason, 'ERR_ACCOUNT_LOCKED')
    assert.match(String(locked.headers['retry-after']), /^\d+$/)
    assert.ok(Number(locked.headers['retry-after']) <= 120)
    for (let i = 0; i < 5; i++) await login(gh, 'ghost-user', 'Bad-pass-001')
    assert.equal((await login(gh, 'ghost-user', 'Bad-pass-001')).status, 429, 'an unknown name locks the same way')
    assert.equal((await asAdmin('/api/v2/lockoutPolicy', 'DELETE')).status, 200)
    assert.equal((await login(gh, 'lock', 'Lock-pass-01')).status, 200)
  })

  it('20 parallel wrong attempts never count past the limit', async () => {
    await asAdmin('/api/v2/users', 'POST', { username: 'par', password: 'Par-pass-001', role: 'regular' })
    const results = await Promise.all(Array.from({ length: 20 }, () => login(gh, 'par', 'Bad-pass-001')))
    const checked = results.filter((r) => r.status === 401).length
    assert.ok(checked <= 5, `${checked} wrong passwords were checked; the limit is 5`)
    assert.ok(results.every((r) => r.status === 401 || r.status === 429))
    assert.equal((await login(gh, 'par', 'Par-pass-001')).status, 429)
    const users = (await asAdmin('/api/v2/users')).json().data as { username: string; locked: boolean }[]
    assert.equal(users.find((u) => u.username === 'par')?.locked, true)
    await asAdmin('/api/v2/lockoutPolicy', 'DELETE')
  })

  it('lockout policy: set within Weka’s ranges, show, reset', async () => {
    assert.deepEqual((await asAdmin('/api/v2/lockoutPolicy', 'PUT', { failed_attempts: 3, lockout_duration: '5m' })).json().data, { failed_attempts: 3, lockout_duration: 300 })
    assert.deepEqual((await asAdmin('/api/v2/lockoutPolicy')).json().data, { failed_attempts: 3, lockout_duration: 300 })
    assert.equal((await asAdmin('/api/v2/lockoutPolicy', 'PUT', { failed_attempts: 1 })).status, 400)
    assert.equal((await asAdmin('/api/v2/lockoutPolicy', 'PUT', { failed_attempts: 51 })).status, 400)
    assert.equal((await asAdmin('/api/v2/lockoutPolicy', 'PUT', { lockout_duration: 10 })).status, 400)
    assert.equal((await asAdmin('/api/v2/lockoutPolicy', 'PUT', { lockout_duration: '61m' })).status, 400)
    assert.deepEqual((await asAdmin('/api/v2/lockoutPolicy', 'DELETE')).json().data, { failed_attempts: 5, lockout_duration: 120 })
  })

  it('login banner: readable without credentials; only admins change it', async () => {
    assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, { text: '', enabled: false })
    assert.equal((await asAdmin('/api/v2/security/banner', 'PUT', { text: 'Authorized use only.' })).status, 200)
    await asAdmin('/api/v2/security/banner/enable', 'POST')
    assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, { text: 'Authorized use only.', enabled: true })
    await asAdmin('/api/v2/security/banner/disable', 'POST')
    await asAdmin('/api/v2/security/banner', 'DELETE')
    assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, { text: '', enabled: false })
  })

  it('the admin API refuses API keys, OIDC-looking tokens and no token; errors are the JSON error', async () => {
    const none = await gh.admin('/api/v2/users')
    assert.equal(none.status, 401)
    assert.deepEqual(Object.keys(none.json()).sort(), ['code', 'message', 'reason', 'requestId'])
    assert.equal((await gh.admin('/api/v2/users', { token: 'some-api-key' })).status, 401)
    assert.equal((await gh.admin('/api/v2/nothing-here')).status, 404)
    assert.equal((await gh.admin('/api/v2/users/whoami', { method: 'POST', token: admin })).status, 405)
  })

  it('the local issuer’s keys are published', async () => {
    const jwks = (await gh.admin('/.well-known/jwks.json')).json()
    assert.equal(jwks.keys.length, 1)
    assert.equal(jwks.keys[0].alg, 'ES256')
    assert.equal(jwks.keys[0].d, undefined, 'no private part')
  })
})

describe('local users: the first admin must change admin/admin', () => {
  it('admin/admin logs in, may only change its password, then the new token works on the data listener', async () => {
    const up = await startUpstream()
    const gh = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true' } })
    try {
      const r = await login(gh, 'admin', 'admin')
      assert.equal(r.status, 200)
      assert.equal(r.json().data.password_change_required, true)
      const first = tokens(r).access
      assert.equal((await gh.request('/x', { token: first })).json().reason, 'ERR_PASSWORD_CHANGE_REQUIRED')
      assert.equal((await gh.admin('/api/v2/users', { token: first })).status, 403)
      assert.equal((await gh.admin('/api/v2/users/tokens', { method: 'POST', token: first, body: '{}' })).status, 403)
      const weak = await gh.admin('/api/v2/users/password', { method: 'PUT', token: first, body: json({ old_password: 'admin', new_password: 'admin' }) })
      assert.equal(weak.status, 400)
      usedSecrets.add('N3w-admin-pass')
      assert.equal((await gh.admin('/api/v2/users/password', { method: 'PUT', token: first, body: json({ old_password: 'admin', new_password: 'N3w-admin-pass' }) })).status, 200)
      const next = await login(gh, 'admin', 'N3w-admin-pass')
      assert.equal(next.json().data.password_change_required, undefined)
      up.reset()
      assert.equal((await gh.request('/x', { token: tokens(next).access })).status, 200)
      assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'admin')
      assert.equal((await login(gh, 'admin', 'admin')).status, 401)
      assertNoSecretsInLogs(gh.logs)
    } finally {
      await gh.stop()
      await up.close()
    }
  })
})
