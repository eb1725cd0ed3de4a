/**
 * HTTP/2 on the data listener (docs/http2.md): ALPN h2 next to HTTP/1.1 with TLS, prior-knowledge
 * h2c without; the same pipeline as HTTP/1.1 (authentication, header hygiene, JSON errors); no
 * pseudo-header ever reaches the upstream; and the HTTP/2 limits — concurrent streams, header
 * list size, rapid reset (CVE-2023-44487) — each with the upstream's view asserted.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'h2-secret-key-5d1c9a'
const KEY_ENV = {
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'h2-user',
}

describe('HTTP/2 over TLS (ALPN) on the data listener', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    up = await startUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: 'http2:\n  maxConcurrentStreams: 7\n' })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('ALPN offers h2 and http/1.1; a client that asks for h2 gets it', async () => {
    const u = new URL(p.url)
    for (const [offer, want] of [
      [['h2', 'http/1.1'], 'h2'],
      [['http/1.1'], 'http/1.1'],
    ] as const) {
      const proto = await new Promise<string | false | null>((resolve, reject) => {
        const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: p.ca, ALPNProtocols: [...offer], servername: 'localhost' }, () => {
          resolve(s.alpnProtocol)
          s.destroy()
        })
        s.on('error', reject)
      })
      assert.equal(proto, want)
    }
  })

  it('an h2 request goes through the pipeline to the HTTP/1.1 upstream with identity headers and no pseudo-headers', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    const r = await h2request(s, { ':path': '/v1/things?x=1', authorization: `Bearer ${KEY}`, 'x-forwarded-user': 'spoofed', 'x-request-id': 'h2-req-1' })
    await h2close(s)
    assert.equal(r.status, 200, r.text)
    assert.equal(r.headers['x-request-id'], 'h2-req-1')
    const seen = up.requests[0]
    assert.ok(seen !== undefined)
    assert.equal(seen.url, '/v1/things?x=1')
    assert.equal(seen.headers['x-forwarded-user'], 'h2-user', 'the client-sent copy is replaced')
    assert.equal(seen.headers['x-forwarded-host'], new URL(p.url).host, ':authority plays the role of Host')
    assert.equal(seen.headers['x-forwarded-proto'], 'https')
    assert.equal(seen.headers.authorization, undefined)
    for (let i = 0; i < seen.rawHeaders.length; i += 2) assert.ok(!(seen.rawHeaders[i] as string).startsWith(':'), `pseudo-header forwarded: ${seen.rawHeaders[i]}`)
  })

  it('HTTP/1.1 on the same port is unchanged', async () => {
    up.reset()
    const r = await p.request('/v1/plain', { token: KEY })
    assert.equal(r.status, 200)
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'h2-user')
  })

  it('a request body without content-length (DATA frames only) is streamed upstream', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    const body = Buffer.alloc(200_000, 0x62)
    const r = await h2request(s, { ':method': 'POST', ':path': '/v1/upload', authorization: `Bearer ${KEY}` }, body)
    await h2close(s)
    assert.equal(r.status, 200, r.text)
    assert.equal(up.requests[0]?.bodyBytes, body.length)
  })

  it('attack: no credential over h2 → 401 JSON error (SPEC §9), the upstream sees nothing', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    const r = await h2request(s, { ':method': 'DELETE', ':path': '/v1/things/1' })
    const bad = await h2request(s, { ':path': '/v1/things', authorization: 'Bearer wrong-key-000000' })
    await h2close(s)
    assert.equal(r.status, 401)
    assert.equal(r.headers['content-type'], 'application/json')
    assert.equal(r.headers['cache-control'], 'no-store')
    assert.equal(r.json().reason, 'ERR_UNAUTHENTICATED')
    assert.match(String(r.headers['www-authenticate']), /^Bearer realm="gatehouse"/)
    assert.equal(bad.status, 401)
    assert.equal(bad.json().reason, 'ERR_INVALID_API_KEY')
    assert.equal(up.requests.length, 0)
  })

  it('limit: SETTINGS_MAX_CONCURRENT_STREAMS is advertised from http2.maxConcurrentStreams', async () => {
    const s = await h2connect(p.url, p.ca)
    if (s.remoteSettings.maxConcurrentStreams === undefined || s.remoteSettings.maxConcurrentStreams > 7) await new Promise((r) => s.once('remoteSettings', r))
    assert.equal(s.remoteSettings.maxConcurrentStreams, 7)
    assert.equal(s.remoteSettings.enablePush, false)
    await h2close(s)
  })

  it('limit: no more than http2.maxConcurrentStreams requests of one connection are in flight at the upstream', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    if (s.remoteSettings.maxConcurrentStreams !== 7) await new Promise((r) => s.once('remoteSettings', r))
    const held = Array.from({ length: 9 }, () => {
      const req = s.request({ ':path': '/hang', authorization: `Bearer ${KEY}` })
      req.on('error', () => {})
      return req
    })
    await new Promise((r) => setTimeout(r, 500))
    assert.equal(up.requests.length, 7, 'streams beyond the limit wait (nghttp2 refuses them with REFUSED_STREAM if sent)')
    for (const r of held) r.close(http2.constants.NGHTTP2_CANCEL)
    s.destroy()
    // (the two queued streams may still be sent and reset: let them settle before the next test)
    await new Promise((r) => setTimeout(r, 300))
  })

  it('limit: a header list larger than http2.maxHeaderListSize is refused before the pipeline; the upstream sees nothing', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    // Sent at once, before the client has acknowledged the server's SETTINGS: Node's own limit is
    // not in force yet, gatehouse's check answers 431.
    const early = await h2request(s, { ':path': '/v1/big', authorization: `Bearer ${KEY}`, 'x-big': 'a'.repeat(20 * 1024) })
    if (s.remoteSettings.maxHeaderListSize !== 16 * 1024) await new Promise((r) => s.once('remoteSettings', r))
    // Once it is known, clients and Node refuse such a list themselves (a stream error, no response).
    const late = await h2request(s, { ':path': '/v1/big', authorization: `Bearer ${KEY}`, 'x-big': 'a'.repeat(20 * 1024) }).catch(() => ({ status: 0, rstCode: -1 }))
    const ok = await h2request(s, { ':path': '/v1/small', authorization: `Bearer ${KEY}`, 'x-big': 'a'.repeat(8 * 1024) })
    s.destroy()
    assert.equal(early.status, 431)
    assert.equal(early.json().reason, 'ERR_HEADERS_TOO_LARGE')
    assert.ok(late.status === 431 || late.rstCode === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, `got ${late.status} / ${late.rstCode}`)
    assert.equal(ok.status, 200)
    assert.deepEqual(up.requests.map((q) => q.url), ['/v1/small'])
  })
})

describe('HTTP/2 without TLS: prior-knowledge h2c next to HTTP/1.1', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    up = await startUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_TLS_ENABLED: 'false' } })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('an h2c connection (preface sniffed) and an HTTP/1.1 connection share the port', async () => {
    up.reset()
    const s = await h2connect(p.url)
    const r = await h2request(s, { ':path': '/v1/h2c', authorization: `Bearer ${KEY}` })
    await h2close(s)
    assert.equal(r.status, 200, r.text)
    const h1 = await p.request('/v1/h1', { token: KEY })
    assert.equal(h1.status, 200)
    assert.deepEqual(
      up.requests.map((q) => [q.url, q.headers['x-forwarded-user'], q.headers['x-forwarded-proto']]),
      [
        ['/v1/h2c', 'h2-user', 'http'],
        ['/v1/h1', 'h2-user', 'http'],
      ],
    )
  })

  it('attack: h2c without a credential → 401 JSON, the upstream sees nothing', async () => {
    up.reset()
    const s = await h2connect(p.url)
    const r = await h2request(s, { ':method': 'POST', ':path': '/v1/objects' }, '{}')
    await h2close(s)
    assert.equal(r.status, 401)
    assert.equal(r.json().reason, 'ERR_UNAUTHENTICATED')
    assert.equal(up.requests.length, 0)
  })
})

describe('HTTP/2 rapid reset (CVE-2023-44487)', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    up = await startUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: 'http2:\n  maxResets: 50\n  resetWindow: 10s\n', logLevel: 'info' })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('HEADERS + RST_STREAM in a loop: the session is closed with GOAWAY ENHANCE_YOUR_CALM and the upstream sees a bounded number of requests', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    let goawayCode: number | undefined
    s.on('goaway', (code: number) => {
      goawayCode = code
    })
    const closed = new Promise<void>((r) => s.once('close', () => r()))
    const deadline = Date.now() + 5_000
    let sent = 0
    // Bounded: at most 5000 streams or 5 s.
    while (!s.closed && !s.destroyed && sent < 5_000 && Date.now() < deadline) {
      try {
        const req = s.request({ ':path': '/hang', authorization: `Bearer ${KEY}` })
        req.on('error', () => {})
        req.close(http2.constants.NGHTTP2_CANCEL)
        sent++
      } catch {
        break
      }
      // A timer (not setImmediate) so this process also reads what the server sends back.
      if (sent % 20 === 0) await new Promise((r) => setTimeout(r, 1))
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))])
    assert.ok(s.closed || s.destroyed, `the session is still open after ${sent} resets`)
    assert.equal(goawayCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
    assert.ok(sent < 5_000, `the flood was not stopped (${sent} streams sent)`)
    // Some requests may have been forwarded before their reset arrived; never more than the budget.
    await new Promise((r) => setTimeout(r, 200))
    // (admitted before their reset arrived: at most the reset budget plus one window of streams)
    assert.ok(up.requests.length <= 50 + 100, `the upstream saw ${up.requests.length} requests`)
    assert.ok(p.logs.some((l) => l.includes('rapid reset')))
    // The listener still serves new connections.
    const s2 = await h2connect(p.url, p.ca)
    const r = await h2request(s2, { ':path': '/v1/after', authorization: `Bearer ${KEY}` })
    await h2close(s2)
    assert.equal(r.status, 200)
  })
})

describe('HTTP/2 lifecycle: idle sessions and the drain', () => {
  let slow: http.Server
  let p: TestProxy

  before(async () => {
    // Answers after 600 ms: long enough to be in flight when the drain starts.
    slow = http.createServer((_req, res) => setTimeout(() => res.end('late but whole'), 600))
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
    p = await startProxy({
      env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: `http://127.0.0.1:${(slow.address() as AddressInfo).port}`, GATEHOUSE_TLS_ENABLED: 'false' },
      yaml: 'http2:\n  idleTimeout: 500ms\n',
    })
  })
  after(async () => {
    await p.stop()
    await new Promise<void>((r) => slow.close(() => r()))
  })

  it('an idle h2 connection is closed with GOAWAY after http2.idleTimeout', { timeout: 5000 }, async () => {
    const s = await h2connect(p.url)
    const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)))
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
    const t0 = Date.now()
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR)
    await closed
    const ms = Date.now() - t0
    assert.ok(ms >= 400 && ms < 3000, `closed after ${ms} ms`)
  })

  it('a stream in flight when the drain starts finishes whole; the session gets GOAWAY', { timeout: 8000 }, async () => {
    const s = await h2connect(p.url)
    const goaway = new Promise<void>((resolve) => s.once('goaway', () => resolve()))
    const reply = h2request(s, { ':path': '/v1/slow', authorization: `Bearer ${KEY}` })
    await new Promise((r) => setTimeout(r, 150))
    const stopping = p.server.stop(5000)
    await goaway
    const r = await reply
    assert.equal(r.status, 200)
    assert.equal(r.text, 'late but whole')
    await stopping
    s.destroy()
  })
})
