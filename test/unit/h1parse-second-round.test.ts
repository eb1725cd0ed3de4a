/**
 * Issue 13, upstream parser (second round), at the unit level: an incomplete head with bare LF
 * or bare CR line ends is refused on the packet that shows it (not after the headers timeout), at
 * every packet split; and the relayed header list carries one normalized Content-Length, none on
 * 204 and 304.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ResponseParseError, ResponseParser, type ResponseSink } from '../../src/upstream/h1parse.ts'
import { responseHeaders } from '../../src/upstream/forward.ts'

const sink: ResponseSink = { onInfo() {}, onHead() {}, onBody() {} }

/** Feed `text` split at `cuts`; the index of the piece that threw, or -1 when none did. */
function failsAt(text: string, cuts: number[]): { piece: number; code: string | undefined } {
  const p = new ResponseParser(16 * 1024)
  p.reset(sink, false)
  const b = Buffer.from(text, 'latin1')
  const bounds = [0, ...cuts, b.length]
  for (let k = 0; k + 1 < bounds.length; k++) {
    try {
      p.feed(b.subarray(bounds[k], bounds[k + 1]))
    } catch (e) {
      assert.ok(e instanceof ResponseParseError)
      return { piece: k, code: e.code }
    }
  }
  return { piece: -1, code: undefined }
}

describe('h1parse: bare line ends in an incomplete head fail at once', () => {
  const CASES: [string, string, number][] = [
    // what, bytes, offset of the offending byte
    ['status line ended by LF', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok', 15],
    ['header ended by LF', 'HTTP/1.1 200 OK\r\nContent-Length: 2\n', 34],
    ['status line ended by CR alone', 'HTTP/1.1 200 OK\rContent-Length: 2\r', 15],
    ['LF LF after a CRLF head', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok', 36],
  ]
  for (const [what, text, bad] of CASES) {
    it(`${what}: refused whole, and at every single split on the piece holding the bad byte`, () => {
      const whole = failsAt(text, [])
      assert.equal(whole.piece, 0)
      assert.ok(whole.code?.startsWith('HPE_'))
      for (let cut = 1; cut < text.length; cut++) {
        const r = failsAt(text, [cut])
        // A bare CR is known only when the byte after it has arrived.
        const badIsCr = text.charCodeAt(bad) === 13
        const expected = cut <= bad || (badIsCr && cut === bad + 1) ? 1 : 0
        assert.equal(r.piece, expected, `split at ${cut}: refused on piece ${r.piece}`)
      }
    })
  }

  it('a CRLF split between packets is not a bare line end', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok'
    for (let a = 1; a < text.length; a++) for (let b = a + 1; b < text.length; b += 3) assert.equal(failsAt(text, [a, b]).piece, -1, `split at ${a}, ${b}`)
  })

  it('a head still in progress with clean CRLF line ends waits (no false refusal)', () => {
    const p = new ResponseParser(16 * 1024)
    p.reset(sink, false)
    p.feed(Buffer.from('HTTP/1.1 200 OK\r\nX-A: b\r'))
    p.feed(Buffer.from('\nX-B: c\r\n'))
    assert.equal(p.headDone, false)
  })
})

describe('responseHeaders: Content-Length relayed once, normalized; none on 204/304', () => {
  it('a list of equal values becomes one number', () => {
    const r = responseHeaders(['Content-Type', 'text/plain', 'Content-Length', '5, 5'])
    assert.deepEqual(r.list, ['Content-Type', 'text/plain', 'Content-Length', '5'])
    assert.equal(r.contentLength, 5)
  })

  it('a repeated header is relayed once (the first, in its place)', () => {
    const r = responseHeaders(['Content-Length', '5', 'X-Between', '1', 'content-length', '5'])
    assert.deepEqual(r.list, ['Content-Length', '5', 'X-Between', '1'])
    assert.equal(r.contentLength, 5)
  })

  it('bodiless (204, 304): Content-Length dropped, everything else kept', () => {
    const r = responseHeaders(['Content-Length', '5', 'ETag', '"v1"'], true)
    assert.deepEqual(r.list, ['ETag', '"v1"'])
    assert.ok(Number.isNaN(r.contentLength))
  })

  it('a single value is relayed as it came', () => {
    assert.deepEqual(responseHeaders(['content-length', '12']).list, ['content-length', '12'])
  })
})

describe('h1parse: shapes the differential test against llhttp found accepted (now refused, like llhttp)', () => {
  const parse = (text: string): { body: string; done: boolean } => {
    const p = new ResponseParser(16 * 1024)
    let body = ''
    p.reset({ onInfo() {}, onHead() {}, onBody: (c) => (body += c.toString('latin1')) }, false)
    p.feed(Buffer.from(text, 'latin1'))
    return { body, done: p.done }
  }
  const CHUNKED = (ext: string): string => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2${ext}\r\nok\r\n0\r\n\r\n`

  for (const ext of ['; a = b', ' ;a=b', ';a =b', ';a= b', ';', ';=b', ';a=', ';a="unterminated', ';a="x\x01"', ';a=b c']) {
    it(`chunk extension ${JSON.stringify(ext)} is refused`, () => {
      assert.throws(() => parse(CHUNKED(ext)), (e: unknown) => e instanceof ResponseParseError && e.code.startsWith('HPE_'))
    })
  }

  for (const ext of [';a=b', ';a', ';a=b;c', ';a="quoted"', ';a="q\\"x"', ';a=b;c="d e"']) {
    it(`chunk extension ${JSON.stringify(ext)} is accepted and skipped`, () => {
      const r = parse(CHUNKED(ext))
      assert.equal(r.done, true)
      assert.equal(r.body, 'ok')
    })
  }

  for (const te of ['chunked\t', 'chunked ', 'chunked \t']) {
    it(`Transfer-Encoding: ${JSON.stringify(te)} is refused (llhttp reads chunked<HTAB> as another coding)`, () => {
      assert.throws(
        () => parse(`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\n\r\n2\r\nok\r\n0\r\n\r\n`),
        (e: unknown) => (e as ResponseParseError).code === 'HPE_INVALID_TRANSFER_ENCODING',
      )
    })
  }

  it('Transfer-Encoding with leading whitespace (OWS) is still chunked', () => {
    assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding:\t chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n').body, 'ok')
  })
})
