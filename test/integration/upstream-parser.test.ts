/**
 * Issue 13, upstream parser (second round), end to end: the exact response bytes from a raw
 * upstream on 127.0.0.1:0, through the in-process proxy, to a client on a real socket.
 *
 * - equal Content-Length repeats and lists reach the client as one normalized value; unequal → 502;
 * - Content-Length on 204 and 304 is dropped, and 204/304/HEAD answers are framed without a body;
 * - a head with bare LF (or bare CR) line ends is refused at once, not after the headers timeout;
 * - a body malformed before its first byte still gets a 502; after some bytes, a cut connection;
 * - a slow-reading client does not pile up 'drain' listeners (MaxListenersExceededWarning).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import http from 'node:http'
import net, { type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { after, before, describe, it } from 'node:test'
import { assertGotError, assertStillServes, guardedGet, type Got, type GuardedGetOptions } from '../helpers/guardedGet.ts'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'
import { startRawUpstream, type RawAction, type RawUpstream } from '../helpers/rawUpstream.ts'

const KEY = 'upstream-parser-secret-key-7c41'

const ENV = (url: string): Record<string, string> => ({
  GATEHOUSE_UPSTREAM_URL: url,
  GATEHOUSE_TLS_ENABLED: 'false',
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'parser-user',
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** The whole answer to one request on a fresh raw connection: every byte until `quietMs` pass without one (or the close). */
function rawExchange(p: TestProxy, request: string, quietMs = 300): Promise<{ bytes: string; closed: boolean; ms: number }> {
  const u = new URL(p.url)
  const t0 = performance.now()
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname)
    let bytes = ''
    let timer: NodeJS.Timeout | undefined
    const done = (closed: boolean): void => {
      clearTimeout(timer)
      s.destroy()
      resolve({ bytes, closed, ms: performance.now() - t0 })
    }
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => done(false), quietMs)
    }
    s.on('connect', () => {
      s.write(request)
      arm()
    })
    s.on('data', (d: Buffer) => {
      bytes += d.toString('latin1')
      arm()
    })
    s.on('error', () => {})
    s.on('close', () => done(true))
  })
}

const req = (method: string, path: string): string => `${method} ${path} HTTP/1.1\r\nHost: gatehouse.test\r\nAuthorization: Bearer ${KEY}\r\n\r\n`

/** Header lines of a raw response head (lower-cased names). */
function headLines(bytes: string): { status: number; lines: [string, string][]; rest: string } {
  const end = bytes.indexOf('\r\n\r\n')
  assert.ok(end > 0, `no complete head in ${JSON.stringify(bytes.slice(0, 200))}`)
  const [statusLine, ...fields] = bytes.slice(0, end).split('\r\n')
  const lines = fields.map((f) => {
    const c = f.indexOf(':')
    return [f.slice(0, c).toLowerCase(), f.slice(c + 1).trim()] as [string, string]
  })
  return { status: Number(statusLine!.split(' ')[1]), lines, rest: bytes.slice(end + 4) }
}

/** GET through the proxy with this file's key; never throws, never waits longer than `guardMs`. */
const get = (p: TestProxy, path: string, opts: Omit<GuardedGetOptions, 'token'> = {}): Promise<Got> => guardedGet(p, path, { ...opts, token: KEY })
const assertError = assertGotError

const CHUNKS = 'hello'
const RAW: Record<string, RawAction> = {
  '/te-tab': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  '/chunk-ext-ws': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a = b\r\nhello\r\n0\r\n\r\n',
  '/cl-list': 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello',
  '/cl-twice': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Between: 1\r\ncontent-length: 5\r\n\r\nhello',
  '/cl-list-differ': 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!',
  '/cl-twice-differ': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  '/204-cl': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n',
  '/304-cl': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: "v1"\r\n\r\n',
  '/head-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n',
  '/bare-lf': 'HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok',
  '/bare-lf-start': 'HTTP/1.1 200 OK\n',
  '/bare-cr': 'HTTP/1.1 200 OK\rContent-Length: 2\r',
  '/bare-lf-split': (s: Socket) => {
    s.write('HTTP/1.1 200 OK\r\n')
    setTimeout(() => s.write('Content-Length: 2\n'), 50)
  },
  '/chunk-bad-first': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  '/chunk-bad-first-split': (s: Socket) => {
    // The head and the malformed body in separate packets: still nothing of the response relayed.
    s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
    setTimeout(() => s.write('5\nhello\r\n0\r\n\r\n'), 50)
  },
  '/chunk-bad-later': (s: Socket) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n${CHUNKS}\r\n`)
    setTimeout(() => s.write('5\r\nworld\r\nzz\r\n'), 50)
  },
}

describe('upstream parser, second round (issue 13)', () => {
  let raw: RawUpstream
  let px: TestProxy
  before(async () => {
    raw = await startRawUpstream((path) => RAW[path])
    // A long headers timeout: a bare-LF head must be refused well before it.
    px = await startProxy({ env: ENV(raw.url), yaml: 'upstream:\n  timeouts:\n    headers: 20s\n    body: 5s\n' })
  })
  after(async () => {
    await px?.stop()
    await raw?.close()
    assertNoSecretsInLogs(px?.logs ?? [])
  })

  const good = (): Promise<void> => assertStillServes(px, KEY)

  /** 502 ERR_UPSTREAM_BAD_RESPONSE with nothing of the body relayed, the request sent upstream once, and the proxy still serving. */
  const refusedUnrelayed = async (path: string): Promise<void> => {
    raw.reset()
    const r = await get(px, path)
    assertError(r, 502, 'ERR_UPSTREAM_BAD_RESPONSE')
    assert.doesNotMatch(r.text, /hello/)
    assert.equal(raw.heads.length, 1)
    await good()
  }

  for (const path of ['/cl-list', '/cl-twice']) {
    it(`equal Content-Length values (${path}) reach the client as one normalized Content-Length: 5`, async () => {
      raw.reset()
      const r = await rawExchange(px, req('GET', path))
      const { status, lines, rest } = headLines(r.bytes)
      assert.equal(status, 200)
      assert.deepEqual(
        lines.filter(([n]) => n === 'content-length'),
        [['content-length', '5']],
      )
      assert.equal(rest, 'hello')
      assert.equal(raw.heads.length, 1, 'the request reached the upstream once')
      assert.match(raw.heads[0]!, new RegExp(`^GET ${path} HTTP/1\\.1\r\n`))
    })
  }

  for (const path of ['/cl-list-differ', '/cl-twice-differ']) {
    it(`differing Content-Length values (${path}) → 502 ERR_UPSTREAM_BAD_RESPONSE, nothing relayed`, async () => {
      await refusedUnrelayed(path)
    })
  }

  for (const [path, status] of [
    ['/204-cl', 204],
    ['/304-cl', 304],
  ] as const) {
    it(`${status} with Content-Length: 5 (${path}) → no Content-Length, no Transfer-Encoding, no body bytes; the connection carries the next request`, async () => {
      raw.reset()
      const r = await rawExchange(px, req('GET', path) + req('GET', '/good'))
      const first = headLines(r.bytes)
      assert.equal(first.status, status)
      const names = first.lines.map(([n]) => n)
      assert.ok(!names.includes('content-length'), `content-length passed on: ${names.join(', ')}`)
      assert.ok(!names.includes('transfer-encoding'), `a bodiless answer framed with chunked: ${names.join(', ')}`)
      assert.ok(names.includes(status === 204 ? 'x-kept' : 'etag'), 'the other headers are relayed')
      // The very next bytes are the second response's status line: no body, no zero-length chunk.
      assert.match(first.rest, /^HTTP\/1\.1 200 OK\r\n/)
      const second = headLines(first.rest)
      assert.equal(second.rest, 'ok')
      assert.deepEqual(
        raw.heads.map((h) => h.split(' ')[1]),
        [path, '/good'],
      )
    })
  }

  it('HEAD: the upstream’s Content-Length is relayed (it describes the representation), and no body bytes follow', async () => {
    raw.reset()
    const r = await rawExchange(px, req('HEAD', '/head-cl') + req('GET', '/good'))
    const first = headLines(r.bytes)
    assert.equal(first.status, 200)
    assert.deepEqual(
      first.lines.filter(([n]) => n === 'content-length'),
      [['content-length', '5']],
    )
    assert.match(first.rest, /^HTTP\/1\.1 200 OK\r\n/, 'bytes followed the head of a HEAD answer')
    assert.match(raw.heads[0]!, /^HEAD \/head-cl HTTP\/1\.1\r\n/)
  })

  for (const [path, what] of [
    ['/bare-lf', 'a whole response with LF line ends'],
    ['/bare-lf-start', 'a status line ended by LF, then silence'],
    ['/bare-cr', 'CR line ends, then silence'],
    ['/bare-lf-split', 'a CRLF status line, then a header ended by LF in a later packet'],
  ] as const) {
    it(`bare line ends in the head (${what}) → 502 ERR_UPSTREAM_BAD_RESPONSE at once, well before the 20 s headers timeout`, async () => {
      raw.reset()
      const r = await get(px, path, { guardMs: 15_000 })
      assertError(r, 502, 'ERR_UPSTREAM_BAD_RESPONSE')
      assert.ok(r.ms < 5000, `answered after ${Math.round(r.ms)} ms`)
      assert.equal(raw.heads.length, 1, 'the request did reach the upstream')
      await good()
    })
  }

  for (const [path, what] of [
    ['/te-tab', 'Transfer-Encoding: chunked<HTAB> (llhttp reads it as to-the-close)'],
    ['/chunk-ext-ws', 'a chunk extension with whitespace (`5 ; a = b`)'],
  ] as const) {
    it(`${what} → 502 ERR_UPSTREAM_BAD_RESPONSE, nothing of the body relayed`, async () => {
      await refusedUnrelayed(path)
    })
  }

  for (const path of ['/chunk-bad-first', '/chunk-bad-first-split']) {
    it(`a good head with a chunked body malformed at its first byte (${path}) → 502 JSON, not a cut connection`, async () => {
      await refusedUnrelayed(path)
    })
  }

  it('a chunked body malformed after some bytes were relayed → the connection is cut (never a body that looks complete)', async () => {
    raw.reset()
    const r = await get(px, '/chunk-bad-later')
    assert.equal(r.status, 200, 'the head went out with the first body bytes')
    assert.equal(r.complete, false, 'a truncated body must not look complete')
    assert.ok('helloworld'.startsWith(r.text), `only the relayed bytes arrive, in order: ${JSON.stringify(r.text)}`)
    assert.equal(raw.heads.length, 1)
    await good()
  })

  it('the error lines name the parser’s code, and no secret is logged', async () => {
    const lines = px.logs.filter((l) => l.includes('ERR_UPSTREAM_BAD_RESPONSE'))
    assert.ok(lines.length > 0)
    assert.ok(
      lines.some((l) => l.includes('HPE_')),
      'the HPE_* code is logged as the detail',
    )
    assertNoSecretsInLogs(px.logs, [KEY])
  })
})

describe('limits.maxResponseBody and bodiless answers', () => {
  let raw: RawUpstream
  let px: TestProxy
  before(async () => {
    raw = await startRawUpstream((path) => RAW[path])
    px = await startProxy({ env: ENV(raw.url), yaml: 'limits:\n  maxResponseBody: 4\n' })
  })
  after(async () => {
    await px?.stop()
    await raw?.close()
  })

  it('HEAD whose Content-Length is over the limit is relayed (it has no body); GET of the same is 502 ERR_UPSTREAM_RESPONSE_TOO_LARGE', async () => {
    raw.reset()
    const head = await rawExchange(px, req('HEAD', '/head-cl'))
    const h = headLines(head.bytes)
    assert.equal(h.status, 200)
    assert.deepEqual(
      h.lines.filter(([n]) => n === 'content-length'),
      [['content-length', '5']],
    )
    assert.equal(h.rest, '')
    const r = await get(px, '/cl-list')
    assertError(r, 502, 'ERR_UPSTREAM_RESPONSE_TOO_LARGE')
    assert.deepEqual(
      raw.heads.map((x) => x.split(' ').slice(0, 2).join(' ')),
      ['HEAD /head-cl', 'GET /cl-list'],
    )
  })

  it('304 with Content-Length: 5 over the limit is relayed without it', async () => {
    const r = await rawExchange(px, req('GET', '/304-cl'))
    const h = headLines(r.bytes)
    assert.equal(h.status, 304)
    assert.ok(!h.lines.some(([n]) => n === 'content-length'))
  })
})

describe('a slow-reading client under backpressure (issue 13)', () => {
  // Many small chunks per packet: each one used to add a 'drain' listener while the client
  // connection was backed up.
  const CHUNK = 200
  const COUNT = 60_000 // 12 MB: more than the loopback socket buffers hold
  const piece = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i++) piece[i] = 97 + (i % 26)
  const expected = createHash('sha256')
  for (let i = 0; i < COUNT; i++) expected.update(piece)
  const digest = expected.digest('hex')

  let raw: RawUpstream
  let px: TestProxy
  before(async () => {
    raw = await startRawUpstream(() => (s: Socket) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n')
      const frame = Buffer.concat([Buffer.from(`${CHUNK.toString(16)}\r\n`), piece, Buffer.from('\r\n')])
      // Written in 64 KiB batches of frames, with the socket's backpressure.
      const perBatch = Math.floor(65536 / frame.length)
      const batch = Buffer.concat(Array.from({ length: perBatch }, () => frame))
      let sent = 0
      const pump = (): void => {
        while (sent < COUNT) {
          const n = Math.min(perBatch, COUNT - sent)
          const ok = s.write(n === perBatch ? batch : batch.subarray(0, n * frame.length))
          sent += n
          if (!ok) {
            s.once('drain', pump)
            return
          }
        }
        s.write('0\r\n\r\n')
      }
      pump()
    })
    px = await startProxy({ env: ENV(raw.url) })
  })
  after(async () => {
    await px?.stop()
    await raw?.close()
  })

  it('downloads 60 000 chunks whole, paused and resumed, without one MaxListenersExceededWarning', async () => {
    const warnings: string[] = []
    const onWarning = (w: Error): void => {
      if (w.name === 'MaxListenersExceededWarning') warnings.push(w.message)
    }
    process.on('warning', onWarning)
    try {
      const u = new URL(px.url)
      const result = await new Promise<{ bytes: number; digest: string; complete: boolean }>((resolve, reject) => {
        const r = http.request({ host: u.hostname, port: u.port, path: '/download', agent: false, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
          const h = createHash('sha256')
          let bytes = 0
          res.on('data', (c: Buffer) => {
            h.update(c)
            bytes += c.length
          })
          // Slow reader: stalled long enough for every buffer on the way to fill, then read in
          // short bursts with pauses (the proxy's writes keep returning false in between).
          res.pause()
          let bursts = 0
          const cycle = (): void => {
            if (res.readableEnded) return
            res.resume()
            setTimeout(
              () => {
                if (res.readableEnded) return
                if (++bursts < 40) res.pause()
                setTimeout(cycle, 20)
              },
              5,
            )
          }
          setTimeout(cycle, 400)
          res.on('end', () => resolve({ bytes, digest: h.digest('hex'), complete: res.complete }))
          res.on('error', reject)
        })
        r.on('error', reject)
        r.end()
      })
      // Let a late warning (emitted on the next tick) arrive.
      await sleep(50)
      assert.equal(result.bytes, CHUNK * COUNT)
      assert.equal(result.complete, true)
      assert.equal(result.digest, digest, 'the body arrived whole and in order')
      assert.deepEqual(warnings, [], 'drain listeners piled up')
      assert.equal(raw.heads.length, 1)
    } finally {
      process.removeListener('warning', onWarning)
    }
  })
})
