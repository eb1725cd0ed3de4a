/**
 * HTTP/2 on the data listener, and the gRPC-only listener.
 *
 * The data listener stays the `http.Server`/`https.Server` it always was (HTTP/1.1 behaviour,
 * `clientError` answers, certificate rotation, keep-alive draining unchanged). HTTP/2
 * connections are handed from it to an `http2` server object that never listens itself:
 *   - TLS: ALPN picks `h2` or `http/1.1` during the handshake; `secureConnection` sockets that
 *     negotiated `h2` go to the HTTP/2 server, the rest to the HTTPS server's own listener.
 *   - cleartext (sidecar mode): a connection whose first 24 bytes are the HTTP/2 client preface
 *     (`PRI * HTTP/2.0…`, RFC 9113 §3.4, "prior knowledge") goes to the HTTP/2 server, anything
 *     else to the HTTP server; the peeked bytes are put back with `unshift`.
 *
 * Every HTTP/2 session gets the limits of `http2.*`: concurrent streams, header list size, refused
 * streams, and a rapid-reset guard (CVE-2023-44487): more than `maxResets` streams reset within
 * `resetWindow` closes the session with GOAWAY ENHANCE_YOUR_CALM.
 */
import { randomUUID } from 'node:crypto'
import type http from 'node:http'
import http2, { type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type IncomingHttpHeaders, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type https from 'node:https'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { errorBody, GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { encodeGrpcMessage, grpcStatusOf, isGrpcContentType, type GrpcCall } from '../pipeline/grpc.ts'

/** `http2.*` of the configuration. */
export interface Http2Limits {
  readonly maxConcurrentStreams: number
  readonly maxHeaderListSize: number
  readonly maxSessionRejectedStreams: number
  readonly maxResets: number
  readonly resetWindow: number
  readonly idleTimeout: number
}

/** An HTTP/2 server object and its live sessions. */
export interface H2Sessions {
  readonly server: Http2Server | Http2SecureServer
  /** Sessions currently open. */
  readonly sessions: ReadonlySet<ServerHttp2Session>
  /** Streams open now (the metrics read it at scrape time). */
  readonly streams: { readonly open: number }
  /** Send GOAWAY to every session: no new streams, streams in flight finish. */
  drain(): void
  /** Close every session now. */
  destroyAll(): void
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

function sessionOptions(l: Http2Limits): http2.ServerOptions {
  return {
    settings: { maxConcurrentStreams: l.maxConcurrentStreams, maxHeaderListSize: l.maxHeaderListSize, enablePush: false },
    maxSessionRejectedStreams: l.maxSessionRejectedStreams,
    // Node's own guard against a peer that never reads (memory per session, in MB).
    maxSessionMemory: 10,
  }
}

function track(server: Http2Server | Http2SecureServer, l: Http2Limits, logger: Logger): H2Sessions {
  const sessions = new Set<ServerHttp2Session>()
  const streams = { open: 0 }
  server.on('session', (s: ServerHttp2Session) => {
    sessions.add(s)
    s.once('close', () => sessions.delete(s))
    guardResets(s, l, logger, streams)
    // Idle connections are closed gracefully (GOAWAY: streams in flight finish; a client opens a
    // new connection when it needs one), so idle h2 clients cannot pile up file descriptors.
    s.setTimeout(l.idleTimeout, () => {
      if (!s.closed) s.close()
    })
  })
  return {
    server,
    sessions,
    streams,
    drain() {
      for (const s of sessions) if (!s.closed) s.close()
    },
    destroyAll() {
      for (const s of sessions) s.destroy()
    },
  }
}

/**
 * Rapid reset (CVE-2023-44487): a client opens streams and resets them at once, so the server
 * starts work for requests nobody waits for, without ever hitting the concurrency limit. Count
 * the streams of a session that end with a reset; past the budget, GOAWAY ENHANCE_YOUR_CALM.
 */
function guardResets(session: ServerHttp2Session, l: Http2Limits, logger: Logger, streams: { open: number }): void {
  let windowStart = Date.now()
  let resets = 0
  let tripped = false
  session.on('stream', (stream) => {
    // Open streams, for the metrics: counted in this listener, which every stream runs anyway.
    streams.open++
    stream.once('close', () => {
      streams.open--
      if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || session.destroyed || tripped) return
      const now = Date.now()
      if (now - windowStart > l.resetWindow) {
        windowStart = now
        resets = 0
      }
      if (++resets > l.maxResets && !tripped) {
        tripped = true
        logger.warn({ resets, windowMs: l.resetWindow, peer: session.socket?.remoteAddress }, 'HTTP/2 rapid reset: closing the connection (GOAWAY ENHANCE_YOUR_CALM)')
        // GOAWAY first (no new streams), then close; a session that still will not go is cut.
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
        session.close()
        setTimeout(() => session.destroy(), 1_000).unref()
      }
    })
  })
}

/** Header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2: name + value + 32 per field). */
export function headerListSize(raw: readonly string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) n += (raw[i] as string).length + (raw[i + 1] as string).length + 32
  return n
}

/**
 * Node advertises SETTINGS_MAX_HEADER_LIST_SIZE but admits larger lists (up to its own 64 KiB
 * cap), so the limit is enforced here, before any stage runs: 431 with the JSON error (as on
 * HTTP/1.1), or RESOURCE_EXHAUSTED for a gRPC call.
 */
function tooLarge(stream: ServerHttp2Stream, grpc: boolean): void {
  stream.on('error', () => {})
  const e = new GatehouseError('ERR_HEADERS_TOO_LARGE', { detail: 'HTTP/2 header list' })
  const requestId = randomUUID()
  if (grpc) {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatusOf(e)), 'grpc-message': encodeGrpcMessage(e.message), 'x-request-id': requestId }, { endStream: true })
  } else {
    const body = JSON.stringify(errorBody(e, requestId))
    stream.respond({ ':status': e.status, 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId })
    stream.end(body)
  }
  stream.resume()
}

export type CompatHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void

/**
 * The HTTP/2 side of the data listener: gRPC calls go to `onGrpc`, every other request to the
 * same handler as HTTP/1.1 (the compat request/response objects carry the same API).
 *
 * gRPC calls are taken from the `stream` event before Node's compat layer sees them: the compat
 * listener is taken off and called for every other stream (the pattern of `routeAlpn`). A gRPC
 * call is driven on the stream directly (trailers-only answers, relayed trailers), so the compat
 * request and response Node would build for it, and its data path, were pure cost: 0.89–0.98× the
 * CPU per unary call without them, medians of same-noise pairs (docs/benchmarks.md, gRPC). CONNECT
 * and `expect` streams stay with the compat layer, which answers them as before.
 */
export function createDataH2(tls: boolean, l: Http2Limits, handler: CompatHandler, onGrpc: (call: GrpcCall) => void, logger: Logger): H2Sessions {
  const opts = sessionOptions(l)
  const server = tls ? http2.createSecureServer(opts as SecureServerOptions) : http2.createServer(opts)
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    if (headerListSize(req.rawHeaders) > l.maxHeaderListSize) {
      tooLarge(req.stream, isGrpcContentType(req.headers['content-type']))
      return
    }
    if (isGrpcContentType(req.headers['content-type'])) {
      // Only a gRPC call with an `expect` header gets here (the rest are taken from 'stream' below).
      // The stream is driven directly (trailers-only answers, relayed trailers); the compat
      // response would send its own (empty) trailers on 'wantTrailers'.
      req.stream.removeAllListeners('wantTrailers')
      onGrpc({ stream: req.stream, headers: req.headers, rawHeaders: req.rawHeaders, body: req, listener: 'data' })
      return
    }
    withoutTrailers(req.stream)
    handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse)
  })
  // Adding the 'request' listener above made Node add its compat 'stream' listener.
  const compat = server.listeners('stream') as ((...args: unknown[]) => void)[]
  server.removeAllListeners('stream')
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (isGrpcContentType(headers['content-type']) && headers[':method'] !== 'CONNECT' && headers.expect === undefined) {
      if (headerListSize(rawHeaders) > l.maxHeaderListSize) tooLarge(stream, true)
      else onGrpc({ stream, headers, rawHeaders, body: stream, listener: 'data' })
      return
    }
    for (const f of compat) f.call(server, stream, headers, flags, rawHeaders)
  })
  return track(server, l, logger)
}

/**
 * The compat response always responds with `waitForTrailers` (so that `addTrailers()` keeps
 * working until the end), and then ends every stream with an extra frame carrying no trailers,
 * written in a write of its own after the body. gatehouse never sends HTTP trailers (only gRPC
 * relays them, on the stream directly), so the stream is answered without: END_STREAM rides on
 * the last DATA frame. Measured (docs/benchmarks.md, HTTP/2): one write(2) less per response.
 */
function withoutTrailers(stream: ServerHttp2Stream): void {
  const respond = stream.respond
  stream.respond = (headers, options) => respond.call(stream, headers, { ...options, waitForTrailers: false })
}

/** Hand TLS connections that negotiated `h2` by ALPN to the HTTP/2 server; the rest stay HTTPS. */
export function routeAlpn(front: https.Server, h2: H2Sessions): void {
  const h1 = front.listeners('secureConnection') as ((s: TLSSocket) => void)[]
  front.removeAllListeners('secureConnection')
  front.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') h2.server.emit('secureConnection', socket)
    else for (const l of h1) l.call(front, socket)
  })
}

/**
 * Cleartext: peek at the first bytes; the HTTP/2 preface means prior-knowledge h2c, anything
 * else is HTTP/1.1. A connection that sends nothing is closed after `idleMs`.
 */
export function routeH2c(front: http.Server, h2: H2Sessions, idleMs: number): void {
  const h1 = front.listeners('connection') as ((s: Socket) => void)[]
  front.removeAllListeners('connection')
  front.on('connection', (socket: Socket) => {
    let buf: Buffer = Buffer.alloc(0)
    const timer = setTimeout(() => socket.destroy(), idleMs)
    const onError = (): void => {
      clearTimeout(timer)
      socket.destroy()
    }
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      const n = Math.min(buf.length, PREFACE.length)
      const isH2 = buf.subarray(0, n).equals(PREFACE.subarray(0, n))
      if (isH2 && buf.length < PREFACE.length) return // a prefix so far: wait for the rest
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('error', onError)
      socket.pause()
      socket.unshift(buf)
      if (isH2) {
        // The session reads what is already buffered on the socket before it consumes it.
        h2.server.emit('connection', socket)
        return
      }
      for (const l of h1) l.call(front, socket)
      process.nextTick(() => socket.resume())
    }
    socket.on('error', onError)
    socket.on('data', onData)
  })
}

/**
 * The gRPC-only listener: HTTP/2 (h2 by ALPN with TLS, prior-knowledge h2c without). A request
 * that is not gRPC gets 415 with the JSON error body.
 */
export function createGrpcListener(tlsOptions: SecureServerOptions | undefined, l: Http2Limits, onGrpc: (call: GrpcCall) => void, logger: Logger): H2Sessions {
  const opts = sessionOptions(l)
  const server = tlsOptions !== undefined ? http2.createSecureServer({ ...tlsOptions, ...opts, ALPNProtocols: ['h2'] }) : http2.createServer(opts)
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    if (headerListSize(rawHeaders) > l.maxHeaderListSize) {
      tooLarge(stream, isGrpcContentType(headers['content-type']))
      return
    }
    if (isGrpcContentType(headers['content-type'])) {
      onGrpc({ stream, headers, rawHeaders, body: stream, listener: 'grpc' })
      return
    }
    stream.on('error', () => {})
    const e = new GatehouseError('ERR_GRPC_ONLY', { detail: String(headers['content-type'] ?? '') })
    const requestId = randomUUID()
    const body = JSON.stringify(errorBody(e, requestId))
    stream.respond({ ':status': e.status, 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId })
    stream.end(body)
    stream.resume()
  })
  return track(server, l, logger)
}
