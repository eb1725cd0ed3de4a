/**
 * A strict HTTP/1.1 response parser for the upstream hop (RFC 9112), fed with the socket's
 * packets. It decides the framing of each response and hands the body on without copying.
 *
 * Strict where a lenient parser would let a misframed response through to a client (response
 * splitting and queue poisoning, as in the smuggling advisories of HAProxy and Node's own
 * llhttp): only `HTTP/1.0` and `HTTP/1.1` with a three-digit status; header names must be
 * tokens with the colon right after them; no control characters but HTAB in values; CRLF line
 * ends only; no obs-fold; Content-Length only as digits, and several only when equal;
 * Transfer-Encoding only as `chunked` alone, and never together with Content-Length; chunk
 * extensions only as `;name[=value]` without whitespace.
 * Anything else is a {@link ResponseParseError} (`HPE_*` code), answered 502 and the connection
 * closed, never reused. Where this differs from llhttp is listed in docs/security.md ("The
 * upstream parser and llhttp") and held there by test/unit/h1parse-differential.test.ts.
 */

/** Why a response was refused; the code is what `translate` maps to ERR_UPSTREAM_BAD_RESPONSE. */
export class ResponseParseError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'ResponseParseError'
    this.code = code
  }
}

/** Where the parser sends what it found. Called synchronously from {@link ResponseParser.feed}. */
export interface ResponseSink {
  /** A 1xx informational head (not 101): skipped, the final one follows. */
  onInfo(status: number): void
  /** The final head: status and the flat `[name, value, …]` list in the upstream's spelling. */
  onHead(status: number, raw: string[]): void
  /** A piece of the body (a view into the packet, not a copy). */
  onBody(chunk: Buffer): void
}

// Token characters (RFC 9110 §5.6.2).
const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN[c.charCodeAt(0)] = 1
const HEX = new Int8Array(256).fill(-1)
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/
const PREFIX = 'HTTP/1.'
const CRLFCRLF = Buffer.from('\r\n\r\n')

const HEAD = 0
const BODY_LENGTH = 1
const CHUNK_SIZE = 2
const CHUNK_DATA = 3
const CHUNK_END = 4
const TRAILERS = 5
const BODY_UNTIL_CLOSE = 6
const DONE = 7

/** A chunk-size line or a trailer line longer than this is refused. */
const MAX_LINE = 8192

const bad = (code: string, message: string): ResponseParseError => new ResponseParseError(code, message)

/** The parser of one connection; {@link reset} before each response. */
export class ResponseParser {
  readonly #maxHead: number
  #sink: ResponseSink | undefined
  #state = DONE
  #noBody = false
  #pending: Buffer | undefined
  #left = 0
  #line = ''
  #trailerBytes = 0
  #crlfSeen = 0
  /** The final head said the connection may carry another exchange. */
  keepAlive = false
  /** The upstream's `Keep-Alive: timeout=N` hint in ms (0: none). */
  keepAliveHint = 0
  /** Bytes came after the end of the response (an unsolicited answer): the connection is poisoned. */
  extra = false

  constructor(maxHeadBytes: number) {
    this.#maxHead = maxHeadBytes
  }

  /** Expect a new response; `noBody` for the answer to HEAD. */
  reset(sink: ResponseSink, noBody: boolean): void {
    this.#sink = sink
    this.#state = HEAD
    this.#noBody = noBody
    this.#pending = undefined
    this.keepAlive = false
    this.keepAliveHint = 0
    this.extra = false
  }

  /** The response is complete. */
  get done(): boolean {
    return this.#state === DONE
  }

  /** Some of the response has arrived (a retry on a fresh connection is no longer safe). */
  get started(): boolean {
    return this.#state !== HEAD || this.#pending !== undefined
  }

  /** The final head has been parsed. */
  get headDone(): boolean {
    return this.#state !== HEAD
  }

  /** The peer closed: completes a close-delimited body; otherwise the response was cut (false). */
  eof(): boolean {
    if (this.#state === BODY_UNTIL_CLOSE) {
      this.#state = DONE
      return true
    }
    return this.#state === DONE
  }

  /** Parse a packet; throws a {@link ResponseParseError} on anything malformed. */
  feed(b: Buffer): void {
    let i = 0
    const n = b.length
    while (i < n) {
      switch (this.#state) {
        case HEAD:
          i = this.#head(b, i)
          break
        case BODY_LENGTH:
        case CHUNK_DATA: {
          const take = Math.min(this.#left, n - i)
          this.#left -= take
          const chunk = i === 0 && take === n ? b : b.subarray(i, i + take)
          i += take
          if (this.#left === 0) this.#state = this.#state === BODY_LENGTH ? DONE : CHUNK_END
          this.#sink!.onBody(chunk)
          break
        }
        case CHUNK_END: {
          // The CRLF after a chunk's data (it may arrive split).
          const want = this.#crlfSeen === 0 ? 13 : 10
          if (b[i] !== want) throw bad('HPE_INVALID_CHUNK_SIZE', 'chunk data not followed by CRLF')
          i++
          if (++this.#crlfSeen === 2) {
            this.#crlfSeen = 0
            this.#state = CHUNK_SIZE
          }
          break
        }
        case CHUNK_SIZE:
        case TRAILERS: {
          const lf = b.indexOf(10, i)
          const end = lf < 0 ? n : lf
          this.#line += b.toString('latin1', i, end)
          if (this.#line.length > MAX_LINE) throw bad('HPE_HEADER_OVERFLOW', 'chunk-size or trailer line too long')
          i = end
          if (lf < 0) break
          i++
          const line = this.#line
          this.#line = ''
          if (line.length === 0 || line.charCodeAt(line.length - 1) !== 13) throw bad('HPE_LF_EXPECTED', 'bare LF in a chunked body')
          if (this.#state === CHUNK_SIZE) this.#chunkSize(line.slice(0, -1))
          else this.#trailer(line.slice(0, -1))
          break
        }
        case BODY_UNTIL_CLOSE: {
          const chunk = i === 0 ? b : b.subarray(i)
          i = n
          this.#sink!.onBody(chunk)
          break
        }
        default:
          // DONE: the upstream answered more than it was asked.
          this.extra = true
          return
      }
    }
  }

  #head(b: Buffer, i: number): number {
    let buf = b
    let from = i
    let searchFrom = i
    if (this.#pending !== undefined) {
      const prev = this.#pending.length
      buf = Buffer.concat([this.#pending, b.subarray(i)])
      from = 0
      searchFrom = Math.max(0, prev - 3)
    }
    // Refuse what is not HTTP/1.x as soon as the first bytes show it, without waiting for a head
    // that may never end (a banner, a TLS record).
    const seen = Math.min(PREFIX.length, buf.length - from)
    for (let k = 0; k < seen; k++) if (buf[from + k] !== PREFIX.charCodeAt(k)) throw bad('HPE_INVALID_CONSTANT', 'the upstream did not answer HTTP/1.x')
    const end = buf.indexOf(CRLFCRLF, searchFrom)
    if (end < 0) {
      if (buf.length - from > this.#maxHead) throw bad('HPE_HEADER_OVERFLOW', `response head over ${this.#maxHead} bytes`)
      // A head with bare LF (or bare CR) line ends never shows CRLFCRLF: refuse it now rather
      // than wait out the headers timeout (RFC 9112 §2.2: a recipient may refuse bare CR; gatehouse
      // refuses bare LF too, docs/security.md). A complete head is checked by #parseHead.
      lineEnds(buf, Math.max(from, searchFrom - 1), buf.length)
      // A copy when it is a view of the packet: the packet's memory is reused for the next read.
      this.#pending = buf !== b ? buf : Buffer.from(buf.subarray(from))
      return b.length
    }
    if (end - from > this.#maxHead) throw bad('HPE_HEADER_OVERFLOW', `response head over ${this.#maxHead} bytes`)
    this.#pending = undefined
    this.#parseHead(buf.toString('latin1', from, end))
    // Index into `b` just after the head.
    const after = end + 4
    return buf === b ? after : i + (after - (buf.length - (b.length - i)))
  }

  #parseHead(s: string): void {
    let eol = s.indexOf('\r\n')
    if (eol < 0) eol = s.length
    const m = STATUS_LINE.exec(s.slice(0, eol))
    if (m === null) throw bad('HPE_INVALID_STATUS', 'malformed status line')
    const minor = m[1] as string
    const status = Number(m[2])
    const raw: string[] = []
    let contentLength = -1
    let chunked = false
    let te = false
    let close = false
    let keepAliveHeader = false
    let hint = 0
    const n = s.length
    let p = eol + 2
    while (p < n) {
      const ns = p
      while (p < n && TOKEN[s.charCodeAt(p)] === 1) p++
      if (p === ns || p >= n || s.charCodeAt(p) !== 58) throw bad('HPE_INVALID_HEADER_TOKEN', 'malformed header name (or obs-fold, or space before the colon)')
      const name = s.slice(ns, p)
      p++
      let c = s.charCodeAt(p)
      while (p < n && (c === 32 || c === 9)) c = s.charCodeAt(++p)
      const vs = p
      let ve = p
      while (p < n) {
        c = s.charCodeAt(p)
        if (c === 13) break
        if ((c < 32 && c !== 9) || c === 127) throw bad('HPE_INVALID_HEADER_TOKEN', 'control character in a header value')
        p++
        if (c !== 32 && c !== 9) ve = p
      }
      if (p < n) {
        if (s.charCodeAt(p + 1) !== 10) throw bad('HPE_LF_EXPECTED', 'bare CR in the response head')
        p += 2
      }
      const value = s.slice(vs, ve)
      raw.push(name, value)
      // Only the framing and connection headers are looked at (by length first: cheap).
      const len = name.length
      if (len === 14 || len === 17 || len === 10) {
        const lower = name.toLowerCase()
        if (lower === 'content-length') contentLength = lengthValue(value, contentLength)
        else if (lower === 'transfer-encoding') {
          if (te || value.toLowerCase() !== 'chunked') throw bad('HPE_INVALID_TRANSFER_ENCODING', 'a transfer coding other than chunked alone')
          // Trailing whitespace is not part of a field value (RFC 9110 §5.5), but llhttp reads
          // `chunked<HTAB>` as another coding (to the close): two parsers, two framings. Refused.
          if (ve !== p) throw bad('HPE_INVALID_TRANSFER_ENCODING', 'whitespace after the transfer coding')
          te = true
          chunked = true
        } else if (lower === 'connection') {
          const v = value.toLowerCase()
          if (v === 'keep-alive') keepAliveHeader = true
          else if (v === 'close') close = true
          else if (v.includes(',')) {
            if (hasToken(v, 'close')) close = true
            else if (hasToken(v, 'keep-alive')) keepAliveHeader = true
          }
        } else if (lower === 'keep-alive') hint = keepAliveTimeout(value)
      }
    }
    if (te && contentLength >= 0) throw bad('HPE_UNEXPECTED_CONTENT_LENGTH', 'both Content-Length and Transfer-Encoding')
    if (status < 200) {
      if (status === 101) throw bad('HPE_UNEXPECTED_UPGRADE', 'a protocol switch that was not asked for')
      this.#sink!.onInfo(status)
      return
    }
    this.keepAlive = minor === '0' ? keepAliveHeader && !close : !close
    this.keepAliveHint = hint
    // RFC 9112 §6.3: HEAD answers, 204 and 304 have no body whatever they declare.
    if (this.#noBody || status === 204 || status === 304) this.#state = DONE
    else if (chunked) this.#state = CHUNK_SIZE
    else if (contentLength >= 0) {
      this.#left = contentLength
      this.#state = contentLength === 0 ? DONE : BODY_LENGTH
    } else {
      this.#state = BODY_UNTIL_CLOSE
      this.keepAlive = false
    }
    this.#sink!.onHead(status, raw)
  }

  #chunkSize(line: string): void {
    let size = 0
    let k = 0
    for (; k < line.length; k++) {
      const h = HEX[line.charCodeAt(k)] as number
      if (h < 0) break
      size = size * 16 + h
      if (k >= 13) throw bad('HPE_INVALID_CHUNK_SIZE', 'chunk size too large')
    }
    if (k === 0) throw bad('HPE_INVALID_CHUNK_SIZE', 'malformed chunk size')
    if (k < line.length) chunkExtensions(line, k)
    if (size === 0) {
      this.#state = TRAILERS
      this.#trailerBytes = 0
    } else {
      this.#left = size
      this.#state = CHUNK_DATA
    }
  }

  #trailer(line: string): void {
    if (line.length === 0) {
      this.#state = DONE
      return
    }
    // Trailers are not relayed (gatehouse does not forward trailer fields); they must still parse.
    this.#trailerBytes += line.length + 2
    if (this.#trailerBytes > this.#maxHead) throw bad('HPE_HEADER_OVERFLOW', 'trailers too large')
    let p = 0
    while (p < line.length && TOKEN[line.charCodeAt(p)] === 1) p++
    if (p === 0 || line.charCodeAt(p) !== 58) throw bad('HPE_INVALID_HEADER_TOKEN', 'malformed trailer field')
    for (p++; p < line.length; p++) {
      const c = line.charCodeAt(p)
      if ((c < 32 && c !== 9) || c === 127) throw bad('HPE_INVALID_HEADER_TOKEN', 'control character in a trailer field')
    }
  }
}

/**
 * Chunk extensions after the size (RFC 9112 §7.1.1): ignored, but they must parse as
 * `;name[=token|"quoted"]`, repeated. Without the optional whitespace (BWS) around `;` and `=`:
 * llhttp in strict mode refuses it too, and a parser that skips it where the next hop does not
 * disagrees with it about where the chunk data starts.
 */
function chunkExtensions(line: string, from: number): void {
  const n = line.length
  let q = from
  while (q < n) {
    if (line.charCodeAt(q) !== 59) throw bad('HPE_INVALID_CHUNK_SIZE', 'malformed chunk size or extension')
    const ns = ++q
    while (q < n && TOKEN[line.charCodeAt(q)] === 1) q++
    if (q === ns) throw bad('HPE_STRICT', 'malformed chunk extension name')
    if (q === n || line.charCodeAt(q) !== 61) continue
    q++
    if (line.charCodeAt(q) === 34) {
      // quoted-string: qdtext or quoted-pair, no controls but HTAB.
      for (q++; ; q++) {
        if (q >= n) throw bad('HPE_STRICT', 'unterminated quoted chunk extension value')
        let c = line.charCodeAt(q)
        if (c === 34) break
        if (c === 92) c = line.charCodeAt(++q)
        if ((c < 32 && c !== 9) || c === 127 || Number.isNaN(c)) throw bad('HPE_STRICT', 'control character in a chunk extension')
      }
      q++
    } else {
      const vs = q
      while (q < n && TOKEN[line.charCodeAt(q)] === 1) q++
      if (q === vs) throw bad('HPE_STRICT', 'malformed chunk extension value')
    }
  }
}

/** Every LF in `b[from, to)` must follow a CR, and every CR be followed by LF (when that byte has arrived). */
function lineEnds(b: Buffer, from: number, to: number): void {
  for (let j = b.indexOf(10, from); j >= 0 && j < to; j = b.indexOf(10, j + 1)) {
    if (j === 0 || b[j - 1] !== 13) throw bad('HPE_CR_EXPECTED', 'bare LF in the response head')
  }
  for (let j = b.indexOf(13, from); j >= 0 && j + 1 < to; j = b.indexOf(13, j + 1)) {
    if (b[j + 1] !== 10) throw bad('HPE_LF_EXPECTED', 'bare CR in the response head')
  }
}

/** A Content-Length value: digits only; a list or a repeat must all be the same number. */
function lengthValue(value: string, prev: number): number {
  let result = prev
  for (const part of value.includes(',') ? value.split(',') : [value]) {
    const v = part.trim()
    if (!/^\d{1,15}$/.test(v)) throw bad('HPE_INVALID_CONTENT_LENGTH', 'malformed Content-Length')
    const len = Number(v)
    if (result >= 0 && len !== result) throw bad('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting Content-Length values')
    result = len
  }
  return result
}

function hasToken(list: string, token: string): boolean {
  for (const t of list.split(',')) if (t.trim() === token) return true
  return false
}

/** `Keep-Alive: timeout=5, max=100` → 5000 (0 when absent or malformed). */
function keepAliveTimeout(value: string): number {
  const m = /(?:^|[,\s])timeout\s*=\s*(\d{1,6})/i.exec(value)
  return m === null ? 0 : Number(m[1]) * 1000
}
