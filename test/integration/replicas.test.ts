/**
 * Several replicas on one shared store (SPEC §11, docs/replicas.md): three gatehouse servers,
 * each with its own state directory and its own connections, on one real redis-server (Debian's,
 * append-only with fsync per write so that a killed server keeps what it acknowledged).
 *
 * - a local token issued by A works on B and C (one signing key, created once in the store);
 * - revoke-tokens through A refuses the token on B and C within a second, also after B cached it;
 * - five wrong passwords spread over the replicas lock the account everywhere;
 * - refresh-token reuse on C revokes the family issued on A and refreshed on B;
 * - a console session signed in on A works on B, and revoke-tokens through C ends it on both;
 * - `security tls set` on A is what B presents within seconds;
 * - with the store killed: API keys still work, logins get 503 ERR_STORE_UNAVAILABLE, local tokens
 *   get 503 once the staleness bound is over; after the restart everything works again;
 * - an emptied store (FLUSHALL) never hands out admin/admin, nor any first admin without
 *   GATEHOUSE_ADMIN_PASSWORD.
 */
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'

const ADMIN_PW = 'Replica-admin-1'
const BOB_PW = 'Bob-password-1'
const CAROL_PW = 'Carol-password-1'
const API_KEY = 'replica-api-key-0123456789'
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function peerFingerprint(url: string): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    // Only the presented certificate matters here, not trust.
    const s = tls.connect({ host: u.hostname, port: Number(u.port), servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? ''
      s.end()
      resolve(fp)
    })
    s.once('error', reject)
  })
}

interface Res {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** A request to a replica's admin listener (its console) on a fresh TLS connection, trusting its own certificate. */
function https(p: TestProxy, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Res> {
  const base = p.adminUrl as string
  return new Promise((resolve, reject) => {
    const r = httpsRequest(`${base}${path}`, {
      method,
      ca: p.ca,
      agent: false,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)), 'sec-fetch-site': 'same-origin', origin: new URL(base).origin }), ...headers },
    }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    r.on('error', reject)
    r.end(body)
  })
}

function cookieValue(res: Res, name: string): string | undefined {
  for (const c of res.headers['set-cookie'] ?? []) if (c.startsWith(`${name}=`)) return c.slice(name.length + 1).split(';')[0]
  return undefined
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

describe('several replicas on one Redis', () => {
  let redis: RunningRedis
  const replicas: TestProxy[] = []
  let A: TestProxy, B: TestProxy, C: TestProxy
  let adminToken: string

  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    GATEHOUSE_STORE_URL: redis.url,
    GATEHOUSE_LOCAL_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY,
    AUTHENTICATION_APIKEY_USERS: 'svc',
    ...extra,
  })
  const start = async (extra: Record<string, string> = {}): Promise<TestProxy> => {
    const p = await startProxy({ env: env(extra), logLevel: 'debug' })
    replicas.push(p)
    return p
  }
  const login = (p: TestProxy, username: string, password: string): Promise<Reply> => p.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
  const tokenOf = async (p: TestProxy, username: string, password: string): Promise<{ access: string; refresh: string }> => {
    const r = await login(p, username, password)
    assert.equal(r.status, 200, r.text)
    const d = r.json().data
    usedSecrets.add(d.access_token)
    usedSecrets.add(d.refresh_token)
    return { access: d.access_token, refresh: d.refresh_token }
  }

  before(async () => {
    for (const s of [ADMIN_PW, BOB_PW, CAROL_PW, API_KEY]) usedSecrets.add(s)
    redis = await startRedis({ persist: true })
    // Only A is given the first admin's password; B and C start on the same store without it.
    A = await start({ GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW })
    B = await start()
    C = await start()
    adminToken = (await tokenOf(A, 'admin', ADMIN_PW)).access
    for (const [u, pw] of [['bob', BOB_PW], ['carol', CAROL_PW]]) {
      const r = await A.admin('/api/v2/users', { method: 'POST', token: adminToken, body: JSON.stringify({ username: u, password: pw, role: 'regular' }) })
      assert.equal(r.status, 201, r.text)
    }
  })

  after(async () => {
    for (const p of replicas) await p.stop()
    await redis?.close()
    for (const p of replicas) assertNoSecretsInLogs(p.logs)
  })

  it('a local token issued by A works on B and C; every replica serves the same JWKS', async () => {
    const { access } = await tokenOf(A, 'bob', BOB_PW)
    for (const p of [A, B, C]) {
      const r = await p.request('/v1/things', { token: access })
      assert.equal(r.status, 200, r.text)
      assert.equal(r.json().headers['x-forwarded-user'], 'bob')
    }
    const keys = await Promise.all([A, B, C].map(async (p) => (await p.admin('/.well-known/jwks.json')).text))
    assert.equal(new Set(keys).size, 1)
    // B logs in too, and its token works on A: no replica holds a key of its own.
    const fromB = await tokenOf(B, 'bob', BOB_PW)
    assert.equal((await A.request('/v1/x', { token: fromB.access })).status, 200)
  })

  it('revoke-tokens through A refuses the token on B and C within one second, also once B cached it', async () => {
    const { access } = await tokenOf(C, 'bob', BOB_PW)
    for (let i = 0; i < 3; i++) assert.equal((await B.request('/v1/x', { token: access })).status, 200) // cached on B now
    assert.equal((await C.request('/v1/x', { token: access })).status, 200)
    const r = await A.admin('/api/v2/users/bob/revoke', { method: 'DELETE', token: adminToken })
    assert.equal(r.status, 200, r.text)
    const tookB = await within(1000, async () => (await B.request('/v1/x', { token: access })).status === 401, 'refusal on B')
    const tookC = await within(1000, async () => (await C.request('/v1/x', { token: access })).status === 401, 'refusal on C')
    assert.ok(tookB < 1000 && tookC < 1000)
    // A token issued after the revocation works everywhere at once.
    const fresh = await tokenOf(A, 'bob', BOB_PW)
    assert.equal((await B.request('/v1/x', { token: fresh.access })).status, 200)
  })

  it('five wrong passwords spread over the three replicas lock the account on all of them', async () => {
    const order = [A, B, C, A, B]
    for (const p of order) assert.equal((await login(p, 'carol', 'Wrong-password-9')).status, 401)
    for (const p of [A, B, C]) {
      const r = await login(p, 'carol', CAROL_PW)
      assert.equal(r.status, 429, `the right password is refused while locked (${r.text})`)
      assert.ok(Number(r.headers['retry-after']) > 0)
    }
  })

  it('parallel wrong passwords over the replicas never get more than failedAttempts answers', async () => {
    const r = await A.admin('/api/v2/users', { method: 'POST', token: adminToken, body: JSON.stringify({ username: 'dora', password: 'Dora-password-1', role: 'regular' }) })
    assert.equal(r.status, 201, r.text)
    const statuses = await Promise.all(Array.from({ length: 15 }, (_, i) => login([A, B, C][i % 3] as TestProxy, 'dora', 'Wrong-password-9').then((x) => x.status)))
    assert.equal(statuses.filter((s) => s === 401).length, 5, `statuses: ${statuses.join(',')}`)
    assert.equal(statuses.filter((s) => s === 429).length, 10)
  })

  it('refresh-token reuse on C revokes the family issued on A (and its access tokens on every replica)', async () => {
    const first = await tokenOf(A, 'bob', BOB_PW)
    const r1 = await B.admin('/api/v2/login/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: first.refresh }) })
    assert.equal(r1.status, 200, r1.text)
    const second = r1.json().data as { access_token: string; refresh_token: string }
    usedSecrets.add(second.access_token)
    usedSecrets.add(second.refresh_token)
    assert.equal((await A.request('/v1/x', { token: second.access_token })).status, 200)
    const reuse = await C.admin('/api/v2/login/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: first.refresh }) })
    assert.equal(reuse.status, 401, 'a spent refresh token is refused')
    const again = await A.admin('/api/v2/login/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: second.refresh_token }) })
    assert.equal(again.status, 401, 'the rotated token of the same family is revoked too')
    await within(1000, async () => (await A.request('/v1/x', { token: second.access_token })).status === 401, 'the family’s cached access token refused on A')
    assert.equal((await B.request('/v1/x', { token: second.access_token })).status, 401)
  })

  it('a console session signed in on A works on B; revoke-tokens through C ends it on both', async () => {
    const page = await https(A, 'GET', '/ui/login')
    const flow = cookieValue(page, '__Host-gatehouse-console-login') as string
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1] as string
    const signIn = await https(A, 'POST', '/ui/login', new URLSearchParams({ _csrf: csrf, username: 'bob', password: BOB_PW }).toString(), { cookie: `__Host-gatehouse-console-login=${flow}` })
    assert.equal(signIn.status, 303, signIn.body.slice(0, 300))
    const session = cookieValue(signIn, '__Host-gatehouse-console') as string
    assert.ok(session !== undefined && session !== '')
    usedSecrets.add(session)
    for (const p of [A, B]) {
      const st = await https(p, 'GET', '/ui/status', undefined, { cookie: `__Host-gatehouse-console=${session}` })
      assert.equal(st.status, 200, `the session works on ${p === A ? 'A' : 'B'}`)
    }
    assert.equal((await C.admin('/api/v2/users/bob/revoke', { method: 'DELETE', token: adminToken })).status, 200)
    for (const p of [A, B]) {
      const st = await https(p, 'GET', '/ui/status', undefined, { cookie: `__Host-gatehouse-console=${session}` })
      assert.equal(st.headers.location, '/ui/login?m=ended', 'the session ended everywhere')
    }
  })

  it('security tls set on A: B presents the new certificate within seconds', async () => {
    const pair = generateSelfSignedCertificate({ commonName: 'set on replica A' })
    const before = await peerFingerprint(B.url)
    const set = await A.admin('/api/v2/tls', { method: 'POST', token: adminToken, body: JSON.stringify({ certificate: pair.certPem, private_key: pair.keyPem }) })
    assert.equal(set.status, 200, set.text)
    const want = await peerFingerprint(A.url)
    assert.notEqual(want, before)
    await within(5000, async () => (await peerFingerprint(B.url)) === want && (await peerFingerprint(C.adminUrl as string)) === want, 'B and C presenting the certificate set on A')
  })

  it('store killed: API keys work, logins get 503, local tokens get 503 past the staleness bound; restarted: all works again', async () => {
    const { access } = await tokenOf(B, 'bob', BOB_PW)
    assert.equal((await B.request('/v1/x', { token: access })).status, 200) // cached on B
    await redis.stop()
    try {
      const key = await B.request('/v1/x', { token: API_KEY })
      assert.equal(key.status, 200, 'API keys need no store')
      const l = await login(B, 'bob', BOB_PW)
      assert.equal(l.status, 503, l.text)
      assert.equal(l.json().reason, 'ERR_STORE_UNAVAILABLE')
      await sleep(1300) // past store.maxStaleness (1 s)
      const t = await B.request('/v1/x', { token: access })
      assert.equal(t.status, 503, `a local token is not honoured on a stale mirror (${t.text})`)
      assert.equal(t.json().reason, 'ERR_STORE_UNAVAILABLE')
      assert.equal((await A.request('/v1/x', { token: API_KEY })).status, 200)
      const ready = await B.admin('/readyz')
      assert.equal(ready.status, 200, 'readiness stays up: every replica lost the same store (docs/replicas.md)')
      const store = ready.json().checks.store as { kind: string; url: string; connected: boolean; fresh: boolean }
      assert.equal(store.kind, 'redis')
      assert.equal(store.connected, false, '/readyz names the unreachable store')
      assert.equal(store.fresh, false)
    } finally {
      await redis.restart()
    }
    await within(5000, async () => (await B.request('/v1/x', { token: access })).status === 200, 'the local token honoured again')
    // Each replica reconnects on its own backoff (up to 2 s): C may come back after B.
    await within(5000, async () => (await login(C, 'bob', BOB_PW)).status === 200, 'a login on C works again')
    await within(5000, async () => (await B.admin('/readyz')).json().checks.store.connected === true, '/readyz shows the store connected again')
  })

  it('an emptied store (FLUSHALL) never hands out admin/admin, nor any first admin without GATEHOUSE_ADMIN_PASSWORD', async () => {
    await redis.command('FLUSHALL')
    const D = await start() // a replica starting on the empty store, as after a Redis replacement
    for (const pw of ['admin', ADMIN_PW]) assert.equal((await login(D, 'admin', pw)).status, 401)
    await sleep(300)
    // (Four failed attempts in all: the lockout counts them across replicas too, and five would lock.)
    for (const p of [A, C]) assert.equal((await login(p, 'admin', 'admin')).status, 401)
    assert.ok(D.logs.some((l) => l.includes('no first admin is created there without GATEHOUSE_ADMIN_PASSWORD')), 'the log says what to do')
    assert.ok(!D.logs.some((l) => l.includes('created the first local user')))
    // The explicit signal bootstraps: a replica given the password creates the admin (once).
    const E = await start({ GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW })
    assert.equal((await login(E, 'admin', ADMIN_PW)).status, 200)
    assert.equal((await login(D, 'admin', ADMIN_PW)).status, 200, 'on every replica')
  })
})
