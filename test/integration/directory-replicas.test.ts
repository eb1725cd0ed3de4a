/**
 * Directory users on several replicas (SPEC §11 + §12): two gatehouse servers on one Redis and
 * one real slapd. A directory user's token from A works on B, B's refresh re-checks the
 * directory, `revoke-tokens` through B ends A's token, the lockout counts across replicas, and
 * `user ldap disable` through A stops directory sign-ins on B (settings live in the store).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'
import { PEOPLE, startSlapd, type RunningSlapd } from '../helpers/slapd.ts'

const ADMIN_PW = 'Dir-replica-admin-1'

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 3000): Promise<void> {
  const t0 = Date.now()
  while (!(await fn())) {
    if (Date.now() - t0 > ms) assert.fail(`${what} did not happen within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('directory users on two replicas sharing Redis', { timeout: 120_000 }, () => {
  let redis: RunningRedis
  let ldap: RunningSlapd
  let A: TestProxy
  let B: TestProxy
  let adminToken: string

  const login = (p: TestProxy, username: string, password: string): Promise<Reply> => p.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
  const tokens = (r: Reply): { access: string; refresh: string } => {
    assert.equal(r.status, 200, r.text)
    const d = r.json().data
    usedSecrets.add(d.access_token).add(d.refresh_token)
    return { access: d.access_token, refresh: d.refresh_token }
  }

  before(async () => {
    ldap = await startSlapd()
    for (const s of [ADMIN_PW, ldap.readerPassword, ldap.rootPassword, ...Object.values(PEOPLE)]) usedSecrets.add(s)
    redis = await startRedis()
    const yaml = `authentication:
  local:
    enabled: true
    lockout: { failedAttempts: 3, lockoutDuration: 30s }
  ldap:
    enabled: true
    urls: [${ldap.ldapsUrl}]
    bindDn: ${ldap.readerDn}
    userBaseDn: ou=people,${ldap.baseDn}
    groupBaseDn: ou=groups,${ldap.baseDn}
    roleGroups: { admin: gh-admins, regular: gh-users, readonly: gh-readonly }
    caFile: ${ldap.caFile}
`
    const env = { GATEHOUSE_STORE_URL: redis.url, GATEHOUSE_LDAP_BIND_PASSWORD: ldap.readerPassword }
    A = await startProxy({ env: { ...env, GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, yaml, logLevel: 'debug' })
    B = await startProxy({ env, yaml, logLevel: 'debug' })
    adminToken = tokens(await login(A, 'admin', ADMIN_PW)).access
  })
  after(async () => {
    await A?.stop()
    await B?.stop()
    await redis?.close()
    await ldap?.close()
    for (const p of [A, B]) if (p !== undefined) assertNoSecretsInLogs(p.logs)
  })

  it('a directory token from A works on B; B refreshes it after asking the directory; revoke through B ends it on A', async () => {
    const t = tokens(await login(A, 'alice', PEOPLE.alice))
    const r = await B.request('/v1/x', { token: t.access })
    assert.equal(r.status, 200, r.text)
    assert.equal(r.json().headers['x-forwarded-user'], 'alice')
    const next = tokens(await B.admin('/api/v2/login/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: t.refresh }) }))
    assert.equal((await A.request('/v1/x', { token: next.access })).status, 200)
    assert.equal((await B.admin('/api/v2/users/alice/revoke', { method: 'DELETE', token: adminToken })).status, 200)
    await waitFor('the revocation on A', async () => (await A.request('/v1/x', { token: next.access })).status === 401)
  })

  it('wrong passwords for a directory name lock it on both replicas', async () => {
    assert.equal((await login(A, 'carol', 'Wrong-pass-1')).status, 401)
    assert.equal((await login(B, 'carol', 'Wrong-pass-2')).status, 401)
    assert.equal((await login(A, 'carol', 'Wrong-pass-3')).status, 401)
    assert.equal((await login(B, 'carol', PEOPLE.carol)).status, 429)
  })

  it('user ldap disable through A stops directory sign-ins on B; enable brings them back', async () => {
    assert.equal((await A.admin('/api/v2/ldap/disable', { method: 'POST', token: adminToken })).status, 200)
    await waitFor('the disabled directory on B', async () => (await login(B, 'bob', PEOPLE.bob)).status === 401)
    const shown = await B.admin('/api/v2/ldap', { token: adminToken })
    assert.equal(shown.json().data.enabled, false)
    assert.ok(!shown.text.includes(ldap.readerPassword))
    assert.equal((await A.admin('/api/v2/ldap/enable', { method: 'POST', token: adminToken })).status, 200)
    await waitFor('the enabled directory on B', async () => (await login(B, 'bob', PEOPLE.bob)).status === 200)
  })
})
