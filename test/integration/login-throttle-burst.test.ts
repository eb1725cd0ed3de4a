/**
 * The login throttle holds against a parallel burst (review finding F1): an address's attempts
 * are reserved when they arrive, before the slow password hash, so a burst of 100 sprayed names
 * sent all at once from one address gets exactly `maxFailures` answers (401) and 429 for the
 * rest — never 100 × 401 — and the right password that arrives once the limit is used up (by
 * failures or by attempts still hashing) is refused with 429, not confirmed with 200.
 *
 * In-process gatehouse on real sockets; the sprayer is 127.0.0.2 (its own source address), the
 * honest client 127.0.0.3. The class itself is checked with a mocked clock below.
 */
import assert from 'node:assert/strict'
import * as https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { FailureThrottle } from '../../src/auth/throttle.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'

const ADMIN_PW = 'Adm1n-burst-pw'
const SPRAYED = 'Spring2026!'
const MAX = 30 // loginThrottle.maxFailures default

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: { reason?: string; data?: { access_token: string; refresh_token: string } }
}

const tally = (xs: readonly Answer[]): Record<number, number> => xs.reduce((m: Record<number, number>, a) => ((m[a.status] = (m[a.status] ?? 0) + 1), m), {})

describe('login throttle against a parallel burst from one address', () => {
  let gh: TestProxy

  before(async () => {
    usedSecrets.add(ADMIN_PW).add(SPRAYED)
    gh = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: 'echo:', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, logLevel: 'info' })
  })
  after(async () => {
    await gh.stop()
    assertNoSecretsInLogs(gh.logs, [SPRAYED, ADMIN_PW])
  })

  /** POST /api/v2/login from a given local source address, on its own connection. */
  function login(from: string, username: string, password: string): Promise<Answer> {
    const u = new URL(gh.adminUrl as string)
    const body = JSON.stringify({ username, password })
    return new Promise((resolve, reject) => {
      const req = https.request({ host: u.hostname, port: u.port, path: '/api/v2/login', method: 'POST', localAddress: from, ca: gh.ca, servername: 'localhost', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
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

  it('100 sprayed names at once: exactly maxFailures 401s, the rest 429; the right password sent once the limit is used up is 429, never 200', async () => {
    const burst = Array.from({ length: 100 }, (_, i) => login('127.0.0.2', `burst-user-${i}`, SPRAYED))
    // The first 429 of the burst proves the address's limit is used up: from then on every
    // reservation is taken, by failures or by attempts still hashing (the old check-on-arrival
    // let everything through until 30 hashes had finished).
    const firstRefusal = new Promise<boolean>((resolve) => {
      for (const p of burst) void p.then((a) => a.status === 429 && resolve(true), () => {})
      void Promise.allSettled(burst).then(() => resolve(false))
    })
    const refusedDuringBurst = await firstRefusal
    const right = await login('127.0.0.2', 'admin', ADMIN_PW)
    const answers = await Promise.all(burst)
    const t = tally(answers)
    assert.equal(t[401], MAX, `burst answers ${JSON.stringify(t)}`)
    assert.equal(t[429], 100 - MAX, `burst answers ${JSON.stringify(t)}`)
    assert.ok(refusedDuringBurst)
    for (const a of answers) {
      if (a.status !== 429) continue
      assert.equal(a.json.reason, 'ERR_TOO_MANY_FAILURES')
      assert.ok(Number(a.headers['retry-after']) >= 1, 'a refusal says when to retry')
    }
    assert.equal(right.status, 429, `the right password after the limit: ${JSON.stringify(right.json)}`)
    assert.equal(right.json.reason, 'ERR_TOO_MANY_FAILURES')
    assert.equal(right.json.data, undefined, 'no token')
  })

  it('once the burst has settled the address is blocked for blockDuration, the right password included', async () => {
    const r = await login('127.0.0.2', 'admin', ADMIN_PW)
    assert.equal(r.status, 429)
    assert.equal(r.json.data, undefined)
    const retry = Number(r.headers['retry-after'])
    assert.ok(retry > 200 && retry <= 300, `Retry-After ${retry} (blockDuration 5m)`)
  })

  it('the reviewer’s burst (the right password last in the same burst) gets at most maxFailures answers in all', async () => {
    const answers = await Promise.all([...Array.from({ length: 100 }, (_, i) => login('127.0.0.4', `burst2-user-${i}`, SPRAYED)), login('127.0.0.4', 'admin', ADMIN_PW)])
    const t = tally(answers)
    assert.deepEqual(Object.keys(t).filter((s) => !['200', '401', '429'].includes(s)), [], JSON.stringify(t))
    // A right password can only be answered as one of the first maxFailures attempts, as it could sequentially.
    assert.ok((t[401] ?? 0) + (t[200] ?? 0) <= MAX, `burst answers ${JSON.stringify(t)}`)
    assert.ok((t[429] ?? 0) >= 101 - MAX, `burst answers ${JSON.stringify(t)}`)
  })

  it('another address still logs in, and admin is not locked', async () => {
    const r = await login('127.0.0.3', 'admin', ADMIN_PW)
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.equal(typeof r.json.data?.access_token, 'string')
  })

  it('the block is audited once per address', () => {
    const lines = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'login.address_blocked')
    assert.equal(lines.filter((l) => l.client === '127.0.0.2').length, 1)
  })
})

describe('FailureThrottle reserve/settle (mocked clock)', () => {
  let now = 1_000_000
  const t = (): FailureThrottle => new FailureThrottle({ maxFailures: 3, windowMs: 60_000, blockMs: 120_000, maxAddresses: 100, now: () => now })
  const refused = (f: () => void): string | undefined => {
    try {
      f()
      return undefined
    } catch (e) {
      return (e as { code?: string }).code
    }
  }

  it('at most maxFailures attempts in flight; the next is 429 before any of them settles', () => {
    const th = t()
    for (let i = 0; i < 3; i++) th.reserve('a')
    assert.equal(refused(() => th.reserve('a')), 'ERR_TOO_MANY_FAILURES')
    assert.equal(refused(() => th.reserve('b')), undefined, 'another address is not affected')
  })

  it('a success releases its slot uncounted; a failure keeps it counted; the last failure blocks', () => {
    const th = t()
    th.reserve('a')
    th.reserve('a')
    th.reserve('a')
    assert.equal(th.settle('a', false), false)
    th.reserve('a') // the success's slot is free again
    assert.equal(th.settle('a', true), false)
    assert.equal(th.settle('a', true), false)
    assert.equal(refused(() => th.reserve('a')), 'ERR_TOO_MANY_FAILURES', '2 failures + 1 in flight')
    assert.equal(th.settle('a', true), true, 'the third failure blocks the address')
    assert.equal(th.blocked('a')?.headers?.['retry-after'], '120')
  })

  it('failures of an earlier window do not count; the block ends after blockDuration', () => {
    const th = t()
    th.reserve('a')
    th.settle('a', true)
    th.reserve('a')
    th.settle('a', true)
    now += 60_000
    for (let i = 0; i < 3; i++) th.reserve('a')
    for (let i = 0; i < 3; i++) th.settle('a', true)
    assert.equal(refused(() => th.reserve('a')), 'ERR_TOO_MANY_FAILURES')
    now += 120_000
    assert.equal(refused(() => th.reserve('a')), undefined)
  })
})
