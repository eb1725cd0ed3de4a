/**
 * Issue 13, the server edge: request lines llhttp lets through (repeated spaces, versions other
 * than HTTP/1.0 and 1.1), head overflows answered 414 only when the request line itself is too
 * long whatever the packet boundaries, and slow request bodies (a minimum receive rate).
 *
 * Real gatehouse in-process (TLS off so the bytes on the wire are the test's), a real recording
 * upstream, raw node:net clients. Every refusal asserts the status with the JSON error of SPEC §9,
 * that gatehouse closed the connection, and what the upstream received (nothing).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { performance } from 'node:perf_hooks'
import { after, before, describe, it } from 'node:test'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { h2connect, h2request } from '../helpers/h2.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { assertJsonError, assertUpstreamSawNothing, connect, responses, sleep, type Conn } from '../helpers/rawClient.ts'
import { startSlowReader, startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'edge-second-round-key-7f3a91'
const AUTH = `Authorization: Bearer ${KEY}\r\n`
const H = `Host: gatehouse.test\r\n${AUTH}`

const ENV = (up: RecordingUpstream, extra: Record<string, string> = {}): Record<string, string> => ({
  GATEHOUSE_UPSTREAM_URL: up.url,
  GATEHOUSE_TLS_ENABLED: 'false',
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'edge-user',
  ...extra,
})

// --- a raw client -------------------------------------------------------------------------------

/**
 * Write `bytes` in pieces of `size` bytes, waiting for each write to be flushed and pausing
 * every `pauseEvery` pieces so that they arrive as separate packets; stops once the server
 * closed or answered.
 */
async function writeInPieces(c: Conn, bytes: string, size: number, pauseEvery = 1): Promise<void> {
  for (let i = 0, n = 0; i < bytes.length; i += size, n++) {
    if (c.closedAt() !== undefined || c.text() !== '') return
    await new Promise<void>((r) => c.socket.write(bytes.slice(i, i + size), 'latin1', () => r()))
    if (n % pauseEvery === 0) await sleep(1)
  }
}

/** Send `bytes` (whole, or split as `split` says), collect the answer until gatehouse closes. */
async function send(p: TestProxy, bytes: string, split?: (c: Conn) => Promise<void>): Promise<{ text: string; closed: boolean }> {
  const c = await connect(p.url, { noDelay: true })
  if (split === undefined) c.socket.write(bytes, 'latin1')
  else await split(c)
  const at = await c.closed(5000)
  c.socket.destroy()
  return { text: c.text(), closed: at !== undefined }
}

async function assertRefused(p: TestProxy, up: RecordingUpstream, bytes: string, status: number, reason: string, split?: (c: Conn) => Promise<void>): Promise<void> {
  up.reset()
  const w = await send(p, bytes, split)
  const rs = responses(w.text)
  assert.equal(rs.length, 1, `expected one response, got ${JSON.stringify(w.text.slice(0, 300))}`)
  assertJsonError(rs[0], status, reason)
  assert.ok(w.closed, 'gatehouse kept the connection open')
  await assertUpstreamSawNothing(up)
}

// ------------------------------------------------------------------------------------------------

// Both ways a cleartext HTTP/1.1 connection reaches Node's parser: behind the h2c preface check
// (HTTP/2 on, the default: the first bytes are read in JavaScript) and directly (HTTP/2 off).
for (const h2 of [true, false]) {
  describe(`request line (HTTP/2 ${h2 ? 'on: behind the h2c preface check' : 'off'})`, () => {
    let up: RecordingUpstream
    let px: TestProxy

    before(async () => {
      usedSecrets.add(KEY)
      up = await startUpstream()
      px = await startProxy({ env: ENV(up, { GATEHOUSE_HTTP2_ENABLED: String(h2) }) })
    })
    after(async () => {
      await px?.stop()
      await up?.close()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    it('positive control: a well-formed request line is forwarded (200)', async () => {
      up.reset()
      const w = await send(px, `GET /ok HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)
      assert.equal(responses(w.text)[0]?.status, 200, w.text.slice(0, 200))
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/ok'],
      )
    })

    it('positive control: HTTP/1.0 is forwarded (200)', async () => {
      up.reset()
      const w = await send(px, `GET /ten HTTP/1.0\r\n${H}\r\n`)
      assert.equal(responses(w.text)[0]?.status, 200, w.text.slice(0, 200))
      assert.equal(up.requests.length, 1)
    })

    const bad: [string, string][] = [
      ['two spaces after the method (GET  / HTTP/1.1)', `GET  /two HTTP/1.1\r\n${H}\r\n`],
      ['two spaces before the version (GET /  HTTP/1.1)', `GET /two  HTTP/1.1\r\n${H}\r\n`],
      ['spaces doubled on both sides', `POST  /two  HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`],
      ['HTTP/2.0 in an HTTP/1.x request line', `GET /v HTTP/2.0\r\n${H}\r\n`],
      ['HTTP/0.9 in a request line', `GET /v HTTP/0.9\r\n${H}\r\n`],
    ]
    for (const [name, bytes] of bad) {
      it(`${name} → 400 ERR_BAD_REQUEST, closed, nothing upstream`, async () => {
        await assertRefused(px, up, bytes, 400, 'ERR_BAD_REQUEST')
      })
    }

    it('two spaces split across packets (1 byte per write) → 400, nothing upstream', async () => {
      const bytes = `GET  /split HTTP/1.1\r\n${H}\r\n`
      await assertRefused(px, up, bytes, 400, 'ERR_BAD_REQUEST', (c) => writeInPieces(c, bytes, 1))
    })

    it('two spaces before the version, split across packets (7 bytes per write) → 400, nothing upstream', async () => {
      const bytes = `GET /split-${'s'.repeat(40)}  HTTP/1.1\r\n${H}\r\n`
      await assertRefused(px, up, bytes, 400, 'ERR_BAD_REQUEST', (c) => writeInPieces(c, bytes, 7))
    })

    it('a second request on a kept-alive connection with two spaces → the first 200, the second 400 and closed; only the first upstream', async () => {
      up.reset()
      const c = await connect(px.url, { noDelay: true })
      c.socket.write(`GET /first HTTP/1.1\r\n${H}\r\n`)
      assert.ok(await c.until((t) => responses(t).length === 1, 3000))
      c.socket.write(`GET  /second HTTP/1.1\r\n${H}\r\n`)
      const at = await c.closed(3000)
      c.socket.destroy()
      const rs = responses(c.text())
      assert.equal(rs[0]?.status, 200)
      assertJsonError(rs[1], 400, 'ERR_BAD_REQUEST')
      assert.ok(at !== undefined, 'closed after the 400')
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/first'],
      )
    })

    it('pipelined in one packet: GET /a, then GET  /b, then GET /c → 200, 400, nothing more; only /a upstream', async () => {
      up.reset()
      const w = await send(px, `GET /a HTTP/1.1\r\n${H}\r\nGET  /b HTTP/1.1\r\n${H}\r\nGET /c HTTP/1.1\r\n${H}\r\n`)
      const rs = responses(w.text)
      assert.equal(rs[0]?.status, 200)
      assertJsonError(rs[1], 400, 'ERR_BAD_REQUEST')
      assert.equal(rs.length, 2, 'nothing answered after the 400')
      assert.ok(w.closed)
      await sleep(100)
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/a'],
      )
    })

    it('pipelined after a bodyless request: a spaced second line is still seen (one packet) → 200, 400', async () => {
      up.reset()
      const w = await send(px, `GET /a HTTP/1.1\r\n${H}\r\nGET /b  HTTP/1.1\r\n${H}\r\n`)
      const rs = responses(w.text)
      assert.equal(rs[0]?.status, 200)
      assertJsonError(rs[1], 400, 'ERR_BAD_REQUEST')
      await sleep(100)
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/a'],
      )
    })

    it('a WebSocket upgrade with HTTP/2.0 in its request line → 400, closed, nothing upstream', async () => {
      await assertRefused(px, up, `GET /ws HTTP/2.0\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 400, 'ERR_BAD_REQUEST')
    })

    if (h2) {
      it('the h2c prior-knowledge preface (PRI * HTTP/2.0) still opens HTTP/2: 200 through the upstream', async () => {
        up.reset()
        const s = await h2connect(px.url)
        try {
          const r = await h2request(s, { ':path': '/over-h2c', authorization: `Bearer ${KEY}` })
          assert.equal(r.status, 200, r.text)
        } finally {
          s.close()
        }
        assert.deepEqual(
          up.requests.map((r) => r.url),
          ['/over-h2c'],
        )
      })
    }
  })

  describe(`head overflow: 414 only for a long request line, whatever the packets (HTTP/2 ${h2 ? 'on' : 'off'})`, () => {
    let up: RecordingUpstream
    let px: TestProxy

    before(async () => {
      up = await startUpstream()
      // Defaults: maxHeaderBytes 16 KiB, maxUrlBytes 8 KiB (the parser overflows past 24 KiB).
      px = await startProxy({ env: ENV(up, { GATEHOUSE_HTTP2_ENABLED: String(h2) }), logLevel: 'debug' })
    })
    after(async () => {
      await px?.stop()
      await up?.close()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    const bigAuth = `GET /big-auth HTTP/1.1\r\nHost: gatehouse.test\r\nAuthorization: Bearer ${'A'.repeat(64 * 1024)}\r\n\r\n`
    const bigCookie = `GET /big-cookie HTTP/1.1\r\n${H}Cookie: session=${'c'.repeat(100 * 1024)}\r\n\r\n`
    const longTarget = `GET /${'t'.repeat(30 * 1024)} HTTP/1.1\r\n${H}\r\n`
    const splits: [string, ((c: Conn, b: string) => Promise<void>) | undefined][] = [
      ['sent whole', undefined],
      ['1 byte per write for the first 300 bytes, then 1000', async (c, b) => {
        await writeInPieces(c, b.slice(0, 300), 1)
        await writeInPieces(c, b.slice(300), 1000)
      }],
      ['7 bytes per write', (c, b) => writeInPieces(c, b, 7, 16)],
      ['1000 bytes per write', (c, b) => writeInPieces(c, b, 1000)],
    ]
    for (const [how, split] of splits) {
      const fn = split === undefined ? undefined : (b: string) => (c: Conn) => split(c, b)
      it(`a 64 KiB Authorization header, ${how} → 431 ERR_HEADERS_TOO_LARGE, nothing upstream`, async () => {
        await assertRefused(px, up, bigAuth, 431, 'ERR_HEADERS_TOO_LARGE', fn?.(bigAuth))
      })
      it(`a 100 KiB Cookie header, ${how} → 431 ERR_HEADERS_TOO_LARGE, nothing upstream`, async () => {
        await assertRefused(px, up, bigCookie, 431, 'ERR_HEADERS_TOO_LARGE', fn?.(bigCookie))
      })
      it(`a 30 KiB request target, ${how} → 414 ERR_URL_TOO_LONG, nothing upstream`, async () => {
        await assertRefused(px, up, longTarget, 414, 'ERR_URL_TOO_LONG', fn?.(longTarget))
      })
    }

    it('a long target on the second request of a kept-alive connection, in 1000-byte writes → 200 then 414', async () => {
      up.reset()
      const c = await connect(px.url, { noDelay: true })
      c.socket.write(`GET /first HTTP/1.1\r\n${H}\r\n`)
      assert.ok(await c.until((t) => responses(t).length === 1, 3000))
      await writeInPieces(
        {
          ...c,
          text: () => (responses(c.text()).length > 1 ? 'answered' : ''),
        },
        longTarget,
        1000,
      )
      await c.closed(5000)
      c.socket.destroy()
      const rs = responses(c.text())
      assert.equal(rs[0]?.status, 200)
      assertJsonError(rs[1], 414, 'ERR_URL_TOO_LONG')
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/first'],
      )
    })

    it('a big header after a request pipelined in the same packet, in 1000-byte writes → 200 then 431', async () => {
      up.reset()
      const c = await connect(px.url, { noDelay: true })
      const bytes = `GET /first HTTP/1.1\r\n${H}\r\n${bigAuth}`
      await writeInPieces(
        {
          ...c,
          text: () => (responses(c.text()).length > 1 ? 'answered' : ''),
        },
        bytes,
        1000,
      )
      await c.closed(5000)
      c.socket.destroy()
      const rs = responses(c.text())
      assert.equal(rs[0]?.status, 200)
      assertJsonError(rs[1], 431, 'ERR_HEADERS_TOO_LARGE')
      assert.deepEqual(
        up.requests.map((r) => r.url),
        ['/first'],
      )
    })
  })
}

// --- slow bodies: a minimum receive rate -----------------------------------------------------------

describe('(listen.timeouts.minBodyRate) a body that drips below the rate is cut; a slow steady one passes', () => {
  let up: RecordingUpstream
  let px: TestProxy
  const RATE_YAML = 'listen:\n  timeouts:\n    minBodyRate: 1000\n    bodyRateWindow: 1s\n    bodyRateGrace: 500ms\n'

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    // The idle timeout stays at its default (30 s): only the rate can end these drips.
    px = await startProxy({ env: ENV(up), yaml: RATE_YAML })
  })
  after(async () => {
    await px?.stop()
    await up?.close()
    assertNoSecretsInLogs(px?.logs ?? [])
  })

  const drips: [string, string, string][] = [
    ['Content-Length', '/drip', 'Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n'],
    ['chunked', '/drip-chunked', 'Transfer-Encoding: chunked\r\n\r\n'],
  ]
  for (const [framing, target, rest] of drips) {
    it(`a 1 byte / 400 ms drip (${framing}) → 408 ERR_REQUEST_TIMEOUT within ~1.5 s, connection closed, the upstream request aborted`, async () => {
      up.reset()
      const c = await connect(px.url, { noDelay: true })
      c.socket.write(`POST ${target} HTTP/1.1\r\n${H}${rest}`)
      const t0 = performance.now()
      const tick = setInterval(() => {
        if (c.closedAt() === undefined) c.socket.write(framing === 'chunked' ? '1\r\nd\r\n' : 'd')
      }, 400)
      try {
        const at = await c.closed(6000)
        assert.ok(at !== undefined, 'the drip was still connected 6 s later')
        const ms = at - t0
        assert.ok(ms >= 1000 && ms < 4000, `cut after ${Math.round(ms)} ms`)
      } finally {
        clearInterval(tick)
        c.socket.destroy()
      }
      assertJsonError(responses(c.text())[0], 408, 'ERR_REQUEST_TIMEOUT')
      const settled = async (): Promise<boolean> => {
        for (let i = 0; i < 100 && !up.requests.every((r) => r.aborted); i++) await sleep(20)
        return up.requests.every((r) => r.aborted)
      }
      assert.ok(await settled(), `upstream: ${JSON.stringify(up.requests.map((r) => ({ complete: r.complete, aborted: r.aborted })))}`)
      for (const r of up.requests) assert.equal(r.complete, false, 'the upstream received a complete request')
      assert.ok(px.logs.some((l) => l.includes('"ERR_REQUEST_TIMEOUT"')), 'the access line names the reason')
    })
  }

  it('a steady slow upload above the rate (about 2000 bytes/s for 3 s) → 200 with the whole body at the upstream', async () => {
    up.reset()
    const c = await connect(px.url, { noDelay: true })
    const TOTAL = 6000
    c.socket.write(`POST /steady HTTP/1.1\r\n${H}Content-Type: application/octet-stream\r\nContent-Length: ${TOTAL}\r\nConnection: close\r\n\r\n`)
    for (let sent = 0; sent < TOTAL; sent += 200) {
      c.socket.write('s'.repeat(200))
      await sleep(100)
    }
    await c.closed(5000)
    c.socket.destroy()
    assert.equal(responses(c.text())[0]?.status, 200, c.text().slice(0, 300))
    assert.equal(up.requests.length, 1)
    assert.equal(up.requests[0]?.bodyBytes, TOTAL)
    assert.equal(up.requests[0]?.complete, true)
  })

  it('HTTP/2 (h2c): a dripping stream gets 408 and only that stream ends; another stream on the same connection still answers 200', async () => {
    up.reset()
    const s = await h2connect(px.url)
    try {
      const req = s.request({ ':method': 'POST', ':path': '/h2-drip', authorization: `Bearer ${KEY}`, 'content-type': 'application/octet-stream' })
      req.on('error', () => {})
      let status = 0
      let body = ''
      req.on('response', (h) => (status = Number(h[':status'])))
      req.on('data', (d: Buffer) => (body += d.toString('utf8')))
      const t0 = performance.now()
      const tick = setInterval(() => {
        if (!req.closed && !req.destroyed) req.write('d')
      }, 400)
      const closed = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 6000)
        req.once('close', () => {
          clearTimeout(t)
          resolve(true)
        })
      })
      clearInterval(tick)
      assert.ok(closed, `the dripping stream was still open 6 s later (status ${status}, ${body}, ${req.closed}, ${req.rstCode})`)
      const ms = performance.now() - t0
      assert.ok(ms >= 1000 && ms < 4000, `cut after ${Math.round(ms)} ms`)
      assert.equal(status, 408, body)
      assert.equal((JSON.parse(body) as { reason: string }).reason, 'ERR_REQUEST_TIMEOUT')
      assert.equal(s.closed || s.destroyed, false, 'the connection survived')
      const r = await h2request(s, { ':path': '/h2-after', authorization: `Bearer ${KEY}` })
      assert.equal(r.status, 200)
    } finally {
      s.close()
    }
    await sleep(100)
    const drip = up.requests.find((r) => r.url === '/h2-drip')
    if (drip !== undefined) assert.equal(drip.complete, false, 'the dripped body never completed upstream')
  })
})

describe('(listen.timeouts.minBodyRate) blames only the client: upstream backpressure is not a slow body', () => {
  it('an upstream that stops reading for 2.5 s does not turn an 8 MiB upload into a 408 (rate 1000 bytes/s, window 500 ms, grace 200 ms)', async () => {
    const slowReader = await startSlowReader(2500)
    const gh = await startProxy({ yaml: `tls:\n  enabled: false\nlisten:\n  timeouts:\n    minBodyRate: 1000\n    bodyRateWindow: 500ms\n    bodyRateGrace: 200ms\nupstream:\n  url: ${slowReader.url}\n` })
    try {
      const SIZE = 8 * 1024 * 1024
      const r = await gh.request('/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(SIZE, 7) })
      assert.equal(r.status, 200, r.text)
      assert.equal(slowReader.received(), SIZE)
    } finally {
      await gh.stop()
      await slowReader.close()
    }
  })
})

// --- the start-up log and /readyz ------------------------------------------------------------------

describe('start-up log (real binary): "gatehouse is ready" only once /readyz answers 200', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let dir: string
  let gh: ServeProcess
  const API_KEY = 'edge-ready-apikey-4c8e21'

  const get = async (url: string, headers: Record<string, string> = {}): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent: false, headers }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      req.on('error', reject)
    })
  const lines = (): { level: string; msg: string; [k: string]: unknown }[] =>
    gh.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; msg: string })

  before(async () => {
    usedSecrets.add(API_KEY)
    issuer = await startIssuer()
    issuer.faults.down = true
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-edge-ready-'))
    gh = await startServe(
      {
        GATEHOUSE_TLS_ENABLED: 'false',
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
        AUTHENTICATION_OIDC_ENABLED: 'true',
        AUTHENTICATION_OIDC_ISSUER: issuer.url,
        AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
        AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY,
        AUTHENTICATION_APIKEY_USERS: 'ready-user',
      },
      { cwd: dir, until: 'listening' },
    )
  })
  after(async () => {
    if (gh?.child.exitCode === null) gh.child.kill('SIGTERM')
    await gh?.exited
    await up?.close()
    await issuer?.stop()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...(gh?.stdout ?? []), ...(gh?.stderr ?? [])])
  })

  it('issuer down: "listening" with the listeners, a warning naming the issuer, no "ready" while /readyz is 503; "ready" once the keys arrive and /readyz is 200', async () => {
    const listening = lines().find((l) => l.msg === 'gatehouse is listening')
    assert.ok(listening !== undefined)
    assert.equal(listening.data, gh.dataUrl)
    assert.equal(listening.admin, gh.adminUrl)
    // The warning comes right after the listening line.
    for (let i = 0; i < 50 && !lines().some((l) => l.level === 'warn' && /not ready/.test(l.msg)); i++) await sleep(20)
    const warning = lines().find((l) => l.level === 'warn' && /not ready/.test(l.msg))
    assert.ok(warning !== undefined, gh.stdout.join('\n'))
    assert.ok(warning.msg.includes(issuer.url), warning.msg)
    assert.deepEqual(
      (warning.waitingFor as { check: string; issuer: string }[]).map((w) => [w.check, w.issuer]),
      [['oidc issuer', issuer.url]],
    )
    await sleep(500)
    assert.equal(await get(`${gh.adminUrl}/readyz`), 503)
    assert.ok(!lines().some((l) => l.msg === 'gatehouse is ready'), 'logged "ready" while /readyz answers 503')
    // API keys work meanwhile.
    up.reset()
    assert.equal(await get(`${gh.dataUrl}/meanwhile`, { authorization: `Bearer ${API_KEY}` }), 200)
    assert.deepEqual(
      up.requests.map((r) => r.url),
      ['/meanwhile'],
    )

    issuer.faults.down = false
    let ready: { level: string; msg: string; [k: string]: unknown } | undefined
    for (let i = 0; i < 300 && ready === undefined; i++) {
      await sleep(50)
      ready = lines().find((l) => l.msg === 'gatehouse is ready')
    }
    assert.ok(ready !== undefined, `no "ready" line 15 s after the issuer came back:\n${gh.stdout.join('\n')}`)
    assert.equal(ready.level, 'info')
    assert.equal(ready.data, gh.dataUrl)
    assert.equal(await get(`${gh.adminUrl}/readyz`), 200)
    assert.equal(lines().filter((l) => l.msg === 'gatehouse is ready').length, 1, 'logged once')
  })
})

describe('request line and head overflow over TLS (the parser behind the TLS socket, ALPN http/1.1)', () => {
  let up: RecordingUpstream
  let px: TestProxy

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    px = await startProxy({ env: { ...ENV(up), GATEHOUSE_TLS_ENABLED: 'true' } })
  })
  after(async () => {
    await px?.stop()
    await up?.close()
    assertNoSecretsInLogs(px?.logs ?? [])
  })

  /** Write `bytes` over TLS (in 1000-byte pieces) and collect everything until gatehouse closes. */
  const overTls = (bytes: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const u = new URL(px.url)
      const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: px.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, async () => {
        for (let i = 0; i < bytes.length && !s.destroyed; i += 1000) {
          await new Promise<void>((r) => s.write(bytes.slice(i, i + 1000), 'latin1', () => r()))
          await sleep(1)
        }
      })
      let text = ''
      const t = setTimeout(() => s.destroy(), 5000)
      s.on('data', (d: Buffer) => (text += d.toString('latin1')))
      s.on('error', (e) => (text === '' ? reject(e) : undefined))
      s.on('close', () => {
        clearTimeout(t)
        resolve(text)
      })
    })

  it('GET  / HTTP/1.1 over TLS → 400, nothing upstream', async () => {
    up.reset()
    assertJsonError(responses(await overTls(`GET  /tls HTTP/1.1\r\n${H}\r\n`))[0], 400, 'ERR_BAD_REQUEST')
    await assertUpstreamSawNothing(up)
  })

  it('a 64 KiB Authorization over TLS in 1000-byte writes → 431; a 30 KiB target → 414; nothing upstream', async () => {
    up.reset()
    assertJsonError(responses(await overTls(`GET /t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'A'.repeat(64 * 1024)}\r\n\r\n`))[0], 431, 'ERR_HEADERS_TOO_LARGE')
    assertJsonError(responses(await overTls(`GET /${'t'.repeat(30 * 1024)} HTTP/1.1\r\n${H}\r\n`))[0], 414, 'ERR_URL_TOO_LONG')
    await assertUpstreamSawNothing(up)
  })

  it('positive control over TLS: a well-formed request → 200', async () => {
    up.reset()
    assert.equal(responses(await overTls(`GET /tls-ok HTTP/1.1\r\n${H}Connection: close\r\n\r\n`))[0]?.status, 200)
    assert.equal(up.requests.length, 1)
  })
})
