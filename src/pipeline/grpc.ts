/**
 * gRPC calls (HTTP/2 streams with `content-type: application/grpc…`): the same stages as
 * pipeline/handler.ts — request id, credential from the `authorization` metadata, authenticate,
 * authorize by method (profile), strip + inject identity metadata — then a stream to
 * `upstream.grpcUrl`, relaying headers, messages and trailers as they come (no buffering), with
 * `grpc-timeout` passed through and a client cancel (RST_STREAM) cancelling the upstream stream.
 *
 * gatehouse's own answers are trailers-only responses (gRPC over HTTP/2 spec: a single HEADERS
 * frame with END_STREAM carrying `grpc-status` and `grpc-message`), never JSON.
 */
import { randomUUID } from 'node:crypto'
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { Readable, Writable } from 'node:stream'
import { extractCredential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import type { Runtime } from './runtime.ts'
import { GatehouseError, type ErrorCode } from '../errors.ts'
import { writeAccess, type Logger } from '../log.ts'
import { grpcStatusClass, PROTOCOL, type Metrics } from '../metrics/metrics.ts'
import { clientKey } from '../auth/throttle.ts'
import type { GrpcUpstream } from '../upstream/grpc.ts'
import { authenticate } from './authenticate.ts'
import type { ServeState } from './handler.ts'
import { upstreamHeaders } from '../http/headers.ts'
import { asGatehouseError } from '../http/respond.ts'

/** gRPC status codes used here (grpc/grpc doc/statuscodes.md). */
export const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const

/** The gRPC status of a gatehouse error (docs/http2.md has the table). */
export function grpcStatusOf(e: GatehouseError): number {
  const byCode: Partial<Record<ErrorCode, number>> = {
    ERR_AMBIGUOUS_CREDENTIAL: GRPC.UNAUTHENTICATED,
    ERR_GRPC_NOT_CONFIGURED: GRPC.UNIMPLEMENTED,
    ERR_GRPC_BAD_CALL: GRPC.UNIMPLEMENTED,
    ERR_UPSTREAM_TIMEOUT: GRPC.DEADLINE_EXCEEDED,
  }
  const direct = byCode[e.code]
  if (direct !== undefined) return direct
  if (e.status === 401) return GRPC.UNAUTHENTICATED
  if (e.status === 403) return GRPC.PERMISSION_DENIED
  if (e.status === 413 || e.status === 429 || e.status === 431) return GRPC.RESOURCE_EXHAUSTED
  if (e.status === 400) return GRPC.INVALID_ARGUMENT
  if (e.status === 502 || e.status === 503) return GRPC.UNAVAILABLE
  if (e.status === 504) return GRPC.DEADLINE_EXCEEDED
  return GRPC.INTERNAL
}

/** `application/grpc`, `application/grpc+proto`, `application/grpc+json`… but not gRPC-Web (an HTTP/1.1-capable protocol of its own). */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && /^application\/grpc(?:\+[a-z0-9._-]+)?\s*(?:;|$)/i.test(ct)
}

// gRPC over HTTP/2: Path → ":path" "/" Service-Name "/" {method name}; nothing else is a call.
const CALL_PATH = /^\/[A-Za-z_][A-Za-z0-9_.]*\/[A-Za-z_][A-Za-z0-9_]*$/
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/

/** grpc-message is percent-encoded (everything outside printable ASCII, and `%`). */
export function encodeGrpcMessage(s: string): string {
  return Buffer.from(s, 'utf8').reduce((out, b) => out + (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`), '')
}

/** What the gRPC handler reads at call time (a function: the runtime may be swapped on reload). */
export interface GrpcDeps {
  readonly live: () => { readonly runtime: Runtime; readonly grpc: GrpcUpstream | undefined }
  readonly logger: Logger
  readonly state: ServeState
  /** Counted where the access line is written; undefined when metrics are off. */
  readonly metrics?: Metrics | undefined
}

/** One gRPC call as it arrives: the server stream, its headers, the body to read and the peer. */
export interface GrpcCall {
  readonly stream: ServerHttp2Stream
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: string[]
  /** The request messages: the stream itself, or the compat request wrapping it. */
  readonly body: Readable
  readonly listener: 'data' | 'grpc'
}

// Response headers that are the connection's, never relayed (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'])

/** Build the gRPC call handler. */
export function createGrpcHandler(deps: GrpcDeps): (call: GrpcCall) => void {
  const { logger, state, metrics } = deps

  return (call) => {
    const { runtime: rt, grpc } = deps.live()
    const { stream, headers } = call
    const start = process.hrtime.bigint()
    // Read now: the session's socket may be gone by the time the access line is written.
    const client = clientKey(stream.session?.socket?.remoteAddress, headers['x-forwarded-for'], rt.trustedProxies)
    const given = headers[rt.config.identityHeaders.requestId.toLowerCase()]
    const requestId = typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID()
    const path = String(headers[':path'] ?? '')
    let principal: Principal | undefined
    let grpcStatus: number | undefined
    let reason: ErrorCode | undefined
    let detail: string | undefined
    let upstreamSeen = false
    let upstreamMs: number | undefined
    let cancelUpstream: (() => void) | undefined
    state.inflight++
    stream.once('close', () => {
      state.inflight--
      cancelUpstream?.()
      if (metrics !== undefined) {
        metrics.record(PROTOCOL.grpc, grpcStatusClass(grpcStatus), principal?.method, reason, principal !== undefined, false, rt.config.upstream.profile, Number(process.hrtime.bigint() - start) / 1e9, upstreamMs === undefined ? undefined : upstreamMs / 1e3)
      }
      if (!rt.config.log.access) return
      writeAccess(logger, {
        requestId,
        listener: call.listener === 'grpc' ? 'grpc' : undefined,
        method: 'GRPC',
        path: CALL_PATH.test(path) ? path : '(invalid)',
        status: grpcStatus ?? -1,
        durationMs: Math.round(Number(process.hrtime.bigint() - start) / 1e3) / 1e3,
        authMethod: principal?.method,
        user: principal?.user,
        reason,
        detail,
        upstreamStatus: upstreamSeen ? 200 : undefined,
        aborted: grpcStatus === undefined ? true : undefined,
        client,
      })
    })
    // A client that goes away mid-call must not keep the upstream stream (or our buffers) alive.
    stream.on('error', () => {})

    const fail = (e: GatehouseError): void => {
      reason = e.code
      detail = e.detail
      grpcStatus = grpcStatusOf(e)
      respondError(stream, grpcStatus, e.message, requestId)
      // The request messages are not wanted; stop reading them.
      call.body.resume()
    }

    const run = async (): Promise<void> => {
      if (headers[':method'] !== 'POST' || !CALL_PATH.test(path)) throw new GatehouseError('ERR_GRPC_BAD_CALL', { detail: `${String(headers[':method'])} ${path.slice(0, 200)}` })
      if (state.draining) throw new GatehouseError('ERR_DRAINING')
      // 4 · credential: the `authorization` metadata (qdrant: also `api-key`); never a query token.
      const { credential } = extractCredential(call, '', { apiKeyHeader: rt.extract.apiKeyHeader, queryToken: false })
      // 6a · classify by method
      const classification = rt.profile.classifyGrpc(path)
      // 5 · authenticate
      const authn = authenticate(rt, credential, classification.access, () => ({ remoteAddress: stream.session?.socket?.remoteAddress, forwardedFor: headers['x-forwarded-for'], logger }))
      principal = authn instanceof Promise ? await authn : authn
      if (principal.mustChangePassword === true) throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
      // 6b · authorize
      const decision = rt.adminList.decide(principal, classification.access)
      if (!decision.allowed) throw new GatehouseError('ERR_FORBIDDEN', { detail: decision.rule })
      if (grpc === undefined) throw new GatehouseError('ERR_GRPC_NOT_CONFIGURED')
      if (stream.destroyed || stream.closed) return
      // 3 + 7 · strip, then inject (identity as metadata)
      const peer = { remoteAddress: stream.session?.socket?.remoteAddress }
      const flat = upstreamHeaders({ headers, rawHeaders: call.rawHeaders, socket: peer }, rt.headers, { principal, requestId, proto: rt.proto })
      const out: OutgoingHttpHeaders = {}
      for (let i = 0; i < flat.length; i += 2) {
        const k = (flat[i] as string).toLowerCase()
        if (k === 'host') continue
        const v = flat[i + 1] as string
        const prev = out[k]
        out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v]
      }
      out[':method'] = 'POST'
      out[':path'] = path
      out[':scheme'] = grpc.scheme
      out[':authority'] = rt.headers.preserveHost && typeof headers[':authority'] === 'string' ? headers[':authority'] : grpc.authority
      // `te: trailers` is hop-by-hop in HTTP/1.1 but required by gRPC servers (it was stripped above).
      out.te = 'trailers'
      const sent = metrics === undefined ? 0 : performance.now()
      relay(call, grpc, out, requestId, {
        onUpstream: (cancel) => {
          cancelUpstream = cancel
        },
        onStatus: (s, fromUpstream) => {
          grpcStatus = s
          if (fromUpstream) {
            upstreamSeen = true
            if (metrics !== undefined) upstreamMs = performance.now() - sent
          }
        },
        onError: (e) => {
          reason = e.code
          detail = e.detail
        },
      })
    }
    run().catch((e: unknown) => {
      const err = asGatehouseError(e)
      if (stream.headersSent || stream.destroyed) return
      fail(err)
    })
  }
}

interface RelayHooks {
  onUpstream(cancel: () => void): void
  onStatus(status: number, fromUpstream: boolean): void
  onError(e: GatehouseError): void
}

/** Stream one call to the upstream and back. */
function relay(call: GrpcCall, grpc: GrpcUpstream, headers: OutgoingHttpHeaders, requestId: string, hooks: RelayHooks): void {
  const { stream } = call
  const up = grpc.request(headers)
  let done = false
  hooks.onUpstream(() => {
    // The client closed first (RST_STREAM CANCEL, deadline, disconnect): cancel upstream too.
    if (!done && !up.closed) up.close(http2.constants.NGHTTP2_CANCEL)
  })
  forward(call.body, up)
  call.body.on('error', () => up.close(http2.constants.NGHTTP2_CANCEL))
  let trailers: OutgoingHttpHeaders | undefined

  up.on('response', (h, flags) => {
    if (stream.destroyed || stream.closed) return
    const status = Number(h[':status'] ?? 200)
    const out: OutgoingHttpHeaders = { ':status': status }
    for (const k of Object.keys(h)) {
      if (k.startsWith(':') || CONNECTION_SPECIFIC.has(k)) continue
      out[k] = h[k]
    }
    out['x-request-id'] = requestId
    // Trailers-only response (END_STREAM on the first HEADERS): relay it as such.
    if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0) {
      done = true
      hooks.onStatus(Number(h['grpc-status'] ?? GRPC.UNKNOWN), true)
      stream.respond(out, { endStream: true })
      return
    }
    stream.respond(out, { waitForTrailers: true })
    stream.once('wantTrailers', () => {
      const t = trailers ?? { 'grpc-status': String(GRPC.INTERNAL), 'grpc-message': 'upstream ended the call without trailers' }
      hooks.onStatus(Number(t['grpc-status'] ?? GRPC.INTERNAL), true)
      done = true
      stream.sendTrailers(t)
    })
    forward(up, stream)
  })
  up.on('trailers', (t) => {
    const out: OutgoingHttpHeaders = {}
    for (const k of Object.keys(t)) if (!k.startsWith(':') && !CONNECTION_SPECIFIC.has(k)) out[k] = t[k]
    trailers = out
  })
  const upstreamFailed = (e: GatehouseError): void => {
    if (done) return
    done = true
    hooks.onError(e)
    if (stream.destroyed || stream.closed) return
    if (!stream.headersSent) {
      const s = grpcStatusOf(e)
      hooks.onStatus(s, false)
      respondError(stream, s, e.message, requestId)
      call.body.resume()
      return
    }
    // Mid-call: the only honest signal left is to reset the client's stream.
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
  }
  up.on('error', (e: NodeJS.ErrnoException) => {
    const code = e.code ?? ''
    upstreamFailed(new GatehouseError(code === 'ETIMEDOUT' ? 'ERR_UPSTREAM_TIMEOUT' : 'ERR_UPSTREAM_UNAVAILABLE', { detail: `gRPC upstream: ${code || e.message}`, cause: e }))
  })
  up.on('close', () => {
    if (done || up.rstCode === http2.constants.NGHTTP2_NO_ERROR) return
    if (up.rstCode === http2.constants.NGHTTP2_CANCEL && (stream.destroyed || stream.closed)) return
    upstreamFailed(new GatehouseError('ERR_UPSTREAM_UNAVAILABLE', { detail: `gRPC upstream reset the stream (code ${up.rstCode})` }))
  })
}

/**
 * `from` → `to` with backpressure, then `end`: what `pipe()` does for one call, without its
 * bookkeeping (listeners on both sides, unpipe on finish), which was ~7% of the CPU of a unary
 * call in the profile (docs/benchmarks.md, gRPC). A destination that is gone takes nothing more:
 * the call's close handlers deal with it.
 */
function forward(from: Readable, to: Writable): void {
  const resume = (): void => {
    from.resume()
  }
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed || to.writableEnded) return
    if (!to.write(chunk)) {
      from.pause()
      to.once('drain', resume)
    }
  })
  from.once('end', () => {
    if (!to.destroyed && !to.writableEnded) to.end()
  })
}

/** A trailers-only error response. */
function respondError(stream: ServerHttp2Stream, status: number, message: string, requestId: string): void {
  if (stream.headersSent || stream.destroyed || stream.closed) return
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(status),
      'grpc-message': encodeGrpcMessage(message),
      'x-request-id': requestId,
    },
    { endStream: true },
  )
}
