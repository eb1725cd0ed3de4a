/**
 * Forwarding (SPEC §7): upstream failures map to 502/504 with the JSON error body and the process
 * keeps serving; the echo upstream; hop-by-hop response headers; body limits; the query string
 * and the upstream base path.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { closedPort, startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'forwarding-secret-key-81f2'

interface RawReply {
  status: number
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
  text: string
  /** False when the connection was cut before the body was complete. */
  complete: boolean
}

/**
 * One request with node:https, raw path, `Connection: close` (agent: false) so Node's own
 * keep-alive headers never mix with what gatehouse relays.
 */
function send(p: TestProxy, o: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer | Readable; auth?: boolean }): Promise<RawReply> {
  const u = new URL(p.url)
  const headers: Record<string, string> = { ...o.headers }
  if (o.auth !== false) headers.authorization = `Bearer ${KEY}`
  if (typeof o.body === 'string' || Buffer.isBuffer(o.body)) headers['content-length'] = String(Buffer.byteLength(o.body))
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, method: o.method ?? 'GET', path: o.path, headers, agent: false, ca: p.ca }, (res) => {
      const chunks: Buffer[] = []
      const done = (complete: boolean): void => {
        const body = Buffer.concat(chunks)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body, text: body.toString('utf8'), complete })
      }
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => done(res.complete))
      res.on('error', () => done(false))
      res.on('aborted', () => done(false))
    })
    req.on('error', reject)
    if (o.body instanceof Readable) {
      o.body.on('error', () => req.destroy())
      o.body.pipe(req)
    } else req.end(o.body)
  })
}

function assertError(r: RawReply, status: number, reason: string): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`)
  assert.equal(r.headers['content-type'], 'application/json')
  assert.equal(r.headers['cache-control'], 'no-store')
  const b = JSON.parse(r.text) as { code: number; message: string; reason: string; requestId: string }
  assert.equal(b.code, status)
  assert.equal(b.reason, reason)
  assert.ok(b.message.length > 0)
  assert.equal(b.requestId, r.headers['x-request-id'])
}

const KEY_ENV = {
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'fwd-user',
}

/** A port nothing listens on (bound, then released). */
describe('forwarding', () => {
  before(() => {
    usedSecrets.add(KEY)
  })

  describe('upstream refused, then back', () => {
    let px: TestProxy
    let port: number
    let revived: http.Server | undefined

    before(async () => {
      port = await closedPort()
      px = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: `http://127.0.0.1:${port}` } })
    })

    after(async () => {
      if (revived !== undefined) {
        revived.closeAllConnections()
        await new Promise<void>((r) => revived?.close(() => r()))
      }
      await px?.stop()
      assertNoSecretsInLogs(px.logs)
    })

    it('connection refused → 502 ERR_UPSTREAM_UNAVAILABLE (twice: nothing is cached or broken)', async () => {
      assertError(await send(px, { path: '/a' }), 502, 'ERR_UPSTREAM_UNAVAILABLE')
      assertError(await send(px, { method: 'POST', path: '/b', body: 'x'.repeat(100) }), 502, 'ERR_UPSTREAM_UNAVAILABLE')
      const line = px.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request' && l.status === 502)
      assert.equal(line?.reason, 'ERR_UPSTREAM_UNAVAILABLE')
    })

    it('when the upstream comes up on that port the same process forwards: 200', async () => {
      revived = http.createServer((req, res) => {
        req.resume()
        req.on('end', () => res.end('revived'))
      })
      await new Promise<void>((r) => revived?.listen(port, '127.0.0.1', r))
      const r = await send(px, { path: '/c' })
      assert.equal(r.status, 200)
      assert.equal(r.text, 'revived')
    })
  })

  describe('recording upstream: reset, timeout, limits, query, hop-by-hop', () => {
    let up: RecordingUpstream
    let px: TestProxy

    before(async () => {
      up = await startUpstream()
      px = await startProxy({
        env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url },
        yaml: 'upstream:\n  timeouts:\n    headers: 300ms\nlimits:\n  maxRequestBody: 1KiB\n  maxResponseBody: 1KiB\n',
      })
    })

    after(async () => {
      await px?.stop()
      await up?.close()
      assertNoSecretsInLogs(px.logs)
    })

    const good = async (): Promise<void> => {
      const r = await send(px, { path: '/good' })
      assert.equal(r.status, 200, 'the process keeps serving')
      assert.equal((JSON.parse(r.text) as { url: string }).url, '/good')
    }

    it('upstream resets the connection → 502 ERR_UPSTREAM_UNAVAILABLE, then a good request is 200', async () => {
      up.reset()
      assertError(await send(px, { path: '/reset' }), 502, 'ERR_UPSTREAM_UNAVAILABLE')
      assert.ok(up.requests.length >= 1, 'the request did reach the upstream')
      await good()
    })

    it('upstream never answers → 504 ERR_UPSTREAM_TIMEOUT after ~300 ms, then a good request is 200', async () => {
      const t0 = Date.now()
      assertError(await send(px, { path: '/hang' }), 504, 'ERR_UPSTREAM_TIMEOUT')
      const ms = Date.now() - t0
      assert.ok(ms >= 250 && ms < 3000, `answered after ${ms} ms`)
      await good()
      // several at once do not wedge the pool
      const rs = await Promise.all([send(px, { path: '/hang/1' }), send(px, { path: '/hang/2' }), send(px, { path: '/good' })])
      assert.deepEqual(rs.map((r) => r.status), [504, 504, 200])
      await good()
    })

    it('hop-by-hop response headers (connection, keep-alive) are not relayed; others are', async () => {
      const r = await send(px, { path: '/hop' })
      assert.equal(r.status, 200)
      assert.equal(r.headers['x-upstream'], 'recording', 'positive control: upstream headers are relayed')
      assert.equal(r.headers['keep-alive'], undefined)
      assert.equal(r.headers.connection, 'close', 'only gatehouse’s own Connection header for this client')
      const names = r.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
      assert.equal(names.filter((n) => n === 'connection').length, 1)
    })

    it('the query string is forwarded untouched', async () => {
      up.reset()
      const q = 'b=2&a=1&a=3&x=%2F%20y&plus=a+b&empty=&flag&enc=%2e%2E&utf=%C3%A9&arr[]=1'
      const r = await send(px, { path: `/q/path?${q}` })
      assert.equal(r.status, 200)
      assert.equal(up.requests[0]?.url, `/q/path?${q}`)
    })

    it('a request body within maxRequestBody (1 KiB) is forwarded whole', async () => {
      up.reset()
      const r = await send(px, { method: 'POST', path: '/body', body: Buffer.alloc(1024, 7) })
      assert.equal(r.status, 200)
      assert.equal(up.requests[0]?.bodyBytes, 1024)
    })

    it('a declared body over 1 KiB → 413 and the upstream sees nothing', async () => {
      up.reset()
      const r = await send(px, { method: 'POST', path: '/body', body: Buffer.alloc(1025, 7) })
      assertError(r, 413, 'ERR_REQUEST_TOO_LARGE')
      assert.equal(up.requests.length, 0)
      await good()
    })

    it('a chunked body over 1 KiB → 413 and the upstream saw no byte beyond the limit', async () => {
      up.reset()
      let sent = 0
      const body = new Readable({
        read() {
          if (sent >= 64 * 1024) return this.push(null)
          sent += 512
          setTimeout(() => this.push(Buffer.alloc(512, 9)), 2)
        },
      })
      const r = await send(px, { method: 'PUT', path: '/chunked-body', body, headers: { 'content-type': 'application/octet-stream' } })
      assertError(r, 413, 'ERR_REQUEST_TOO_LARGE')
      await new Promise((res) => setTimeout(res, 100))
      for (const rec of up.requests) assert.ok(rec.bodyBytes <= 1024, `the upstream received ${rec.bodyBytes} bytes`)
      await good()
    })

    it('a response within maxResponseBody is relayed; a declared larger one is 502 ERR_UPSTREAM_RESPONSE_TOO_LARGE', async () => {
      const ok = await send(px, { path: '/download/1024' })
      assert.equal(ok.status, 200)
      assert.equal(ok.body.length, 1024)
      assertError(await send(px, { path: '/download/1025' }), 502, 'ERR_UPSTREAM_RESPONSE_TOO_LARGE')
      assertError(await send(px, { path: '/download/10485760' }), 502, 'ERR_UPSTREAM_RESPONSE_TOO_LARGE')
      await good()
    })
  })

  describe('undeclared response larger than maxResponseBody, and hop headers named by the upstream', () => {
    let special: http.Server
    let px: TestProxy

    before(async () => {
      special = http.createServer((req, res) => {
        req.resume()
        if (req.url === '/chunked') {
          // no content-length: the limit can only be noticed while streaming
          res.writeHead(200, { 'content-type': 'application/octet-stream' })
          let n = 0
          const tick = (): void => {
            if (n >= 8) return void res.end()
            n++
            res.write(Buffer.alloc(512, 1))
            setTimeout(tick, 5)
          }
          tick()
          return
        }
        res.writeHead(200, {
          connection: 'keep-alive, X-Hop-Named',
          'keep-alive': 'timeout=5, max=1000',
          'x-hop-named': 'hop-marker',
          'proxy-authenticate': 'Basic realm="upstream"',
          'x-kept': 'yes',
          'content-type': 'text/plain',
        })
        res.end('ok')
      })
      await new Promise<void>((r) => special.listen(0, '127.0.0.1', r))
      px = await startProxy({
        env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: `http://127.0.0.1:${(special.address() as AddressInfo).port}` },
        yaml: 'limits:\n  maxResponseBody: 1KiB\n',
      })
    })

    after(async () => {
      await px?.stop()
      special.closeAllConnections()
      await new Promise<void>((r) => special.close(() => r()))
      assertNoSecretsInLogs(px.logs)
    })

    it('headers the upstream names in Connection, keep-alive and proxy-authenticate are dropped', async () => {
      const r = await send(px, { path: '/hop' })
      assert.equal(r.status, 200)
      assert.equal(r.text, 'ok')
      assert.equal(r.headers['x-kept'], 'yes')
      assert.equal(r.headers['x-hop-named'], undefined)
      assert.equal(r.headers['keep-alive'], undefined)
      assert.equal(r.headers['proxy-authenticate'], undefined)
      assert.doesNotMatch(String(r.headers.connection), /x-hop-named/i)
    })

    it('a streamed response over the limit is cut: the client never gets the whole body', async () => {
      const r = await send(px, { path: '/chunked' })
      assert.ok(r.status === 502 || (r.status === 200 && !r.complete), `status ${r.status}, complete ${r.complete}`)
      assert.ok(r.body.length <= 1024, `the client received ${r.body.length} bytes`)
      const line = px.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request' && l.path === '/chunked')
      assert.ok(line !== undefined)
      // next request still fine
      assert.equal((await send(px, { path: '/hop' })).status, 200)
    })
  })

  describe('echo upstream (GATEHOUSE_UPSTREAM_URL=echo:)', () => {
    let px: TestProxy

    before(async () => {
      px = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: 'echo:' } })
    })

    after(async () => {
      await px?.stop()
      assertNoSecretsInLogs(px.logs)
    })

    it('reports method, path, query, headers and bodyBytes', async () => {
      const r = await send(px, { method: 'PATCH', path: '/some//path/./x?b=2&a=1', body: 'hello world', headers: { 'x-custom': 'v1', 'x-forwarded-user': 'spoof' } })
      assert.equal(r.status, 200)
      const e = JSON.parse(r.text) as { method: string; path: string; query: string; headers: Record<string, string>; bodyBytes: number }
      assert.equal(e.method, 'PATCH')
      assert.equal(e.path, '/some/path/x')
      assert.equal(e.query, 'b=2&a=1')
      assert.equal(e.bodyBytes, 11)
      assert.equal(e.headers['x-custom'], 'v1')
      assert.equal(e.headers['x-forwarded-user'], 'fwd-user')
      assert.equal(e.headers['x-forwarded-auth-method'], 'apikey')
      assert.equal(e.headers.authorization, undefined)
      assert.equal(e.headers['x-request-id'], r.headers['x-request-id'])
    })

    it('without a key: 401 and the echo is never reached', async () => {
      const r = await send(px, { path: '/x', auth: false })
      assertError(r, 401, 'ERR_UNAUTHENTICATED')
    })
  })

  describe('base path of upstream.url', () => {
    let up: RecordingUpstream
    let px: TestProxy

    before(async () => {
      up = await startUpstream()
      px = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: `${up.url}/base` } })
    })

    after(async () => {
      await px?.stop()
      await up?.close()
      assertNoSecretsInLogs(px.logs)
    })

    for (const [sent, seen] of [
      ['/v1/objects?limit=5', '/base/v1/objects?limit=5'],
      ['/v1/objects', '/base/v1/objects'],
      ['/x/../../../etc/passwd', '/base/etc/passwd'],
      ['/%2e%2e/secret', '/base/secret'],
    ]) {
      it(`${sent} reaches the upstream as ${seen}`, async () => {
        up.reset()
        const r = await send(px, { path: sent as string })
        assert.equal(r.status, 200)
        assert.equal(up.requests[0]?.url, seen)
      })
    }

    it('the root maps under the base path too', async () => {
      up.reset()
      assert.equal((await send(px, { path: '/' })).status, 200)
      assert.match(String(up.requests[0]?.url), /^\/base\/?$/)
    })
  })

  describe('real binary: upstream failures never take the process down', () => {
    let up: RecordingUpstream
    let dir: string
    let gh: ServeProcess

    const plain = (p: string): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const req = http.request(`${gh.dataUrl}${p}`, { agent: false, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
          let t = ''
          res.on('data', (c: Buffer) => (t += c.toString('utf8')))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: t }))
        })
        req.on('error', reject)
        req.end()
      })

    before(async () => {
      up = await startUpstream()
      dir = mkdtempSync(path.join(tmpdir(), 'gh-fwd-bin-'))
      const cfg = path.join(dir, 'proxy.yaml')
      writeFileSync(cfg, 'tls:\n  enabled: false\nupstream:\n  timeouts:\n    headers: 300ms\nlimits:\n  maxRequestBody: 1KiB\n  maxResponseBody: 1KiB\n')
      gh = await startServe({ ...KEY_ENV, GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir, args: ['--config', cfg] })
    })

    after(async () => {
      if (gh.child.exitCode === null) gh.child.kill('SIGTERM')
      await gh.exited
      await up.close()
      rmSync(dir, { recursive: true, force: true })
      assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
    })

    it('clients that go away mid-download or mid-upload do not take the process down', async () => {
      // while gatehouse waits for the upstream's headers
      await new Promise<void>((resolve) => {
        const req = http.request(`${gh.dataUrl}/hang`, { agent: false, headers: { authorization: `Bearer ${KEY}` } })
        req.on('error', () => resolve())
        req.end()
        setTimeout(() => {
          req.destroy()
          resolve()
        }, 100)
      })
      // mid-download: /slow-body sends its first bytes, then nothing
      await new Promise<void>((resolve) => {
        const req = http.request(`${gh.dataUrl}/slow-body`, { agent: false, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
          res.once('data', () => {
            req.destroy()
            resolve()
          })
        })
        req.on('error', () => resolve())
        req.end()
      })
      // mid-upload
      await new Promise<void>((resolve) => {
        const req = http.request(`${gh.dataUrl}/upload`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${KEY}`, 'content-length': '1000' } })
        req.on('error', () => resolve())
        req.write(Buffer.alloc(100))
        setTimeout(() => {
          req.destroy()
          resolve()
        }, 100)
      })
      await new Promise((res) => setTimeout(res, 400))
      assert.equal(gh.child.exitCode, null, `gatehouse exited with ${gh.child.exitCode}:\n${gh.stderr.join('')}`)
      assert.equal((await plain('/good')).status, 200)
      // The client that left while the upstream was silent is logged as aborted, not as a 502
      // that nobody received (the upstream did not fail).
      const hang = gh.stdout.join('\n').split('\n').filter((l) => l.includes('"path":"/hang"'))
      assert.equal(hang.length, 1, hang.join('\n'))
      const rec = JSON.parse(hang[0] as string) as { status: number; aborted?: boolean; reason?: string }
      assert.equal(rec.status, 0)
      assert.equal(rec.aborted, true)
      assert.equal(rec.reason, undefined)
    })

    for (const [p, status] of [
      ['/reset', 502],
      ['/hang', 504],
      ['/download/4096', 502],
    ] as const) {
      it(`${p} → ${status}, and the process is still up and serving`, async () => {
        const r = await plain(p)
        assert.equal(r.status, status, r.text)
        await new Promise((res) => setTimeout(res, 200))
        assert.equal(gh.child.exitCode, null, `gatehouse exited with ${gh.child.exitCode}:\n${gh.stderr.join('')}`)
        const ok = await plain('/good')
        assert.equal(ok.status, 200)
      })
    }
  })
})
