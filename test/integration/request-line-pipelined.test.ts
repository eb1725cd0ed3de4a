/**
 * The request-line check (RFC 9112 §3: exactly one SP; server/requestLine.ts) for pipelined
 * requests: a second request whose line follows a Content-Length body, a `Content-Length: 00`,
 * or a head that ended in an earlier packet is judged like the first one — 400 ERR_BAD_REQUEST,
 * connection closed, the upstream never saw it — whatever the packet boundaries. Where the
 * second request's start cannot be known (it follows a chunked body in the same packet) it is
 * refused too: fail closed (docs/security.md). Well-formed pipelined requests, with and without
 * bodies, split at every byte around the boundary, are all served.
 *
 * Real gatehouse in-process (TLS off so the bytes on the wire are the test's), a real recording
 * upstream, raw node:net clients; HTTP/2 on (the first bytes read in JavaScript behind the h2c
 * preface check) and off (Node's parser reads the socket itself).
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'req-line-pipelined-key-2b9d4e'
const H = `Host: gatehouse.test\r\nAuthorization: Bearer ${KEY}\r\n`

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Reply {
  status: number
  headers: string
  body: string
}

/** The complete responses in `text` (Content-Length or chunked bodies). */
function responses(text: string): Reply[] {
  const out: Reply[] = []
  let at = 0
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at)
    if (end === -1) return out
    const head = text.slice(at, end)
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head)
    if (m === null) return out
    let p = end + 4
    let body = ''
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const eol = text.indexOf('\r\n', p)
        if (eol === -1) return out
        const size = parseInt(text.slice(p, eol), 16)
        if (text.length < eol + 2 + size + 2) return out
        body += text.slice(eol + 2, eol + 2 + size)
        p = eol + 2 + size + 2
        if (size === 0) break
      }
    } else if (cl !== null) {
      if (text.length < p + Number(cl[1])) return out
      body = text.slice(p, p + Number(cl[1]))
      p += Number(cl[1])
    }
    out.push({ status: Number(m[1]), headers: head, body })
    at = p
  }
}

interface Exchange {
  replies: Reply[]
  closed: boolean
}

/**
 * Send `packets` on one connection (Nagle off; each write flushed, then a pause, so that each
 * arrives as a packet of its own), then wait for `expect` responses (and, when a refusal is
 * expected, for the close).
 */
function exchange(p: TestProxy, packets: readonly string[], expect: number, opts: { gap?: number; waitBetween?: boolean; refusal?: boolean } = {}): Promise<Exchange> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname)
    s.setNoDelay(true)
    let text = ''
    let closed = false
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      resolve({ replies: responses(text), closed })
    }
    const timer = setTimeout(finish, 5000)
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1')
      if (responses(text).length >= expect) setTimeout(finish, opts.refusal === true ? 500 : 0)
    })
    s.on('error', () => {})
    s.on('close', () => {
      closed = true
      finish()
    })
    s.once('connect', () => {
      void (async () => {
        for (let i = 0; i < packets.length; i++) {
          if (closed) return
          if (opts.waitBetween === true && i > 0) while (responses(text).length < i && !closed) await sleep(2)
          await new Promise<void>((r) => s.write(packets[i] as string, 'latin1', () => r()))
          await sleep(opts.gap ?? 5)
        }
      })()
    })
    s.once('error', reject)
  })
}

/** `bytes` cut at `at` (two packets); at 0 or the end: one packet. */
function cut(bytes: string, at: number): string[] {
  return at <= 0 || at >= bytes.length ? [bytes] : [bytes.slice(0, at), bytes.slice(at)]
}

/** What reached the upstream (after a moment for anything that should not have). */
async function upstreamUrls(up: RecordingUpstream, settle = 20): Promise<string[]> {
  await sleep(settle)
  return up.requests.map((r) => r.url)
}

function assertRefusedSecond(x: Exchange, label: string): void {
  assert.equal(x.replies.length, 2, `${label}: two responses, got ${JSON.stringify(x.replies.map((r) => r.status))}`)
  assert.equal(x.replies[0]?.status, 200, label)
  const second = x.replies[1] as Reply
  assert.equal(second.status, 400, `${label}: ${second.body}`)
  assert.equal((JSON.parse(second.body) as { reason?: string }).reason, 'ERR_BAD_REQUEST', label)
  assert.ok(x.closed, `${label}: gatehouse kept the connection open`)
}

// Pipelined pairs: the first request (its head and body), the second request's line and head.
const POST_CL1 = `POST /a HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\nX`
const GET_CL00 = `GET /a HTTP/1.1\r\n${H}Content-Length: 00\r\n\r\n`
const GET_PLAIN = `GET /a HTTP/1.1\r\n${H}\r\n`
const POST_CL10 = `POST /a HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nab  cd  ef` // spaces a line check must not see
const POST_CHUNKED = `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`
const SECOND_OK = `GET /b HTTP/1.1\r\n${H}\r\n`
const SECOND_POST_OK = `POST /b HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyz`
const SECONDS_BAD = [`GET  /b HTTP/1.1\r\n${H}\r\n`, `GET /b  HTTP/1.1\r\n${H}\r\n`]

/** Split points around the boundary: from 4 bytes before the first head's end to 20 bytes into the second line. */
function boundaryCuts(first: string): number[] {
  const headEnd = first.indexOf('\r\n\r\n') + 4
  const out: number[] = []
  for (let i = headEnd - 4; i <= first.length + 20; i++) out.push(i)
  return out
}

for (const h2 of [true, false]) {
  describe(`request line of pipelined requests (HTTP/2 ${h2 ? 'on: behind the h2c preface check' : 'off'})`, () => {
    let up: RecordingUpstream
    let px: TestProxy

    before(async () => {
      usedSecrets.add(KEY)
      up = await startUpstream()
      px = await startProxy({
        env: {
          GATEHOUSE_UPSTREAM_URL: up.url,
          GATEHOUSE_TLS_ENABLED: 'false',
          GATEHOUSE_HTTP2_ENABLED: String(h2),
          AUTHENTICATION_APIKEY_ENABLED: 'true',
          AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
          AUTHENTICATION_APIKEY_USERS: 'pipe-user',
        },
      })
    })
    after(async () => {
      await px?.stop()
      await up?.close()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    // --- the reviewer's reproductions ---------------------------------------------------------

    for (const second of SECONDS_BAD) {
      const shape = second.startsWith('GET  ') ? 'GET  /b' : 'GET /b  '
      it(`after a Content-Length: 1 body, one packet: ${shape} → 200, 400, closed; the upstream saw only /a`, async () => {
        up.reset()
        const x = await exchange(px, [POST_CL1 + second], 2, { refusal: true })
        assertRefusedSecond(x, 'CL 1')
        assert.deepEqual(await upstreamUrls(up), ['/a'])
      })

      it(`after Content-Length: 00, one packet: ${shape} → 200, 400; only /a upstream`, async () => {
        up.reset()
        const x = await exchange(px, [GET_CL00 + second], 2, { refusal: true })
        assertRefusedSecond(x, 'CL 00')
        assert.deepEqual(await upstreamUrls(up), ['/a'])
      })

      it(`the first head ends in the second packet, which carries ${shape} → 200, 400; only /a upstream`, async () => {
        up.reset()
        const x = await exchange(px, [`GET /a HTTP/1.1\r\n${H}`, `\r\n${second}`], 2, { refusal: true })
        assertRefusedSecond(x, 'head split')
        assert.deepEqual(await upstreamUrls(up), ['/a'])
      })

      it(`a Content-Length body that goes on into the packet that carries ${shape} → 200, 400; only /a upstream`, async () => {
        up.reset()
        const x = await exchange(px, [POST_CL10.slice(0, -6), POST_CL10.slice(-6) + second], 2, { refusal: true })
        assertRefusedSecond(x, 'body split')
        assert.deepEqual(await upstreamUrls(up), ['/a'])
      })

      for (const [name, first] of [
        ['a bodyless GET', GET_PLAIN],
        ['Content-Length: 00', GET_CL00],
        ['a Content-Length: 10 body', POST_CL10],
      ] as const) {
        it(`${shape} after ${name}, cut at every byte around the boundary → always 200, 400; only /a upstream`, async () => {
          for (const at of boundaryCuts(first)) {
            up.reset()
            const x = await exchange(px, cut(first + second, at), 2, { refusal: true })
            assertRefusedSecond(x, `cut at ${at}`)
            assert.deepEqual(await upstreamUrls(up), ['/a'], `cut at ${at}`)
          }
        })
      }
    }

    // --- fail closed: a request whose start is unknown ------------------------------------------

    it('a well-formed request in the same packet as the end of a chunked body → 200, 400 (its start is unknown: fail closed); only /a upstream', async () => {
      up.reset()
      const x = await exchange(px, [POST_CHUNKED + SECOND_OK], 2, { refusal: true })
      assertRefusedSecond(x, 'chunked, one packet')
      assert.deepEqual(await upstreamUrls(up), ['/a'])
      up.reset()
      const y = await exchange(px, [POST_CHUNKED.slice(0, -9), POST_CHUNKED.slice(-9) + SECOND_OK], 2, { refusal: true })
      assertRefusedSecond(y, 'chunked end in the second packet')
      assert.deepEqual(await upstreamUrls(up), ['/a'])
    })

    // --- the 414/431 decision for a pipelined head: judged where that head begins ------------

    for (const [name, second, status, reason] of [
      ['a 30 KiB target', `GET /${'t'.repeat(30 * 1024)} HTTP/1.1\r\n${H}\r\n`, 414, 'ERR_URL_TOO_LONG'],
      ['a 100 KiB Cookie', `GET /b HTTP/1.1\r\n${H}Cookie: c=${'c'.repeat(100 * 1024)}\r\n\r\n`, 431, 'ERR_HEADERS_TOO_LARGE'],
    ] as const) {
      it(`${name} pipelined after a Content-Length body in one packet → ${status}, closed; the upstream never saw it`, async () => {
        up.reset()
        const x = await exchange(px, [POST_CL1 + second], 2, { refusal: true })
        const last = x.replies[x.replies.length - 1]
        assert.equal(last?.status, status, JSON.stringify(x.replies.map((r) => r.status)))
        assert.equal((JSON.parse(last.body) as { reason?: string }).reason, reason)
        assert.ok(x.closed)
        assert.ok((await upstreamUrls(up)).every((u) => u === '/a'))
      })
    }

    // --- positive controls: well-formed pipelining is served ------------------------------------

    for (const [name, first] of [
      ['a bodyless GET', GET_PLAIN],
      ['Content-Length: 00', GET_CL00],
      ['a Content-Length: 1 body', POST_CL1],
      ['a Content-Length: 10 body', POST_CL10],
    ] as const) {
      for (const [secondName, second] of [
        ['GET /b', SECOND_OK],
        ['POST /b with a body', SECOND_POST_OK],
      ] as const) {
        it(`well-formed: ${name}, then ${secondName}, cut at every byte around the boundary → 200, 200; the upstream saw both`, async () => {
          for (const at of boundaryCuts(first)) {
            up.reset()
            const x = await exchange(px, cut(first + second, at), 2)
            assert.deepEqual(
              x.replies.map((r) => r.status),
              [200, 200],
              `cut at ${at}: ${x.replies[1]?.body ?? ''}`,
            )
            // gatehouse forwards pipelined requests concurrently: the upstream may see them in either order
            assert.deepEqual((await upstreamUrls(up, 0)).sort(), ['/a', '/b'], `cut at ${at}`)
            const bodies = Object.fromEntries(up.requests.map((r) => [r.url, r.bodyBytes]))
            assert.deepEqual(bodies, { '/a': first.length - first.indexOf('\r\n\r\n') - 4, '/b': second.length - second.indexOf('\r\n\r\n') - 4 }, `cut at ${at}`)
          }
        })
      }
    }

    it('well-formed: three requests with bodies and leading empty lines, one byte per packet → all 200', async () => {
      up.reset()
      const bytes = `${POST_CL1}\r\n${GET_CL00}${POST_CL10}`.replace(/\/a/g, (_, i: number) => `/p${i}`)
      const x = await exchange(px, [...bytes], 3, { gap: 1 })
      assert.deepEqual(
        x.replies.map((r) => r.status),
        [200, 200, 200],
      )
      assert.equal(up.requests.length, 3)
    })

    it('well-formed: a chunked request, then another in a later packet on the same connection → 200, 200', async () => {
      up.reset()
      const x = await exchange(px, [POST_CHUNKED, SECOND_OK], 2, { waitBetween: true })
      assert.deepEqual(
        x.replies.map((r) => r.status),
        [200, 200],
      )
      assert.deepEqual((await upstreamUrls(up)).sort(), ['/a', '/b'])
      // and the line of a request after a chunked one is still checked
      up.reset()
      const y = await exchange(px, [POST_CHUNKED, SECONDS_BAD[0] as string], 2, { waitBetween: true, refusal: true })
      assertRefusedSecond(y, 'after chunked, later packet')
      assert.deepEqual(await upstreamUrls(up), ['/a'])
    })
  })
}
