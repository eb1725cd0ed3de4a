/**
 * The upstream response parser (src/upstream/h1parse.ts): framing, every packet split, and the
 * malformed shapes it must refuse (response splitting and queue poisoning reach a client only
 * through a parser that guesses).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ResponseParseError, ResponseParser, type ResponseSink } from '../../src/upstream/h1parse.ts'

interface Seen {
  info: number[]
  status: number | undefined
  raw: string[]
  body: string
}

function sink(): ResponseSink & { seen: Seen } {
  const seen: Seen = { info: [], status: undefined, raw: [], body: '' }
  return {
    seen,
    onInfo: (s) => seen.info.push(s),
    onHead: (s, raw) => {
      seen.status = s
      seen.raw = raw
    },
    onBody: (c) => (seen.body += c.toString('latin1')),
  }
}

/** Parse `text` fed in pieces of `step` bytes (0: whole). */
function parse(text: string, opts: { step?: number; head?: boolean; eof?: boolean } = {}): { p: ResponseParser; seen: Seen; complete: boolean } {
  const p = new ResponseParser(16 * 1024)
  const s = sink()
  p.reset(s, opts.head === true)
  const b = Buffer.from(text, 'latin1')
  const step = opts.step ?? 0
  if (step === 0) p.feed(b)
  else for (let i = 0; i < b.length; i += step) p.feed(b.subarray(i, i + step))
  const complete = opts.eof === true ? p.eof() : p.done
  return { p, seen: s.seen, complete }
}

const CL = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 5\r\n\r\nhello'
const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n'

describe('upstream response parser: framing', () => {
  for (const step of [0, 1, 2, 3, 7]) {
    it(`Content-Length, fed ${step === 0 ? 'whole' : `${step} byte(s) at a time`}: head in order and spelling, body exact`, () => {
      const { p, seen, complete } = parse(CL, { step })
      assert.equal(complete, true)
      assert.equal(seen.status, 200)
      assert.deepEqual(seen.raw, ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Content-Length', '5'])
      assert.equal(seen.body, 'hello')
      assert.equal(p.keepAlive, true)
      assert.equal(p.extra, false)
    })

    it(`chunked with an extension and a trailer, fed ${step === 0 ? 'whole' : `${step} byte(s) at a time`}`, () => {
      const { seen, complete } = parse(CHUNKED, { step })
      assert.equal(complete, true)
      assert.equal(seen.body, 'hello world')
    })
  }

  it('1xx heads are reported and skipped; the final head follows on the same bytes', () => {
    const { seen, complete } = parse('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' + CL)
    assert.deepEqual(seen.info, [100, 103])
    assert.equal(seen.status, 200)
    assert.equal(seen.body, 'hello')
    assert.equal(complete, true)
  })

  it('HEAD, 204 and 304 answers have no body whatever they declare', () => {
    assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', { head: true }).complete, true)
    assert.equal(parse('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n').complete, true)
    assert.equal(parse('HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n').complete, true)
  })

  it('no Content-Length and no Transfer-Encoding: the body runs to the close, and the connection is not kept', () => {
    const r = parse('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end', { eof: true })
    assert.equal(r.complete, true)
    assert.equal(r.seen.body, 'until the end')
    assert.equal(r.p.keepAlive, false)
  })

  it('a close before the declared length is a cut, not a complete response', () => {
    assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf', { eof: true }).complete, false)
    assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', { eof: true }).complete, false)
    assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Le', { eof: true }).complete, false)
  })

  it('keep-alive: HTTP/1.1 by default, not with Connection: close, HTTP/1.0 only when asked; the Keep-Alive timeout hint is read', () => {
    assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n').p.keepAlive, false)
    assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n').p.keepAlive, false)
    assert.equal(parse('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').p.keepAlive, false)
    assert.equal(parse('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n').p.keepAlive, true)
    assert.equal(parse('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n').p.keepAliveHint, 5000)
  })

  it('repeated equal Content-Length values are one length', () => {
    const { seen, complete } = parse('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok')
    assert.equal(complete, true)
    assert.equal(seen.body, 'ok')
  })

  it('bytes after the end of a response (an unsolicited second answer) mark the connection poisoned', () => {
    const { p, seen } = parse('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned')
    assert.equal(seen.body, 'ok')
    assert.equal(p.extra, true)
  })

  it('a body slice is a view into the packet (no copy)', () => {
    const p = new ResponseParser(1024)
    const chunks: Buffer[] = []
    p.reset({ onInfo() {}, onHead() {}, onBody: (c) => chunks.push(c) }, false)
    const packet = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody', 'latin1')
    p.feed(packet)
    assert.equal(chunks.length, 1)
    assert.equal(chunks[0]!.buffer, packet.buffer)
  })
})

describe('upstream response parser: refused shapes (each a ResponseParseError with an HPE_ code)', () => {
  const REFUSED: [string, string][] = [
    ['both Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['Transfer-Encoding before Content-Length', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n'],
    ['two different Content-Length values', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!'],
    ['a Content-Length list with different values', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!'],
    ['Content-Length: +2', 'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok'],
    ['Content-Length in hex', 'HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok'],
    ['a transfer coding other than chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'],
    ['two Transfer-Encoding headers', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok'],
    ['no status code', 'HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok'],
    ['a status starting with 0', 'HTTP/1.1 099 Odd\r\n\r\n'],
    ['not HTTP (ICY)', 'ICY 200 OK\r\nContent-Length: 2\r\n\r\nok'],
    ['an invalid version', 'HTTP/1.x 200 OK\r\nContent-Length: 2\r\n\r\nok'],
    ['HTTP/2.0 in an HTTP/1 status line', 'HTTP/2.0 200 OK\r\n\r\n'],
    ['NUL in a header value', 'HTTP/1.1 200 OK\r\nX-Evil: a\0b\r\nContent-Length: 2\r\n\r\nok'],
    ['whitespace before a header colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'],
    ['obs-fold (a continuation line)', 'HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n'],
    ['a bare LF inside the head', 'HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 0\r\n\r\n'],
    ['a bare CR inside the head', 'HTTP/1.1 200 OK\r\nX-A: a\rX-B: b\r\nContent-Length: 0\r\n\r\n'],
    ['a header line without a colon', 'HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n'],
    ['a non-token header name', 'HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 0\r\n\r\n'],
    ['an unasked-for protocol switch (101)', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n'],
    ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['a chunk size too large', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n'],
    ['chunk data not followed by CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n'],
    ['a bare LF after a chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n'],
    ['a malformed trailer', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n'],
  ]
  for (const [what, text] of REFUSED) {
    for (const step of [0, 1]) {
      it(`${what}${step === 1 ? ' (byte by byte)' : ''}`, () => {
        assert.throws(
          () => parse(text, { step }),
          (e: unknown) => e instanceof ResponseParseError && e.code.startsWith('HPE_'),
        )
      })
    }
  }

  it('a banner or a TLS record is refused from its first bytes, without waiting for a head that never ends', () => {
    for (const start of ['SSH-2.0-OpenSSH', '\x16\x03\x01\x00', 'h']) {
      const p = new ResponseParser(1024)
      p.reset(sink(), false)
      assert.throws(() => p.feed(Buffer.from(start, 'latin1')), ResponseParseError, JSON.stringify(start))
    }
  })

  it('a head over the limit is refused, whole or arriving in pieces', () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`
    const p = new ResponseParser(1024)
    p.reset(sink(), false)
    assert.throws(() => p.feed(Buffer.from(big)), (e: unknown) => (e as ResponseParseError).code === 'HPE_HEADER_OVERFLOW')
    const q = new ResponseParser(1024)
    q.reset(sink(), false)
    assert.throws(() => {
      for (let i = 0; i < big.length - 4; i += 100) q.feed(Buffer.from(big.slice(i, i + 100)))
    }, (e: unknown) => (e as ResponseParseError).code === 'HPE_HEADER_OVERFLOW')
  })
})
