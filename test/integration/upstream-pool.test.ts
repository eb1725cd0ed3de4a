/**
 * The upstream pool (src/upstream/h1pool.ts) against raw TCP upstreams on 127.0.0.1:0: when a
 * connection is reused and when it must not be, the one retry of the keep-alive race, header
 * values that would split the request, the timeouts, and close().
 */
import assert from 'node:assert/strict'
import net, { type AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import tls from 'node:tls'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { H1Pool, type ExchangeHandler } from '../../src/upstream/h1pool.ts'

interface Raw {
  url: URL
  /** Connections accepted so far. */
  connections: number
  /** Every request head received (up to the blank line), in order. */
  heads: string[]
  /** Bytes received in total. */
  bytes: number
  /** Everything received, as latin1. */
  data: string
  close(): Promise<void>
}

/** A raw upstream: `answer(head, socket, n)` is called for each request head (n: its index on the connection). */
async function rawUpstream(answer: (head: string, s: net.Socket, n: number) => void): Promise<Raw> {
  const sockets = new Set<net.Socket>()
  const raw: Raw = { url: new URL('http://127.0.0.1'), connections: 0, heads: [], bytes: 0, data: '', close: async () => {} }
  const server = net.createServer((s) => {
    raw.connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    let buf = ''
    let n = 0
    s.on('data', (d: Buffer) => {
      raw.bytes += d.length
      raw.data += d.toString('latin1')
      buf += d.toString('latin1')
      let end: number
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, end)
        buf = buf.slice(end + 4)
        raw.heads.push(head)
        answer(head, s, n++)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  raw.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  raw.close = () =>
    new Promise((r) => {
      for (const s of sockets) s.destroy()
      server.close(() => r())
    })
  return raw
}

interface Result {
  status: number
  raw: string[]
  body: string
  error: (Error & { code?: string }) | undefined
}

const OPTS = { connectTimeout: 2000, headersTimeout: 2000, bodyTimeout: 2000, keepAliveTimeout: 4000, maxHeaderSize: 16 * 1024 }

function send(pool: H1Pool, method: string, path: string, headers: string[] = [], body: Readable | null = null, h: Partial<ExchangeHandler> = {}): Promise<Result> {
  return new Promise((resolve) => {
    const r: Result = { status: 0, raw: [], body: '', error: undefined }
    pool.dispatch(method, path, headers, body, {
      onConnect: h.onConnect ?? (() => {}),
      onHeaders(status, raw, resume) {
        if (status >= 200) {
          r.status = status
          r.raw = raw
        }
        return h.onHeaders?.(status, raw, resume) ?? true
      },
      onData(c) {
        r.body += c.toString('latin1')
        return h.onData?.(c) ?? true
      },
      onComplete: () => resolve(r),
      onError(e) {
        r.error = e
        resolve(r)
      },
    })
  })
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('upstream pool: connection reuse', () => {
  const cleanup: (() => Promise<void>)[] = []
  after(async () => {
    for (const c of cleanup.reverse()) await c()
  })
  async function setup(answer: (head: string, s: net.Socket, n: number) => void, opts: Partial<typeof OPTS> = {}): Promise<{ raw: Raw; pool: H1Pool }> {
    const raw = await rawUpstream(answer)
    const pool = new H1Pool({ origin: raw.url, ...OPTS, ...opts })
    cleanup.push(() => raw.close(), () => pool.close())
    return { raw, pool }
  }

  it('sequential requests share one kept-alive connection; Host is the upstream’s', async () => {
    const { raw, pool } = await setup((_h, s) => s.write(OK))
    for (let i = 0; i < 3; i++) assert.equal((await send(pool, 'GET', `/r${i}`)).body, 'ok')
    assert.equal(raw.connections, 1)
    assert.match(raw.heads[0]!, new RegExp(`^GET /r0 HTTP/1\\.1\r\nhost: ${raw.url.host}$`))
  })

  it('a Host in the header list replaces the upstream’s (preserveHost)', async () => {
    const { raw, pool } = await setup((_h, s) => s.write(OK))
    await send(pool, 'GET', '/', ['Host', 'client.example'])
    assert.doesNotMatch(raw.heads[0]!, /^host: 127/im)
    assert.match(raw.heads[0]!, /\r\nHost: client\.example$/)
  })

  it('Connection: close, HTTP/1.0 and a close-delimited body are not reused', async () => {
    for (const answer of ['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok', 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok']) {
      const { raw, pool } = await setup((_h, s) => s.write(answer))
      assert.equal((await send(pool, 'GET', '/a')).body, 'ok')
      assert.equal((await send(pool, 'GET', '/b')).body, 'ok')
      assert.equal(raw.connections, 2, answer)
    }
    const { raw, pool } = await setup((_h, s) => s.end('HTTP/1.1 200 OK\r\n\r\nto the end'))
    assert.equal((await send(pool, 'GET', '/a')).body, 'to the end')
    assert.equal((await send(pool, 'GET', '/b')).body, 'to the end')
    assert.equal(raw.connections, 2)
  })

  it('an unsolicited second response poisons the connection: the next request gets a new one and its own answer', async () => {
    const { raw, pool } = await setup((h, s, n) => {
      if (n === 0 && h.startsWith('GET /poison')) s.write(`${OK}HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned`)
      else s.write(OK)
    })
    assert.equal((await send(pool, 'GET', '/poison')).body, 'ok')
    await sleep(20)
    assert.equal((await send(pool, 'GET', '/next')).body, 'ok')
    assert.equal(raw.connections, 2)
  })

  it('the upstream closing an idle connection under a new GET: retried once on a new connection', async () => {
    // The second request on every connection finds it closed (the idle-timeout race).
    const { raw, pool } = await setup((_h, s, n) => (n === 0 ? s.write(OK) : s.destroy()))
    assert.equal((await send(pool, 'GET', '/1')).body, 'ok')
    const r = await send(pool, 'GET', '/2')
    assert.equal(r.error, undefined)
    assert.equal(r.body, 'ok')
    assert.equal(raw.connections, 2)
  })

  it('…but a POST with a body is never retried (it may have been acted on): the error is reported', async () => {
    const { raw, pool } = await setup((_h, s, n) => (n === 0 ? s.write(OK) : s.destroy()))
    await send(pool, 'GET', '/1')
    const r = await send(pool, 'POST', '/2', ['content-length', '4'], Readable.from([Buffer.from('data')]))
    assert.equal(r.error?.code, 'UND_ERR_SOCKET')
    assert.equal(raw.heads.filter((h) => h.startsWith('POST')).length, 1, 'sent once')
  })

  it('a fresh connection that closes without an answer is an error, not a retry loop', async () => {
    const { raw, pool } = await setup((_h, s) => s.destroy())
    const r = await send(pool, 'GET', '/')
    assert.ok(r.error !== undefined)
    assert.equal(raw.connections, 1)
  })

  it('an answer before the request body is sent whole reaches the client; that connection is not reused', async () => {
    const { raw, pool } = await setup((h, s) => s.write(h.startsWith('PUT') ? 'HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n' : OK))
    const body = new Readable({ read() {} })
    body.push(Buffer.from('first part'))
    const r = await send(pool, 'PUT', '/upload', ['content-length', '1000000'], body)
    assert.equal(r.status, 413)
    body.push(Buffer.from('more'))
    assert.equal((await send(pool, 'GET', '/after')).body, 'ok')
    assert.equal(raw.connections, 2)
  })

  it('a body without Content-Length goes chunked; POST without a body gets content-length: 0', async () => {
    const { raw, pool } = await setup((_h, s) => s.write(OK))
    const r = await send(pool, 'POST', '/c', [], Readable.from([Buffer.from('ab'), Buffer.from('cde')]))
    assert.equal(r.body, 'ok')
    assert.match(raw.heads[0]!, /\r\ntransfer-encoding: chunked$/)
    assert.ok(raw.data.includes('\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n'), JSON.stringify(raw.data))
    const empty = await setup((_h, s) => s.write(OK))
    await send(empty.pool, 'POST', '/empty')
    assert.match(empty.raw.heads[0]!, /\r\ncontent-length: 0$/)
  })

  it('an idle connection is closed by the keep-alive limit at the latest (never left for the upstream to close under a request)', async () => {
    let closed = 0
    const seen = new WeakSet<net.Socket>()
    const { raw, pool } = await setup((_h, s) => {
      if (!seen.has(s)) {
        seen.add(s)
        s.once('close', () => closed++)
      }
      s.write(OK)
    }, { keepAliveTimeout: 500 })
    await send(pool, 'GET', '/a')
    await sleep(250)
    assert.equal(closed, 0, 'still pooled well before the limit')
    assert.equal((await send(pool, 'GET', '/b')).body, 'ok')
    assert.equal(raw.connections, 1, 'reused within the limit')
    await sleep(650)
    assert.equal(closed, 1, 'closed by the pool within its limit')
  })

  it('a Keep-Alive hint of one second or less: the connection is not kept (it would race the upstream’s close)', async () => {
    const { raw, pool } = await setup((_h, s) => s.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok'))
    await send(pool, 'GET', '/a')
    await send(pool, 'GET', '/b')
    assert.equal(raw.connections, 2)
  })
})

describe('upstream pool: what is never sent', () => {
  it('a header value with CR, LF or NUL (say from a token claim) fails the request before a byte goes upstream', async () => {
    const raw = await rawUpstream((_h, s) => s.write(OK))
    const pool = new H1Pool({ origin: raw.url, ...OPTS })
    try {
      for (const v of ['alice\r\nX-Injected: 1', 'a\nb', 'a\0b']) {
        const r = await send(pool, 'GET', '/', ['X-Forwarded-User', v])
        assert.equal(r.error?.code, 'UND_ERR_INVALID_ARG')
      }
      const r = await send(pool, 'GET', '/a b')
      assert.equal(r.error?.code, 'UND_ERR_INVALID_ARG', 'a space in the target')
      assert.equal(raw.bytes, 0)
      assert.equal(raw.connections, 0)
    } finally {
      await pool.close()
      await raw.close()
    }
  })
})

describe('upstream pool: timeouts and close', () => {
  it('headers timeout (a head dribbled byte by byte does not extend it), body idle timeout, no body timeout while paused', async () => {
    const raw = await rawUpstream((h, s) => {
      if (h.startsWith('GET /dribble')) {
        s.write('HTTP/1.1 200 OK\r\nX-Slow: ')
        const t = setInterval(() => (s.writable ? s.write('a') : clearInterval(t)), 50)
        s.once('close', () => clearInterval(t))
      } else if (h.startsWith('GET /stall-body')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc', () => setTimeout(() => s.writable && s.write('def'), 600))
    })
    const pool = new H1Pool({ origin: raw.url, ...OPTS, headersTimeout: 300, bodyTimeout: 300 })
    try {
      const t0 = performance.now()
      const a = await send(pool, 'GET', '/dribble')
      assert.equal(a.error?.code, 'UND_ERR_HEADERS_TIMEOUT')
      assert.ok(performance.now() - t0 < 1500)
      const b = await send(pool, 'GET', '/stall-body')
      assert.equal(b.error?.code, 'UND_ERR_BODY_TIMEOUT')
      assert.equal(b.body, 'abc')
      // Paused by the client for longer than the body timeout: not the upstream's fault.
      let resume: (() => void) | undefined
      const c = send(pool, 'GET', '/paused', [], null, {
        onHeaders: (_s, _r, res) => {
          resume = res
          return true
        },
        onData: () => false,
      })
      await sleep(900)
      resume?.()
      const got = await c
      assert.equal(got.error, undefined)
      assert.equal(got.body, 'abcdef')
    } finally {
      await pool.close()
      await raw.close()
    }
  })

  it('connect timeout to an address that never answers the handshake is reported as such', async () => {
    // Port 1 on loopback: refused at once on most machines; a filtered one times out. Either way
    // an error with its code, within the connect timeout.
    const pool = new H1Pool({ origin: new URL('http://127.0.0.1:1'), ...OPTS, connectTimeout: 200 })
    const r = await send(pool, 'GET', '/')
    assert.ok(r.error !== undefined)
    assert.ok(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'].includes(r.error.code ?? ''), r.error.code)
    await pool.close()
  })

  it('close() lets the exchange in flight finish, then closes every socket; later requests fail as closed', async () => {
    const raw = await rawUpstream((_h, s) => setTimeout(() => s.write(OK), 200))
    const pool = new H1Pool({ origin: raw.url, ...OPTS })
    const inflight = send(pool, 'GET', '/slow')
    await sleep(50)
    const closed = pool.close()
    assert.equal((await inflight).body, 'ok')
    await closed
    assert.equal((await send(pool, 'GET', '/late')).error?.code, 'UND_ERR_CLOSED')
    await raw.close()
  })

  it('abort from onConnect or mid-body: onError gets the abort reason once, and nothing else is called', async () => {
    const raw = await rawUpstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'))
    const pool = new H1Pool({ origin: raw.url, ...OPTS })
    try {
      const reason = new Error('client went away')
      const early = await send(pool, 'GET', '/', [], null, { onConnect: (abort) => abort(reason) })
      assert.equal(early.error, reason)
      let abortFn: ((e: Error) => void) | undefined
      let calls = 0
      const mid = await send(pool, 'GET', '/', [], null, {
        onConnect: (a) => (abortFn = a),
        onData: () => {
          calls++
          abortFn?.(reason)
          return true
        },
      })
      assert.equal(mid.error, reason)
      assert.equal(calls, 1)
    } finally {
      await pool.close()
      await raw.close()
    }
  })
})

describe('upstream pool: https', () => {
  it('verifies the upstream against the given CA, and a second connection resumes the TLS session', async () => {
    const pem = generateSelfSignedCertificate({ commonName: 'pool upstream', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
    const resumed: boolean[] = []
    const server = tls.createServer({ cert: pem.certPem, key: pem.keyPem }, (s) => {
      resumed.push(s.isSessionReused())
      s.on('error', () => {})
      s.on('data', () => s.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const origin = new URL(`https://localhost:${(server.address() as AddressInfo).port}`)
    const trusted = new H1Pool({ origin, ...OPTS, ca: [pem.certPem] })
    const untrusted = new H1Pool({ origin, ...OPTS })
    try {
      assert.equal((await send(trusted, 'GET', '/1')).body, 'ok')
      assert.equal((await send(trusted, 'GET', '/2')).body, 'ok')
      assert.deepEqual(resumed, [false, true], 'the second connection resumed the session of the first')
      const r = await send(untrusted, 'GET', '/3')
      assert.equal(r.error?.code, 'DEPTH_ZERO_SELF_SIGNED_CERT')
    } finally {
      await trusted.close()
      await untrusted.close()
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
