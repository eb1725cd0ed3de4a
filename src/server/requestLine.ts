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
 * a packet only while a request line is in it, once however many requests are pipelined in it:
 * a head that arrives in one packet is looked at once, when its headers are complete. Without
 * the hooks (another Node version), the overflow falls back to the last packet and the
 * request-line check is skipped: never a crash.
 *
 * Pipelined requests: a request line can only be judged when it is known where in the packet it
 * begins. Node does not say, so the module follows the framing itself: the next message begins
 * after this one's head (`\r\n\r\n`, found in the packet where the headers completed, the last
 * bytes of earlier packets carried over) plus its Content-Length; at the start of a packet when
 * the previous message was complete at the end of the last one. A chunked body's end is not
 * followed (that would mean parsing the chunks again): a request that begins in the same packet as
 * the end of a chunked body has no known start, and it is refused (400, connection closed) rather
 * than served unchecked — fail closed. Clients do not pipeline behind chunked uploads in practice
 * (browsers and Node's agent never pipeline), and the refusal is visible; closing without an
 * answer would leave a client guessing and the request in limbo. See docs/security.md.
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** Per-connection state of the request line being received. */
interface LineState {
  /** The current message's request line has ended (or there is no message in progress). */
  lineDone: boolean
  /** The current message's head has ended (or there is no message in progress). */
  headDone: boolean
  /** Where the current message begins in the packet being parsed; -1: unknown (judge by heuristic). */
  start: number
  /**
   * Where the next message begins, counted from the start of the current packet (past its end
   * while a Content-Length body goes on into later packets); -1 when unknown.
   */
  cursor: number
  /** The last bytes (at most 3) of the head so far from earlier packets: its empty line may straddle. */
  carry: string
  /** The first bytes of the request line so far (latin1, at most HEAD_KEEP). */
  head: string
  /** The last bytes of the request line so far (at most TAIL_KEEP). */
  tail: string
  /** Why the current request line is refused, when it is. */
  bad: string | undefined
  /**
   * The copy of the packet being parsed, once taken (Node copies it on every getCurrentBuffer()
   * call): every request pipelined in one packet shares it, instead of a copy each.
   */
  packet: Buffer | undefined
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
  s[STATE] = { lineDone: true, headDone: true, start: 0, cursor: 0, carry: '', head: '', tail: '', bad: undefined, packet: undefined }
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
      // A head in one packet is looked at here, once (the packet is copied once per request).
      let end = -1
      if (st.start >= 0) {
        const buf = (st.packet ??= this.getCurrentBuffer())
        end = headEnd(st, buf, st.lineDone ? -1 : scan(st, buf, Infinity))
      }
      st.lineDone = true
      st.headDone = true
      st.cursor = -1
      const r = headersComplete.call(this, a, b, c, d, e, f, g, h, i)
      // The next message begins after this one's body (unknown for a chunked one).
      const inc = this.incoming
      const body = inc === null ? -1 : bodyLength(inc)
      if (end >= 0 && body >= 0) st.cursor = end + body
      return r
    }
    // The JavaScript path (a socket whose first bytes were read before the parser was attached,
    // e.g. after the h2c preface check) calls execute() instead of the packet callback.
    const execute = k.prototype.execute
    if (typeof execute === 'function') {
      parser.execute = function (this: ParserLike, d: Buffer): unknown {
        const r = execute.call(this, d)
        const st = stateOf(this)
        if (st !== undefined) endPacket(st, () => d, d.length, this.incoming, r)
        return r
      }
    }
  }
  // The packet callback is bound per connection by Node: wrap this connection's.
  const packetDone = onExecute as (ret: unknown) => unknown
  parser[kExecute] = function (ret: unknown): unknown {
    const st = s[STATE]
    // ret: the bytes parsed, the whole packet unless there was an error (then nothing follows)
    if (st !== undefined) endPacket(st, () => parser.getCurrentBuffer(), typeof ret === 'number' ? ret : 0, parser.incoming, ret)
    return packetDone(ret)
  }
}

function onMessageBegin(this: ParserLike): void {
  const st = stateOf(this)
  if (st === undefined) return
  st.lineDone = false
  st.headDone = false
  st.start = st.cursor
  st.carry = ''
  st.head = ''
  st.tail = ''
  // Fail closed: a request whose first byte cannot be located (it follows a chunked body in the
  // same packet) cannot have its request line checked, so it is not served (module comment).
  st.bad = st.start < 0 ? UNLOCATED : undefined
}

/**
 * After a packet of `len` bytes: look at a head still in progress (up to the error, when there
 * was one), and say where the next message begins in the next packet.
 */
function endPacket(st: LineState, packet: () => Buffer, len: number, inc: IncomingMessage | null, ret: unknown): void {
  if (!st.headDone) {
    if (st.start >= 0) {
      // Only a head that spans packets costs a copy here.
      const buf = st.packet ?? packet()
      if (!st.lineDone) {
        const parsed = ret instanceof Error ? (ret as { bytesParsed?: number }).bytesParsed : undefined
        scan(st, buf, parsed ?? Infinity)
      }
      // The head goes on at the start of the next packet.
      st.carry = (st.carry + buf.toString('latin1', Math.max(st.start, buf.length - 3))).slice(-3)
      st.start = 0
    }
    st.cursor = -1
  } else if (inc === null || inc.complete) st.cursor = 0 // no message in progress
  else st.cursor = st.cursor > len ? st.cursor - len : -1 // a body goes on: where it ends, if known
  st.packet = undefined
}

/** The bytes of a request's body (Content-Length, validated by llhttp), or -1 when chunked. */
function bodyLength(inc: IncomingMessage): number {
  if (inc.headers['transfer-encoding'] !== undefined) return -1
  const cl = inc.headers['content-length']
  if (cl === undefined) return 0
  return /^\d{1,15}$/.test(cl) ? Number(cl) : -1
}

/**
 * Where the head ends in `buf` (after its empty line), or -1. `lf`: where the request line ended
 * in `buf`; -1 when it ended in an earlier packet (the empty line may then straddle packets).
 */
function headEnd(st: LineState, buf: Buffer, lf: number): number {
  if (lf > 0) {
    const i = buf.indexOf(CRLFCRLF, lf - 1)
    return i === -1 ? -1 : i + 4
  }
  for (let k = st.carry.length; k > 0; k--) {
    if (st.carry.endsWith(CRLFCRLF_S.slice(0, k)) && buf.toString('latin1', 0, 4 - k) === CRLFCRLF_S.slice(k)) return 4 - k
  }
  const i = buf.indexOf(CRLFCRLF)
  return i === -1 ? -1 : i + 4
}

/**
 * Read the request line's bytes in `buf` up to `end`; judge the line when its LF is there.
 * Returns where the line's LF is in `buf`, or -1.
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
  return lf
}

const DOUBLE_SPACE = 'more than one space between the parts of the request line'
const UNLOCATED = 'a request pipelined in the same packet as the end of a chunked body (its request line cannot be checked)'
const SP = 0x20
const CRLFCRLF_S = '\r\n\r\n'
const CRLFCRLF = Buffer.from(CRLFCRLF_S, 'latin1')

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
