/**
 * What llhttp does not tell gatehouse about an HTTP/1.x request line.
 *
 * - llhttp (Node 20) skips repeated spaces between the parts of the request line, so
 *   `GET  / HTTP/1.1` and `GET /  HTTP/1.1` reach the handler as if they were well-formed.
 *   RFC 9112 §3 allows exactly one SP; a recipient that is lenient here parses differently from
 *   the server behind it (a request-smuggling ingredient), so gatehouse refuses them (400).
 * - It bounds the whole head (request line and fields) with one limit, and its overflow error
 *   does not say where the limit was crossed. A head overflow is 414 only when the request line
 *   itself was still going; anything else is 431 — whatever the packet boundaries, so the bytes
 *   of every packet that carries a head in progress are looked at, not only the last one.
 *
 * Both need the raw bytes of the request line, which Node never hands to JavaScript when its
 * parser consumes the socket directly (its fast path). This module hooks the parser's own
 * callbacks for that connection (message begin, headers complete, end of each packet) and copies
 * a packet only while a request line is in it: a head that arrives in one packet is looked at
 * once, when its headers are complete. Without the hooks (another Node version), the overflow
 * falls back to the last packet and the request-line check is skipped: never a crash.
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** Per-connection state of the request line being received. */
interface LineState {
  /** The current message's request line has ended (or there is no message in progress). */
  lineDone: boolean
  /** Where the current message begins in the packet being parsed; -1: unknown (judge by heuristic). */
  start: number
  /** Where the next message would begin in the current packet; -1 when unknown. */
  cursor: number
  /** The first bytes of the request line so far (latin1, at most HEAD_KEEP). */
  head: string
  /** The last bytes of the request line so far (at most TAIL_KEEP). */
  tail: string
  /** Why the current request line is refused, when it is. */
  bad: string | undefined
}

/** Longer than any method llhttp knows plus two separators: a doubled SP after the method is inside. */
const HEAD_KEEP = 64
/** ` HTTP/1.1\r` and a doubled SP before it. */
const TAIL_KEEP = 16
const LF = 0x0a
const CR = 0x0d

const STATE = Symbol('gatehouse.requestLine')
const HOOKED = Symbol('gatehouse.requestLineHooks')

interface ParserLike {
  [k: number]: unknown
  [HOOKED]?: true
  socket: (Socket & { [STATE]?: LineState }) | null
  incoming: IncomingMessage | null
  execute?: (d: Buffer) => unknown
  getCurrentBuffer(): Buffer
  constructor: { kOnMessageBegin?: number; kOnHeadersComplete?: number; kOnExecute?: number; prototype: { execute?: (d: Buffer) => unknown } }
}

type HookedSocket = Socket & { parser?: ParserLike | null; [STATE]?: LineState }

function stateOf(parser: ParserLike): LineState | undefined {
  return parser.socket?.[STATE]
}

/**
 * Follow the request lines of a data-listener connection. Call it from the server's own
 * `connection` (or `secureConnection`) listener, after Node's: the parser is attached then.
 */
export function trackRequestLines(socket: Socket): void {
  const s = socket as HookedSocket
  const parser = s.parser
  if (parser === undefined || parser === null || typeof parser.getCurrentBuffer !== 'function') return
  const k = parser.constructor
  const kBegin = k.kOnMessageBegin
  const kHeaders = k.kOnHeadersComplete
  const kExecute = k.kOnExecute
  if (typeof kBegin !== 'number' || typeof kHeaders !== 'number' || typeof kExecute !== 'number') return
  const onExecute = parser[kExecute]
  const onHeaders = parser[kHeaders]
  if (typeof onExecute !== 'function' || typeof onHeaders !== 'function') return
  s[STATE] = { lineDone: true, start: 0, cursor: 0, head: '', tail: '', bad: undefined }
  // Node resets the message-begin and packet callbacks whenever it frees a parser: set per connection.
  parser[kBegin] = onMessageBegin
  // Parsers are pooled and reused across connections (and by node:http clients): the other hooks
  // are installed once per parser and find their state through parser.socket, so a reused parser
  // without state runs Node's callbacks unchanged.
  if (parser[HOOKED] !== true) {
    parser[HOOKED] = true
    const headersComplete = onHeaders as (...a: unknown[]) => unknown
    parser[kHeaders] = function (this: ParserLike, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown, f: unknown, g: unknown, h: unknown, i: unknown): unknown {
      const st = stateOf(this)
      if (st === undefined) return headersComplete.call(this, a, b, c, d, e, f, g, h, i)
      // A head in one packet is looked at here, once; -1: the head end is not in this packet.
      const headEnd = st.lineDone ? -1 : scan(st, this.getCurrentBuffer(), Infinity)
      st.lineDone = true
      st.cursor = -1
      const r = headersComplete.call(this, a, b, c, d, e, f, g, h, i)
      // The next message starts right after this head when there is no body in between.
      const inc = this.incoming
      if (headEnd >= 0 && inc !== null && inc.headers['transfer-encoding'] === undefined && (inc.headers['content-length'] ?? '0') === '0') st.cursor = headEnd
      return r
    }
    // The JavaScript path (a socket whose first bytes were read before the parser was attached,
    // e.g. after the h2c preface check) calls execute() instead of the packet callback.
    const execute = k.prototype.execute
    if (typeof execute === 'function') {
      parser.execute = function (this: ParserLike, d: Buffer): unknown {
        const r = execute.call(this, d)
        const st = stateOf(this)
        if (st !== undefined) endPacket(st, () => d, r)
        return r
      }
    }
  }
  // The packet callback is bound per connection by Node: wrap this connection's.
  const packetDone = onExecute as (ret: unknown) => unknown
  parser[kExecute] = function (ret: unknown): unknown {
    const st = s[STATE]
    if (st !== undefined) endPacket(st, () => parser.getCurrentBuffer(), ret)
    return packetDone(ret)
  }
}

function onMessageBegin(this: ParserLike): void {
  const st = stateOf(this)
  if (st === undefined) return
  st.lineDone = false
  st.start = st.cursor
  st.head = ''
  st.tail = ''
  st.bad = undefined
}

/** After a packet: look at a request line still in progress (up to the error, when there was one). */
function endPacket(st: LineState, packet: () => Buffer, ret: unknown): void {
  if (!st.lineDone) {
    const parsed = ret instanceof Error ? (ret as { bytesParsed?: number }).bytesParsed : undefined
    scan(st, packet(), parsed ?? Infinity)
    // A line that goes on continues at the start of the next packet.
    if (!st.lineDone && st.start >= 0) st.start = 0
  }
  st.cursor = 0
}

/**
 * Read the request line's bytes in `buf` up to `end`; judge the line when its LF is there.
 * Returns where the head ends in `buf` (after its empty line), or -1.
 */
function scan(st: LineState, buf: Buffer, end: number): number {
  if (st.start < 0) return -1
  const stop = Math.min(end, buf.length)
  let from = st.start
  const continued = st.head !== ''
  // RFC 9112 §2.2: empty lines before a request line are ignored (llhttp skips them too).
  if (!continued) while (from < stop && (buf[from] === CR || buf[from] === LF)) from++
  const lf = buf.indexOf(LF, from)
  if (lf === -1 || lf >= stop) {
    // The line goes on in the next packet (rare: a long target, or a client writing byte by byte).
    keep(st, buf, from, stop)
    return -1
  }
  st.lineDone = true
  if (continued) {
    keep(st, buf, from, lf)
    if (st.head.includes('  ') || st.tail.includes('  ')) st.bad = DOUBLE_SPACE
  } else if (doubledSpace(buf, from, lf)) st.bad = DOUBLE_SPACE
  const headEnd = buf.indexOf(CRLFCRLF, lf - 1)
  return headEnd === -1 ? -1 : headEnd + 4
}

const DOUBLE_SPACE = 'more than one space between the parts of the request line'
const SP = 0x20
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1')

/**
 * A line that llhttp went on to parse has no space inside the method, target or version, so a
 * doubled space can only follow the first space or precede `HTTP/x.y` (8 bytes, then CR LF).
 * Two byte checks instead of a copy of the line: this runs for every request.
 */
function doubledSpace(buf: Buffer, from: number, lf: number): boolean {
  const sp = buf.indexOf(SP, from)
  if (sp !== -1 && sp < lf && buf[sp + 1] === SP) return true
  return lf - 11 >= from && buf[lf - 11] === SP
}

/** Keep the first and last bytes of a line that spans packets (enough to see doubled spaces). */
function keep(st: LineState, buf: Buffer, from: number, to: number): void {
  if (st.head.length < HEAD_KEEP) st.head += buf.toString('latin1', from, Math.min(to, from + HEAD_KEEP - st.head.length))
  st.tail = (st.tail + buf.toString('latin1', Math.max(from, to - TAIL_KEEP), to)).slice(-TAIL_KEEP)
}

/**
 * Why this HTTP/1.x request's line is refused (400), or undefined: repeated spaces, or a version
 * other than 1.0 and 1.1 (llhttp admits `HTTP/2.0` and `HTTP/0.9` in an HTTP/1.x request line;
 * HTTP/2 is spoken with its own framing, never with such a line).
 */
export function requestLineProblem(req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor !== 1 || (req.httpVersionMinor !== 0 && req.httpVersionMinor !== 1)) return `HTTP version ${req.httpVersionMajor}.${req.httpVersionMinor} in an HTTP/1.x request line`
  return (req.socket as HookedSocket | null)?.[STATE]?.bad
}

/**
 * Whether a head overflow (HPE_HEADER_OVERFLOW) happened inside the request line: decided from
 * the connection's state when it is known; otherwise a best guess from the last packet (the
 * packet has no line end at all and is longer than the URL limit, or its first line is).
 */
export function overflowInRequestLine(socket: Duplex, packet: Buffer | undefined, maxUrlBytes: number): boolean {
  const st = (socket as Duplex & { [STATE]?: LineState })[STATE]
  if (st !== undefined && st.start >= 0) return !st.lineDone
  if (packet === undefined) return false
  const eol = packet.indexOf('\r\n')
  return eol === -1 ? packet.length > maxUrlBytes : eol > maxUrlBytes
}
