/**
 * Login spraying (issue 13): one password tried across many user names from one address is
 * throttled per client address (authentication.local.loginThrottle), which the per-account
 * lockout cannot see. In-process gatehouse on real sockets; clients come from distinct loopback
 * source addresses (127.0.0.2, …) so that "another address" is a real peer address.
 *
 * The data listener trusts all of 127.0.0.0/8 as proxies, yet the admin listener keys on the
 * peer alone (review finding F2): `trustedProxies` describes what sits in front of the data
 * listener, so a peer in that range must not get a fresh throttle key (or audit client) per
 * login by rotating X-Forwarded-For.
 */
import assert from 'node:assert/strict'
import * as https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Adm1n-spray-pw'
const SPRAYED = 'Spring2026!'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: { reason?: string; message?: string; data?: { access_token: string; refresh_token: string } }
}

describe('login throttle per client address (password spraying)', () => {
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    usedSecrets.add(ADMIN_PW).add(SPRAYED)
    up = await startUpstream()
    gh = await startProxy({
      env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW },
      // Defaults (30 failures / 5 min, 5 min block); every loopback peer is a trusted proxy of the data listener.
      yaml: 'trustedProxies: [127.0.0.0/8]\n',
    })
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
    assertNoSecretsInLogs(gh.logs)
  })

  /** POST /api/v2/login from a given local source address. */
  function login(from: string, username: string, password: string, headers: Record<string, string> = {}): Promise<Answer> {
    const u = new URL(gh.adminUrl as string)
    const body = JSON.stringify({ username, password })
    return new Promise((resolve, reject) => {
      const req = https.request({ host: u.hostname, port: u.port, path: '/api/v2/login', method: 'POST', localAddress: from, ca: gh.ca, servername: 'localhost', agent: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString('utf8')))
        res.on('end', () => {
          const json = JSON.parse(text) as Answer['json']
          if (json.data !== undefined) usedSecrets.add(json.data.access_token).add(json.data.refresh_token)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json })
        })
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  it('30 distinct names (unknown ones and a real one) with one password → 401 each; the 31st attempt is 429 with Retry-After', async () => {
    for (let i = 0; i < 30; i++) {
      const name = i === 7 ? 'admin' : `sprayed-user-${i}`
      const r = await login('127.0.0.2', name, SPRAYED)
      assert.equal(r.status, 401, `attempt ${i + 1}: ${JSON.stringify(r.json)}`)
      assert.equal(r.json.reason, 'ERR_LOGIN_FAILED')
    }
    const r = await login('127.0.0.2', 'sprayed-user-31', SPRAYED)
    assert.equal(r.status, 429)
    assert.equal(r.json.reason, 'ERR_TOO_MANY_FAILURES')
    const retry = Number(r.headers['retry-after'])
    assert.ok(retry > 200 && retry <= 300, `Retry-After ${retry} (blockDuration 5m)`)
  })

  it('the right password from the blocked address is refused too (a sprayed success is not confirmed), without a token', async () => {
    const r = await login('127.0.0.2', 'admin', ADMIN_PW)
    assert.equal(r.status, 429)
    assert.equal(r.json.reason, 'ERR_TOO_MANY_FAILURES')
    assert.equal(r.json.data, undefined)
  })

  it('a forged X-Forwarded-For does not escape the block', async () => {
    const r = await login('127.0.0.2', 'admin', ADMIN_PW, { 'x-forwarded-for': '198.51.100.77' })
    assert.equal(r.status, 429)
  })

  it('another address still logs in, and admin is not locked (each name failed at most once)', async () => {
    const r = await login('127.0.0.3', 'admin', ADMIN_PW)
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.equal(typeof r.json.data?.access_token, 'string')
  })

  it('the admin listener keys on the peer: 60 sprayed logins from a peer in trustedProxies, each naming a new X-Forwarded-For, are 429 after the limit', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 60; i++) statuses.push((await login('127.0.0.9', `rotating-xff-${i}`, SPRAYED, { 'x-forwarded-for': `203.0.113.${i + 1}` })).status)
    assert.deepEqual(statuses, [...Array<number>(30).fill(401), ...Array<number>(30).fill(429)])
    const r = await login('127.0.0.9', 'admin', ADMIN_PW, { 'x-forwarded-for': '203.0.113.200' })
    assert.equal(r.status, 429, 'the right password behind a fresh X-Forwarded-For is refused too')
    assert.equal(r.json.data, undefined)
  })

  it('another peer address still logs in', async () => {
    assert.equal((await login('127.0.0.10', 'admin', ADMIN_PW, { 'x-forwarded-for': '203.0.113.1' })).status, 200)
  })

  it('the block is logged once as an audit line with the client address, never the password', () => {
    const lines = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'login.address_blocked')
    // The peers, never an address they named in X-Forwarded-For.
    assert.deepEqual(lines.map((l) => l.client).sort(), ['127.0.0.2', '127.0.0.9'])
    for (const l of lines) assert.equal(l.outcome, 'success')
    const access = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request' && l.reason === 'ERR_TOO_MANY_FAILURES')
    assert.ok(access.length >= 3)
    for (const l of access) assert.match(String(l.client), /^(127\.0\.0\.2|127\.0\.0\.9)$/)
    const logins = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request' && l.path === '/api/v2/login')
    assert.ok(logins.length > 60)
    for (const l of logins) assert.match(String(l.client), /^127\./, 'no forged client in the access log')
    assertNoSecretsInLogs(gh.logs, [SPRAYED, ADMIN_PW])
  })
})
