/**
 * `GET /metrics` (docs/metrics.md) on a real gatehouse in front of a recording upstream: known
 * traffic, then a scrape with exact counter values; histogram counts equal the requests; the
 * bearer protection; bounded label cardinality; metrics off means 404; and with `workers: 2`
 * through the real binary, any worker's /metrics is the sum over both.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { upgradeStatus } from '../helpers/upgrade.ts'

const READER = 'reader-key-0123456789abcdef'
const WRITER = 'writer-key-0123456789abcdef'
const ADMIN_PW = 'Metr1cs-admin-pw'
const SCRAPE = 'scrape-token-0123456789abcdef'
for (const s of [READER, WRITER, ADMIN_PW, SCRAPE]) usedSecrets.add(s)

/** Parsed samples of a Prometheus text: `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

/** The value of one series; labels in the order gatehouse writes them. */
function value(m: Map<string, number>, series: string): number | undefined {
  return m.get(series)
}

/** Sum of every series of a metric whose labels include all of `match`. */
function sum(m: Map<string, number>, name: string, match: Record<string, string> = {}): number {
  let n = 0
  for (const [k, v] of m) {
    const brace = k.indexOf('{')
    if ((brace < 0 ? k : k.slice(0, brace)) !== name) continue
    if (Object.entries(match).every(([l, x]) => k.includes(`${l}="${x}"`))) n += v
  }
  return n
}

const req = (auth: string, extra = ''): string => `gatehouse_requests_total{protocol="http1",status_class="${extra}",auth_method="${auth}"`

describe('/metrics after known traffic', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  let scrape: Map<string, number>

  const login = (username: string, password: string): Promise<Reply> => gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })

  before(async () => {
    up = await startUpstream()
    gh = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${READER},${WRITER}`,
        AUTHENTICATION_APIKEY_USERS: 'reader-svc,writer-svc',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'writer-svc',
        AUTHORIZATION_ADMINLIST_GROUPS: 'admin',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'reader-svc',
        GATEHOUSE_LOCAL_ENABLED: 'true',
        GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW,
      },
      yaml: 'authentication:\n  local:\n    lockout:\n      failedAttempts: 3\n',
    })
    // 3 good API-key reads, 2 wrong keys, 1 anonymous refused, 1 forbidden write
    for (let i = 0; i < 3; i++) assert.equal((await gh.request('/v1/objects', { token: READER })).status, 200)
    for (let i = 0; i < 2; i++) assert.equal((await gh.request('/v1/objects', { token: `wrong-key-${i}-0123456789abcdef` })).status, 401)
    assert.equal((await gh.request('/v1/objects')).status, 401)
    assert.equal((await gh.request('/v1/objects', { method: 'POST', token: READER, body: '{}' })).status, 403)
    // logins: one success, one wrong password, three wrong for another name (the third locks
    // it), then one more for the locked name
    const ok = await login('admin', ADMIN_PW)
    assert.equal(ok.status, 200, ok.text)
    const access = ok.json().data.access_token as string
    usedSecrets.add(access).add(ok.json().data.refresh_token as string)
    assert.equal((await login('admin', 'Wrong-pw-1')).status, 401)
    for (let i = 0; i < 3; i++) assert.equal((await login('mallory', `Wrong-pw-${i}`)).status, 401)
    assert.equal((await login('mallory', 'Wrong-pw-x')).status, 429)
    // a local token twice (verified, then from the cache), a revocation, then the same token
    // (the cached entry fails its revocation check: a miss, then 401)
    assert.equal((await gh.request('/v1/objects', { token: access })).status, 200)
    assert.equal((await gh.request('/v1/objects', { token: access })).status, 200)
    assert.equal((await gh.admin('/api/v2/users/admin/revoke', { method: 'DELETE', token: access })).status, 200)
    assert.equal((await gh.request('/v1/objects', { token: access })).status, 401)
    const r = await gh.admin('/metrics')
    assert.equal(r.status, 200, r.text)
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/)
    scrape = parse(r.text)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('counts requests by status class, auth method, decision and profile, exactly', () => {
    const tail = 'profile="weaviate"}'
    assert.equal(value(scrape, `${req('apikey', '2xx')},decision="allowed",${tail}`), 3)
    assert.equal(value(scrape, `${req('apikey', '4xx')},decision="forbidden",${tail}`), 1)
    assert.equal(value(scrape, `${req('local', '2xx')},decision="allowed",${tail}`), 2)
    // 2 wrong keys, 1 without a credential, 1 revoked local token: no principal
    assert.equal(value(scrape, `${req('none', '4xx')},decision="unauthenticated",${tail}`), 4)
    assert.equal(sum(scrape, 'gatehouse_requests_total'), 10)
  })

  it('counts authentication failures by reason code', () => {
    assert.equal(value(scrape, 'gatehouse_auth_failures_total{reason="ERR_INVALID_API_KEY"}'), 2)
    assert.equal(value(scrape, 'gatehouse_auth_failures_total{reason="ERR_UNAUTHENTICATED"}'), 1)
    assert.equal(value(scrape, 'gatehouse_auth_failures_total{reason="ERR_INVALID_TOKEN"}'), 1)
    assert.equal(sum(scrape, 'gatehouse_auth_failures_total'), 4)
  })

  it('histogram counts equal the requests; the upstream histogram counts the forwarded ones', () => {
    assert.equal(value(scrape, 'gatehouse_request_duration_seconds_count{protocol="http1"}'), 10)
    assert.equal(value(scrape, 'gatehouse_request_duration_seconds_bucket{le="+Inf",protocol="http1"}') ?? value(scrape, 'gatehouse_request_duration_seconds_bucket{protocol="http1",le="+Inf"}'), 10)
    assert.equal(value(scrape, 'gatehouse_upstream_duration_seconds_count{protocol="http1"}'), 5)
    assert.ok((value(scrape, 'gatehouse_request_duration_seconds_sum{protocol="http1"}') as number) > 0)
  })

  it('counts logins by outcome, the lockout and the revocation', () => {
    assert.equal(value(scrape, 'gatehouse_logins_total{via="api",outcome="success"}'), 1)
    assert.equal(value(scrape, 'gatehouse_logins_total{via="api",outcome="wrong_password"}'), 4)
    assert.equal(value(scrape, 'gatehouse_logins_total{via="api",outcome="locked"}'), 1)
    assert.equal(value(scrape, 'gatehouse_lockouts_total'), 1)
    assert.equal(value(scrape, 'gatehouse_revocations_total{cause="revoke"}'), 1)
    assert.equal(value(scrape, 'gatehouse_audit_events_total{event="account.locked",outcome="success"}'), 1)
  })

  it('counts token-cache hits and misses, and no throttle blocks', () => {
    assert.equal(value(scrape, 'gatehouse_token_cache_hits_total'), 1)
    // first sight of the token, and the cached entry that failed its revocation check
    assert.equal(value(scrape, 'gatehouse_token_cache_misses_total'), 2)
    assert.equal(value(scrape, 'gatehouse_throttle_blocks_total{throttle="credentials"}'), 0)
    assert.equal(value(scrape, 'gatehouse_throttle_refusals_total{throttle="credentials"}'), 0)
  })

  it('times store operations by name and backend', () => {
    // every login reserves an attempt first, the refused one too
    assert.equal(value(scrape, 'gatehouse_store_operations_total{operation="reserveAttempt",backend="file"}'), 6)
    assert.equal(value(scrape, 'gatehouse_store_operations_total{operation="bumpGeneration",backend="file"}'), 1)
    assert.equal(value(scrape, 'gatehouse_store_operation_duration_seconds_count{operation="reserveAttempt",backend="file"}'), 6)
  })

  it('has the gauges and the process metrics', () => {
    assert.ok((value(scrape, 'gatehouse_open_connections{listener="admin"}') as number) >= 1)
    assert.notEqual(value(scrape, 'gatehouse_open_connections{listener="data"}'), undefined)
    assert.equal(value(scrape, 'gatehouse_open_h2_streams'), 0)
    assert.equal(value(scrape, 'gatehouse_processes'), 1)
    assert.ok(sum(scrape, 'process_cpu_seconds_total') > 0)
    assert.ok(sum(scrape, 'nodejs_heap_size_used_bytes') > 0)
  })

  it('1000 requests to distinct paths add no series, and no label carries a path or user', async () => {
    const series = (m: Map<string, number>): string[] => [...m.keys()].filter((k) => k.startsWith('gatehouse_')).sort()
    const before = series(scrape)
    const agent = new Agent({ connections: 16, connect: { ca: gh.ca } })
    try {
      const paths = Array.from({ length: 1000 }, (_, i) => `/v1/objects/Thing-${i}-${Math.random().toString(36).slice(2)}`)
      for (let i = 0; i < paths.length; i += 50) {
        await Promise.all(paths.slice(i, i + 50).map(async (p) => {
          const res = await request(`${gh.url}${p}`, { headers: { authorization: `Bearer ${READER}` }, dispatcher: agent })
          await res.body.dump()
          assert.equal(res.statusCode, 200)
        }))
      }
    } finally {
      await agent.close()
    }
    const text = (await gh.admin('/metrics')).text
    const afterScrape = parse(text)
    assert.deepEqual(series(afterScrape), before)
    assert.equal(value(afterScrape, `${req('apikey', '2xx')},decision="allowed",profile="weaviate"}`), 1003)
    for (const secret of ['Thing-', 'reader-svc', 'mallory', READER]) assert.ok(!text.includes(secret), secret)
  })
})

describe('/metrics by protocol: HTTP/2, gRPC, WebSocket', () => {
  let gh: TestProxy
  before(async () => {
    gh = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: 'echo:', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: READER, AUTHENTICATION_APIKEY_USERS: 'reader-svc' } })
  })
  after(async () => {
    await gh.stop()
    assertNoSecretsInLogs(gh.logs)
  })

  it('counts each protocol under its own label, refused calls included', async () => {
    const s = await h2connect(gh.url, gh.ca)
    try {
      for (let i = 0; i < 2; i++) assert.equal((await h2request(s, { ':path': '/v1/objects', authorization: `Bearer ${READER}` })).status, 200)
      assert.equal((await h2request(s, { ':path': '/v1/objects' })).status, 401)
      const call = await h2request(s, { ':method': 'POST', ':path': '/pkg.Svc/Method', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.alloc(5))
      assert.equal(call.headers['grpc-status'], '16')
    } finally {
      await h2close(s)
    }
    assert.equal(await upgradeStatus({ url: gh.url, ca: gh.ca }, '/v1/stream', { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }), 401)
    const m = parse((await gh.admin('/metrics')).text)
    const at = (protocol: string, sc: string, auth: string, decision: string): number | undefined => value(m, `gatehouse_requests_total{protocol="${protocol}",status_class="${sc}",auth_method="${auth}",decision="${decision}",profile="generic"}`)
    assert.equal(at('h2', '2xx', 'apikey', 'allowed'), 2)
    assert.equal(at('h2', '4xx', 'none', 'unauthenticated'), 1)
    assert.equal(at('grpc', '4xx', 'none', 'unauthenticated'), 1)
    assert.equal(at('websocket', '4xx', 'none', 'unauthenticated'), 1)
    assert.equal(sum(m, 'gatehouse_requests_total'), 5)
    assert.equal(value(m, 'gatehouse_request_duration_seconds_count{protocol="h2"}'), 3)
    assert.equal(value(m, 'gatehouse_auth_failures_total{reason="ERR_UNAUTHENTICATED"}'), 3)
    assert.equal(value(m, 'gatehouse_open_h2_streams'), 0)
  })
})

describe('/metrics protection and switch', () => {
  let gh: TestProxy
  let off: TestProxy
  before(async () => {
    gh = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: 'echo:', GATEHOUSE_METRICS_BEARER_TOKEN: SCRAPE } })
    off = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: 'echo:', GATEHOUSE_METRICS_ENABLED: 'false' } })
  })
  after(async () => {
    await gh.stop()
    await off.stop()
    assertNoSecretsInLogs([...gh.logs, ...off.logs])
  })

  it('401 without the token and with a wrong one, 200 with it', async () => {
    const none = await gh.admin('/metrics')
    assert.equal(none.status, 401)
    assert.match(String(none.headers['www-authenticate']), /^Bearer realm="gatehouse"/)
    assert.equal(none.json().reason, 'ERR_UNAUTHENTICATED')
    const wrong = await gh.admin('/metrics', { token: `${SCRAPE}x` })
    assert.equal(wrong.status, 401)
    assert.equal(wrong.json().reason, 'ERR_INVALID_TOKEN')
    const ok = await gh.admin('/metrics', { token: SCRAPE })
    assert.equal(ok.status, 200)
    assert.match(ok.text, /^# HELP /m)
    assert.ok(!ok.text.includes(SCRAPE))
  })

  it('metrics.enabled: false answers 404 and serves on', async () => {
    const r = await off.admin('/metrics')
    assert.equal(r.status, 404)
    assert.match(r.json().message, /metrics\.enabled/)
    assert.equal((await off.request('/anything')).status, 200)
  })
})

describe('/metrics with workers: 2 (the real binary)', () => {
  let up: RecordingUpstream
  let gh: ServeProcess
  let dir: string
  // No keep-alive: every request is a new connection, so the cluster spreads them over both workers.
  const fresh = new Agent({ pipelining: 0, keepAliveTimeout: 1 })

  before(async () => {
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-metrics-workers-'))
    gh = await startServe({ GATEHOUSE_WORKERS: '2', GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_UPSTREAM_URL: up.url, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: READER, AUTHENTICATION_APIKEY_USERS: 'reader-svc' }, { cwd: dir })
    for (let i = 0; i < 100 && gh.stdout.filter((l) => l.includes('"gatehouse is ready"')).length < 2; i++) await new Promise((r) => setTimeout(r, 50))
  })
  after(async () => {
    await fresh.close()
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    await up.close()
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
    rmSync(dir, { recursive: true, force: true })
  })

  it('any worker answers the sum of both workers’ requests', async () => {
    const N = 40
    for (let i = 0; i < N; i++) {
      const r = await request(`${gh.dataUrl}/v1/objects`, { headers: { authorization: `Bearer ${READER}` }, dispatcher: fresh })
      await r.body.dump()
      assert.equal(r.statusCode, 200)
    }
    // Each scrape is answered by whichever worker the connection reached: always the sum.
    for (let i = 0; i < 4; i++) {
      const r = await request(`${gh.adminUrl}/metrics`, { dispatcher: fresh })
      assert.equal(r.statusCode, 200)
      const m = parse(await r.body.text())
      assert.equal(value(m, 'gatehouse_processes'), 2)
      assert.equal(sum(m, 'gatehouse_requests_total'), N)
      assert.equal(value(m, 'gatehouse_request_duration_seconds_count{protocol="http1"}'), N)
    }
  })
})
