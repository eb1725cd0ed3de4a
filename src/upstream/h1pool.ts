/**
 * The upstream connection pool: HTTP/1.1 over keep-alive `net`/`tls` sockets, one exchange per
 * connection at a time (no pipelining), with the strict parser of `h1parse.ts`.
 *
 * Why not undici here: the benchmark (docs/benchmarks.md) measured undici's per-request
 * machinery (request object and header validation, the wasm parser and its callbacks, its
 * handler chain) at about a quarter of a bare Node pass-through's CPU. A proxy forwards
 * headers that were already validated by the server's parser and needs none of the
 * client-side features (redirects, retries of bodies, interceptors, fetch), so this pool does
 * only what the forwarder needs: one write of the request head, a parser that hands body
 * slices on, backpressure both ways, the three timeouts, and a safe reuse policy. undici stays
 * the client for everything else (JWKS, discovery, the admin CLI).
 *
 * Reuse policy: a connection goes back to the pool only when its response was complete and
 * well-framed, the request was sent whole, the upstream did not say `close`, and no byte came
 * after the response. A request that finds a kept-alive connection closed under it (the
 * upstream's idle timeout racing ours) is retried once on a new connection, and only when
 * nothing came back and nothing was sent, or only the head of a bodiless GET, HEAD or OPTIONS.
 */
import net from 'node:net'
import type { Readable } from 'node:stream'
import tls from 'node:tls'
import { ResponseParser, type ResponseSink } from './h1parse.ts'

/** The callbacks of one exchange (the shape of undici's legacy dispatch handler). */
export interface ExchangeHandler {
  /** From now on the exchange can be aborted with `abort(err)` (onError then gets `err`). */
  onConnect(abort: (err: Error) => void): void
  /** A head: 1xx (return value ignored) or the final one; false pauses the body until `resume`. */
  onHeaders(status: number, raw: string[], resume: () => void): boolean
  /** A body piece; false pauses the upstream socket until `resume` (from onHeaders). */
  onData(chunk: Buffer): boolean
  /**
   * Whether every chunk given to onData so far is done with (copied, or written through to the
   * kernel), so the memory under it may take the next read. Absent: never (a fresh buffer each read).
   */
  released?(): boolean
  onComplete(): void
  /** Exactly once instead of onComplete, when the exchange fails or is aborted. */
  onError(err: Error): void
}

export interface H1PoolOptions {
  readonly origin: URL
  /** Extra CAs (the default roots included) for https upstreams; undefined: the defaults. */
  readonly ca?: readonly string[] | undefined
  readonly connectTimeout: number
  readonly headersTimeout: number
  /** 0: none. */
  readonly bodyTimeout: number
  readonly keepAliveTimeout: number
  readonly maxHeaderSize: number
}

/** An error with the code `translate` maps (the same codes undici uses, so logs stay comparable). */
function codeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code })
}

const IDEMPOTENT_NO_BODY = new Set(['GET', 'HEAD', 'OPTIONS'])
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH'])
// undici's check for header values (no CR, LF, NUL or other controls but HTAB).
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/
const BAD_TARGET = /[^\x21-\x7e\x80-\xff]/

/** One exchange: a request and its response. */
class Exchange implements ResponseSink {
  readonly method: string
  readonly head: string
  readonly body: Readable | null
  readonly chunked: boolean
  readonly h: ExchangeHandler
  conn: Conn | undefined
  /** Some of the request has been written (then only a bodiless idempotent request may be retried). */
  wrote = false
  /** The request (head and body) has been written whole. */
  sent = false
  finished = false
  /** Paused by the client side (onData or onHeaders said false). */
  paused = false
  retried = false
  /** Stops reading the request body (set while it is being sent). */
  detach: (() => void) | undefined
  /** Resumes this exchange's response (a stale call from an earlier exchange cannot resume a later one). */
  readonly resume = (): void => {
    const conn = this.conn
    if (this.finished || !this.paused || conn === undefined) return
    this.paused = false
    conn.activeAt = conn.pool.clock
    conn.socket.resume()
  }

  constructor(method: string, head: string, body: Readable | null, chunked: boolean, h: ExchangeHandler) {
    this.method = method
    this.head = head
    this.body = body
    this.chunked = chunked
    this.h = h
  }

  onInfo(status: number): void {
    this.h.onHeaders(status, [], noop)
  }

  onHead(status: number, raw: string[]): void {
    const conn = this.conn as Conn
    conn.activeAt = conn.pool.clock
    if (!this.h.onHeaders(status, raw, this.resume) && !this.finished) this.#pause()
  }

  onBody(chunk: Buffer): void {
    if (this.finished) return
    if (!this.h.onData(chunk) && !this.finished) this.#pause()
  }

  #pause(): void {
    this.paused = true
    this.conn?.socket.pause()
  }
}

function noop(): void {}

/** Bytes per read from a plain upstream socket (libuv's own read size). */
const READ_SIZE = 64 * 1024

/** Read buffers a connection keeps while the client side still holds slices of them. */
const MAX_HELD = 8

/**
 * Free read buffers shared by every plain upstream connection of the process, at most
 * SHARED_FREE of them (2 MiB): a connection takes one for a read and gives it back as soon as
 * nothing holds slices of it, so idle keep-alive connections hold no read memory and the
 * resident total follows the connections actually streaming, not the pool's size.
 */
const SHARED_FREE = 32
const sharedFree: Buffer[] = []

/**
 * A plain connection's read buffers, reused from read to read once nothing holds slices of them.
 *
 * Why: by default every socket read gets a fresh 64 KiB allocation, freed only when the GC
 * collects its Buffer; malloc then gives the freed batch back to the kernel, so the next reads
 * fault in new pages. Streaming a 1 GiB response, that was ~170 000–240 000 page faults and 3–5 s
 * of system time per GiB (perf: the fault handler under the read's copy). See docs/benchmarks.md
 * (bulk bodies) for what reusing them bought.
 *
 * A read's slices go to the exchange's handler (written into the client response); `settle`
 * asks it afterwards whether everything it was given is out of its hands. If so, every buffer
 * of this exchange goes back to the shared free list; if not, the buffer is held and the next
 * read takes another. Buffers held for an earlier exchange are never reused (its response is
 * not the one asked): they are left to the GC.
 */
class ReadBuffers {
  #cur: Buffer | undefined
  #held: Buffer[] = []
  #owner: object | undefined

  /** The buffer the next read goes into. */
  next(): Buffer {
    return (this.#cur ??= sharedFree.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE))
  }

  /** A read was handed to `owner`'s handler, which says whether it has `released` all it was given. */
  settle(owner: object, released: boolean): void {
    if (owner !== this.#owner) {
      this.#owner = owner
      this.#held = []
    }
    const cur = this.#cur
    this.#cur = undefined
    if (released) {
      for (const b of this.#held) if (sharedFree.length < SHARED_FREE) sharedFree.push(b)
      this.#held = []
      if (cur !== undefined && sharedFree.length < SHARED_FREE) sharedFree.push(cur)
      return
    }
    if (cur !== undefined && this.#held.length < MAX_HELD) this.#held.push(cur)
  }
}

/** One upstream connection. */
class Conn {
  readonly pool: H1Pool
  readonly socket: net.Socket
  readonly parser: ResponseParser
  ex: Exchange | undefined
  connected = false
  /** Has carried an exchange before (so a close under a new request may be the idle race). */
  reused = false
  openedAt: number
  activeAt: number
  idleAt = 0
  idleLimit: number

  constructor(pool: H1Pool, socket: net.Socket, parser: ResponseParser) {
    this.pool = pool
    this.socket = socket
    this.parser = parser
    this.openedAt = pool.clock
    this.activeAt = pool.clock
    this.idleLimit = pool.keepAliveTimeout
  }
}

/** The HTTP/1.1 connection pool of one upstream origin. */
export class H1Pool {
  readonly #o: H1PoolOptions
  readonly #host: string
  readonly #port: number
  readonly #tls: boolean
  readonly #hostHeader: string
  readonly #idle: Conn[] = []
  readonly #all = new Set<Conn>()
  #sweep: NodeJS.Timeout | undefined
  readonly #tick: number
  #closing = false
  #closed: (() => void) | undefined
  /** One TLS context for every connection (building one per connect re-parses every CA). */
  readonly #secureContext: tls.SecureContext | undefined
  /** The latest TLS session ticket, so new connections resume instead of a full handshake. */
  #session: Buffer | undefined
  /** A coarse clock (ms), advanced by the sweep: timestamps on the hot path cost nothing. */
  clock = Date.now()
  readonly keepAliveTimeout: number

  constructor(o: H1PoolOptions) {
    this.#o = o
    this.#tls = o.origin.protocol === 'https:'
    this.#host = o.origin.hostname.replace(/^\[(.*)\]$/, '$1')
    this.#port = o.origin.port === '' ? (this.#tls ? 443 : 80) : Number(o.origin.port)
    this.#hostHeader = o.origin.host
    this.keepAliveTimeout = o.keepAliveTimeout
    this.#secureContext = this.#tls ? tls.createSecureContext(o.ca === undefined ? {} : { ca: [...o.ca] }) : undefined
    const limits = [o.connectTimeout, o.headersTimeout, o.keepAliveTimeout, o.bodyTimeout].filter((t) => t > 0)
    this.#tick = Math.max(10, Math.min(1000, Math.floor(Math.min(...limits) / 5)))
  }

  /**
   * Send one request. `headers` is a flat `[name, value, …]` list without hop-by-hop fields;
   * a `Host` in it replaces the upstream's. Ends with exactly one of onComplete or onError.
   */
  dispatch(method: string, path: string, headers: readonly string[], body: Readable | null, h: ExchangeHandler): void {
    let head: string
    let chunked = false
    try {
      if (BAD_TARGET.test(path)) throw new TypeError('invalid request target')
      let fields = ''
      let host = false
      let length = false
      for (let i = 0; i < headers.length; i += 2) {
        const name = headers[i] as string
        const value = headers[i + 1] as string
        // Names come from the server's parser or from validated config; values may come from
        // token claims, so each is checked (a CR or LF would split the request).
        if (BAD_VALUE.test(value)) throw new TypeError(`invalid value for header ${name}`)
        const len = name.length
        if (len === 4 || len === 14) {
          const lower = name.toLowerCase()
          if (lower === 'host') host = true
          else if (lower === 'content-length') length = true
        }
        fields += `${name}: ${value}\r\n`
      }
      if (body !== null && !length) {
        chunked = true
        fields += 'transfer-encoding: chunked\r\n'
      } else if (body === null && !length && EXPECTS_BODY.has(method)) fields += 'content-length: 0\r\n'
      head = `${method} ${path} HTTP/1.1\r\n${host ? '' : `host: ${this.#hostHeader}\r\n`}${fields}\r\n`
    } catch (e) {
      h.onError(Object.assign(e as Error, { code: 'UND_ERR_INVALID_ARG' }))
      return
    }
    if (this.#closing) {
      h.onError(codeError('UND_ERR_CLOSED', 'the upstream pool is closed'))
      return
    }
    const ex = new Exchange(method, head, body, chunked, h)
    h.onConnect((err) => this.#abort(ex, err))
    if (!ex.finished) this.#start(ex)
  }

  /** Stop taking requests; resolves once the exchanges in flight are done and every socket is closed. */
  close(): Promise<void> {
    this.#closing = true
    for (const c of this.#idle.splice(0)) c.socket.destroy()
    if (this.#all.size === 0) {
      this.#stopSweep()
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      this.#closed = resolve
    })
  }

  #start(ex: Exchange): void {
    let conn: Conn | undefined
    while ((conn = this.#idle.pop()) !== undefined) {
      if (!conn.socket.destroyed && conn.socket.readyState === 'open') break
      conn.socket.destroy()
    }
    conn ??= this.#connect()
    conn.ex = ex
    ex.conn = conn
    conn.activeAt = this.clock
    conn.parser.reset(ex, ex.method === 'HEAD')
    const socket = conn.socket
    if (socket.isPaused()) socket.resume()
    if (ex.body === null) {
      socket.write(ex.head, 'latin1')
      ex.wrote = true
      ex.sent = true
      return
    }
    this.#pumpBody(ex, conn)
  }

  #pumpBody(ex: Exchange, conn: Conn): void {
    const body = ex.body as Readable
    const socket = conn.socket
    const onDrain = (): void => {
      conn.activeAt = this.clock
      body.resume()
    }
    // The head goes out with the first body bytes (or the end), not before: a client body that
    // is malformed from its first byte (the server's parser answers 400) sends nothing upstream.
    let headSent = false
    const onData = (chunk: Buffer): void => {
      if (ex.finished || conn.ex !== ex) return
      conn.activeAt = this.clock
      let ok: boolean
      socket.cork()
      if (!headSent) {
        headSent = true
        ex.wrote = true
        socket.write(ex.head, 'latin1')
      }
      if (ex.chunked) {
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
        socket.write(chunk)
        ok = socket.write('\r\n', 'latin1')
      } else ok = socket.write(chunk)
      socket.uncork()
      if (!ok) {
        body.pause()
        socket.once('drain', onDrain)
      }
    }
    const cleanup = (): void => {
      ex.detach = undefined
      body.removeListener('data', onData)
      body.removeListener('end', onEnd)
      body.removeListener('error', onError)
      socket.removeListener('drain', onDrain)
    }
    const onEnd = (): void => {
      cleanup()
      if (ex.finished || conn.ex !== ex) return
      socket.cork()
      if (!headSent) {
        headSent = true
        ex.wrote = true
        socket.write(ex.head, 'latin1')
      }
      if (ex.chunked) socket.write('0\r\n\r\n', 'latin1')
      socket.uncork()
      conn.activeAt = this.clock
      ex.sent = true
      // The response may have completed before the body did (an early answer).
      if (conn.parser.done) this.#complete(conn, ex)
    }
    const onError = (err: Error): void => {
      cleanup()
      this.#fail(ex, err)
    }
    ex.detach = cleanup
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
  }

  #connect(): Conn {
    const o = this.#o
    let socket: net.Socket
    if (this.#tls) {
      const t = tls.connect({
        host: this.#host,
        port: this.#port,
        servername: net.isIP(this.#host) === 0 ? this.#host : undefined,
        ALPNProtocols: ['http/1.1'],
        secureContext: this.#secureContext,
        session: this.#session,
      })
      t.on('session', (session: Buffer) => {
        this.#session = session
      })
      socket = t
    } else {
      const reads = new ReadBuffers()
      socket = net.connect({
        host: this.#host,
        port: this.#port,
        onread: {
          buffer: () => reads.next(),
          callback: (n: number, b: Buffer): boolean => {
            const ex = conn.ex
            this.#onData(conn, b.subarray(0, n))
            // Checked after the whole read was parsed: the exchange may have completed (and
            // handed its last chunk on) within it.
            if (ex !== undefined) reads.settle(ex, ex.h.released?.() === true)
            return true
          },
        },
      })
    }
    socket.setNoDelay(true)
    socket.setKeepAlive(true, 60_000)
    const conn: Conn = new Conn(this, socket, new ResponseParser(o.maxHeaderSize))
    this.#all.add(conn)
    this.#startSweep()
    socket.once(this.#tls ? 'secureConnect' : 'connect', () => {
      conn.connected = true
      conn.activeAt = this.clock
    })
    if (this.#tls) socket.on('data', (d: Buffer) => this.#onData(conn, d))
    socket.on('end', () => this.#onEnd(conn))
    socket.on('error', (err) => this.#onSocketError(conn, err))
    socket.on('close', () => this.#onClose(conn))
    return conn
  }

  #onData(conn: Conn, d: Buffer): void {
    const ex = conn.ex
    if (ex === undefined) {
      // Bytes on an idle connection: nothing asked for them. Never reuse it.
      conn.socket.destroy()
      return
    }
    try {
      conn.parser.feed(d)
    } catch (e) {
      this.#fail(ex, e as Error)
      return
    }
    if (ex.finished) return
    // Body bytes restart the body-idle clock; head bytes do not restart the headers clock (a head
    // dribbled byte by byte still has to arrive within the headers timeout).
    if (conn.parser.headDone) conn.activeAt = this.clock
    if (conn.parser.done) {
      if (conn.parser.extra) conn.parser.keepAlive = false
      if (ex.sent) this.#complete(conn, ex)
      else if (ex.body !== null) {
        // Answered before the body was sent whole: complete for the client, but the
        // connection cannot carry another exchange (the rest of the body is not sent).
        conn.parser.keepAlive = false
        this.#complete(conn, ex)
      }
    }
  }

  #complete(conn: Conn, ex: Exchange): void {
    if (ex.finished) return
    ex.finished = true
    ex.detach?.()
    const reusable = conn.parser.keepAlive && ex.sent && !conn.parser.extra && !this.#closing
    conn.ex = undefined
    ex.conn = undefined
    if (reusable) {
      conn.reused = true
      // Read while idle: an upstream close (or stray bytes) is then seen at once.
      if (conn.socket.isPaused()) conn.socket.resume()
      conn.idleAt = this.clock
      const hint = conn.parser.keepAliveHint
      // Close before the upstream does (its hint minus a second), so a new request does not race its close.
      conn.idleLimit = hint > 0 ? Math.min(this.keepAliveTimeout, hint - 1000) : this.keepAliveTimeout
      if (conn.idleLimit > 0) this.#idle.push(conn)
      else conn.socket.destroy()
    } else conn.socket.destroy()
    ex.h.onComplete()
  }

  #onEnd(conn: Conn): void {
    const ex = conn.ex
    if (ex !== undefined && conn.parser.eof()) {
      conn.parser.keepAlive = false
      this.#complete(conn, ex)
      return
    }
    if (ex !== undefined) this.#lost(conn, ex, codeError('UND_ERR_SOCKET', 'the upstream closed the connection'))
    conn.socket.destroy()
  }

  #onSocketError(conn: Conn, err: Error): void {
    const ex = conn.ex
    if (ex !== undefined) this.#lost(conn, ex, err)
  }

  /** The connection failed under an exchange: retry the idle race once, else fail. */
  #lost(conn: Conn, ex: Exchange, err: Error): void {
    if (ex.finished) return
    conn.ex = undefined
    if (conn.reused && !ex.retried && !conn.parser.started && (!ex.wrote || (ex.body === null && IDEMPOTENT_NO_BODY.has(ex.method)))) {
      ex.retried = true
      ex.detach?.()
      conn.socket.destroy()
      this.#start(ex)
      return
    }
    this.#fail(ex, err)
  }

  #onClose(conn: Conn): void {
    this.#all.delete(conn)
    const i = this.#idle.indexOf(conn)
    if (i >= 0) this.#idle.splice(i, 1)
    const ex = conn.ex
    if (ex !== undefined) this.#lost(conn, ex, codeError('UND_ERR_SOCKET', 'the upstream connection closed'))
    if (this.#all.size === 0) {
      this.#stopSweep()
      if (this.#closing) this.#closed?.()
    }
  }

  #fail(ex: Exchange, err: Error): void {
    if (ex.finished) return
    ex.finished = true
    const conn = ex.conn
    ex.conn = undefined
    if (conn !== undefined) {
      if (conn.ex === ex) conn.ex = undefined
      conn.socket.destroy()
    }
    // The request body is let go, not destroyed: destroying the client's request would take its
    // connection down before it hears the error answer.
    ex.detach?.()
    ex.h.onError(err)
  }

  #abort(ex: Exchange, err: Error): void {
    this.#fail(ex, err)
  }

  #startSweep(): void {
    if (this.#sweep !== undefined) return
    this.clock = Date.now()
    this.#sweep = setInterval(() => this.#sweepOnce(), this.#tick)
    this.#sweep.unref()
  }

  #stopSweep(): void {
    if (this.#sweep === undefined) return
    clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  /** The timeouts, checked on the coarse clock: connect, headers, body idle, keep-alive idle. */
  #sweepOnce(): void {
    const now = (this.clock = Date.now())
    const o = this.#o
    for (const conn of this.#all) {
      const ex = conn.ex
      if (ex === undefined) {
        // One tick early, so an idle connection is closed by its limit at the latest (the limit
        // is already a second short of the upstream's own close).
        if (now - conn.idleAt >= conn.idleLimit - this.#tick) conn.socket.destroy()
        continue
      }
      if (!conn.connected) {
        if (now - conn.openedAt > o.connectTimeout) this.#fail(ex, codeError('UND_ERR_CONNECT_TIMEOUT', `connect timeout after ${o.connectTimeout} ms`))
        continue
      }
      if (!conn.parser.headDone) {
        // While the request body is still going out (and not blocked), the upstream is not late.
        if ((ex.sent || conn.socket.writableNeedDrain) && now - conn.activeAt > o.headersTimeout) this.#fail(ex, codeError('UND_ERR_HEADERS_TIMEOUT', `no response head within ${o.headersTimeout} ms`))
        continue
      }
      if (o.bodyTimeout > 0 && !ex.paused && now - conn.activeAt > o.bodyTimeout) this.#fail(ex, codeError('UND_ERR_BODY_TIMEOUT', `response body idle for ${o.bodyTimeout} ms`))
    }
  }
}
