/**
 * The data listener's request handler: the ordered stages of docs/architecture.md.
 *
 *   1 request id · 2 target · 3+7 strip and inject headers · 4 credential · 5 authenticate ·
 *   6 authorize · 8 forward · access log
 *
 * Only authentication (key fetch, later) and forwarding may wait on I/O; everything else reads
 * the compiled Runtime.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extractCredential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import type { Classification } from '../authz/profiles.ts'
import type { Runtime } from './runtime.ts'
import { GatehouseError } from '../errors.ts'
import { writeAccess, type Logger } from '../log.ts'
import { PROTOCOL, type Metrics } from '../metrics/metrics.ts'
import type { IssuerStore } from '../store/store.ts'
import type { LocalIssuer } from '../issuer/localIssuer.ts'
import { requestHasBody, type Forwarder } from '../upstream/forward.ts'
import type { RequestContext } from './context.ts'
import { authenticateRequest, registerServices, sessionManager, type SessionServices } from './session.ts'
import { handleBrowserRoute, isBrowserRoute, signInLocation } from '../browser/routes.ts'
import { isPageNavigation } from '../browser/detect.ts'
import { clientKey } from '../auth/throttle.ts'
import { upstreamHeaders } from '../http/headers.ts'
import { asGatehouseError, sendError, sendJson } from '../http/respond.ts'
import { parseTarget } from '../http/target.ts'
import { watchBodyRate, type BodyRate } from '../http/bodyRate.ts'
import { refuseUnforwardable } from '../http/methods.ts'
// The decisions `gatehouse explain` shares with this handler.
import { authorize, checkUrlLength, classifyRequest, forwardedIdentity, WELL_KNOWN_CLASS } from './decide.ts'

/** Shared mutable process state the handler reads (draining) and updates (in-flight count). */
export interface ServeState {
  draining: boolean
  inflight: number
}

/** What a reload swaps as one unit: the compiled runtime and its forwarder. */
export interface Live {
  readonly runtime: Runtime
  readonly forwarder: Forwarder
}

export interface HandlerDeps {
  /** Read once per request, so a reload takes effect for the next request and never mid-request. */
  readonly live: { current: Live }
  readonly logger: Logger
  readonly state: ServeState
  /** The state store (browser sessions live there); absent in tests that need none. */
  readonly store?: IssuerStore
  /** The local issuer, when local users are enabled (their browser sign-in). */
  readonly issuer?: LocalIssuer
  /** Counted where the access line is written; undefined when metrics are off (nothing is counted). */
  readonly metrics?: Metrics | undefined
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/

/** `admit`'s answer when the request was one of gatehouse's own browser routes (answered there). */
const ROUTED: unique symbol = Symbol('routed')

/** Build the request handler for the data listener. */
export function createHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { live, logger, state, metrics } = deps
  const services: SessionServices | undefined = deps.store === undefined ? undefined : { store: deps.store, issuer: deps.issuer, logger }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const current = live.current
    const rt = current.runtime
    // 1 · request id: kept from the client when well-formed, else generated
    const given = req.headers[rt.requestIdHeader]
    const ctx: RequestContext = {
      req,
      res,
      start: process.hrtime.bigint(),
      requestId: typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID(),
      path: undefined,
      query: '',
      credential: undefined,
      classification: undefined,
      principal: undefined,
      reason: undefined,
      upstreamStatus: undefined,
      upstreamMs: undefined,
      detail: undefined,
      abortUpstream: undefined,
    }
    state.inflight++
    const accessLog = rt.config.log.access
    // Read now: a socket destroyed before 'close' may no longer know its peer.
    const peer = accessLog ? req.socket.remoteAddress : undefined
    res.on('close', () => {
      state.inflight--
      ctx.abortUpstream?.()
      if (metrics !== undefined) countRequest(metrics, ctx, rt)
      if (accessLog) logAccess(logger, ctx, clientKey(peer, req.headers['x-forwarded-for'], rt.trustedProxies))
    })
    // HTTP/2 has no Connection header (RFC 9113 §8.2.2); its sessions get GOAWAY on stop().
    if (state.draining && req.httpVersionMajor < 2) res.setHeader('connection', 'close')
    // Synchronous unless authentication has to wait (a key fetch, a first-sight JWT): no promise
    // or microtask per request on the common path.
    let principal: Principal | Promise<Principal> | typeof ROUTED
    try {
      principal = admit(ctx, rt)
    } catch (e) {
      // Answered after the parser has finished this packet: when the same bytes are also
      // malformed (a smuggling shape), the parser's 400 goes out and closes the connection, and
      // the client never sees two answers to one message.
      queueMicrotask(() => refuse(ctx, rt, asGatehouseError(e)))
      return
    }
    if (principal === ROUTED) return
    if (principal instanceof Promise) {
      principal.then(
        (p) => proceed(ctx, current, p),
        (e: unknown) => refuse(ctx, rt, asGatehouseError(e)),
      )
    } else proceed(ctx, current, principal)
  }
  if (services !== undefined) registerServices(handler, services)
  return handler

  /**
   * The error answer; except that a browser loading a page without a credential, when browser
   * sign-in is on, is sent to sign in (302) — every other request keeps the JSON 401 (SPEC §9).
   */
  function refuse(ctx: RequestContext, rt: Runtime, err: GatehouseError): void {
    const login = rt.browser
    if (login !== undefined && services !== undefined && err.code === 'ERR_UNAUTHENTICATED' && ctx.credential === undefined && !ctx.res.headersSent && isPageNavigation(ctx.req)) {
      ctx.reason = err.code
      ctx.detail = ctx.detail === undefined ? 'sent to sign in' : `${ctx.detail}; sent to sign in`
      ctx.res.writeHead(302, { location: signInLocation(login, ctx.req.url ?? '/'), 'cache-control': 'no-store', 'content-length': 0, 'x-request-id': ctx.requestId })
      ctx.res.end()
      return
    }
    sendError(ctx, err)
  }

  /** Stages 0–5: limits, target, credential, classification, authentication. */
  function admit(ctx: RequestContext, rt: Runtime): Principal | Promise<Principal> | typeof ROUTED {
    const { req } = ctx
    const method = req.method as string
    // 0 · what llhttp lets through: the limits (it bounds only the whole head), and framing
    // that is well-formed but ambiguous or unsupported
    const url = req.url ?? '/'
    checkUrlLength(rt, url)
    checkHead(req, rt.limits)
    // Never forwarded, whoever asks: answered before authentication (src/http/methods.ts).
    refuseUnforwardable(method)
    // HTTP/1.1 only: an HTTP/2 stream shares its session's socket, which is not ours to time out.
    if (rt.limits.bodyIdleMs > 0 && req.httpVersionMajor === 1 && !req.complete && requestHasBody(req)) guardBody(ctx, rt.limits.bodyIdleMs)
    // A minimum receive rate, HTTP/1.1 and HTTP/2 alike: a drip that never pauses long enough for
    // the idle timeout still ends.
    if (rt.limits.bodyRate.minBytesPerSecond > 0 && !req.complete && requestHasBody(req)) guardBodyRate(ctx, rt.limits.bodyRate)
    // 2 · target
    const target = parseTarget(url)
    ctx.path = target.path
    // gatehouse's own sign-in routes (/oauth2/…) when browser sign-in is on: answered, never forwarded.
    if (rt.browser !== undefined && services !== undefined && isBrowserRoute(target.path)) {
      const login = rt.browser
      void handleBrowserRoute(
        { req, res: ctx.res, path: target.path, query: target.query, requestId: ctx.requestId, client: clientKey(req.socket.remoteAddress, req.headers['x-forwarded-for'], rt.trustedProxies) },
        { login, sessions: sessionManager(login, services.store), store: services.store, issuer: services.issuer, logger },
      )
      return ROUTED
    }
    // 4 · credential (read from the client's own headers, before any stripping can hide it)
    const { credential, query } = extractCredential(req, target.query, rt.extract)
    ctx.credential = credential
    ctx.query = query
    // 6a · what the request needs (decided before authentication: public paths admit anonymous)
    // A CORS preflight is public under every profile (SPEC §6): decide.ts, shared with explain.
    ctx.classification = classifyRequest(rt, req, method, target.path)
    // 5 · authenticate (behind the failure throttle); without a credential, a browser session
    return authenticateRequest(rt, method, req.headers, credential, ctx.classification.access, () => ({ remoteAddress: req.socket.remoteAddress, forwardedFor: req.headers['x-forwarded-for'], logger }), services, (why) => {
      ctx.detail = `session ${why}`
    })
  }

  /** Stages 6–8: authorize, then answer the well-known document or forward. */
  function proceed(ctx: RequestContext, { runtime: rt, forwarder }: Live, principal: Principal): void {
    const { req, res } = ctx
    try {
      ctx.principal = principal
      // 6b · authorize (a local account that must change its password may do nothing else)
      authorize(rt, principal, ctx.classification as Classification)
      // Expect: 100-continue (serve.ts sends no automatic 100): the client sends its body only once
      // the request is authorized, so a refused upload costs no bandwidth.
      if (req.headers.expect !== undefined) res.writeContinue()
      if (ctx.classification === WELL_KNOWN_CLASS) {
        if (rt.wellKnown === undefined) {
          // Weaviate answers 404 with an empty body and no Content-Type when OIDC is off (W20).
          res.writeHead(404, { 'content-length': 0, 'x-request-id': ctx.requestId })
          res.end()
          return
        }
        sendJson(res, 200, rt.wellKnown, req.method === 'HEAD', { 'x-request-id': ctx.requestId })
        return
      }
      // 3 + 7 · strip, then inject
      // A CORS preflight carries no identity, not even an anonymous one (SPEC §6): the upstream
      // answers it for any caller, and a verified credential on it changes nothing.
      const headers = upstreamHeaders(req, rt.headers, { principal: forwardedIdentity(ctx.classification as Classification, principal), requestId: ctx.requestId, proto: rt.proto })
      // 8 · forward
      const sent = metrics === undefined ? 0 : performance.now()
      forwarder.forward(req, res, ctx.path as string, ctx.query, headers, {
        requestId: ctx.requestId,
        onAbortable: (abort) => {
          ctx.abortUpstream = abort
        },
        done: (status) => {
          ctx.upstreamStatus = status
          if (metrics !== undefined) ctx.upstreamMs = performance.now() - sent
        },
        // Not answered twice: a body timeout (408) sets its reason, then aborts the exchange.
        fail: (err) => {
          if (ctx.reason === undefined) sendError(ctx, err)
        },
      })
    } catch (e) {
      sendError(ctx, asGatehouseError(e))
    }
  }
}

/**
 * Head checks on the raw header list: field count and bytes (431), a single Host (RFC 9112
 * §3.2: 400), and the only transfer coding gatehouse forwards, `chunked` alone — HTTP/1.0 with
 * Transfer-Encoding has faulty framing (RFC 9112 §6.1: 400) and any other coding would reach the
 * upstream re-framed without it (501, RFC 9112 §6.1).
 */
const CLOSE = { connection: 'close' }

function checkHead(req: IncomingMessage, limits: Runtime['limits']): void {
  const raw = req.rawHeaders
  if (raw.length > 2 * limits.maxHeaderFields) throw new GatehouseError('ERR_TOO_MANY_HEADERS', { detail: `more than ${limits.maxHeaderFields}`, headers: CLOSE })
  let bytes = 0
  let hosts = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    bytes += name.length + (raw[i + 1] as string).length + 4
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++
  }
  if (bytes > limits.maxHeaderBytes) throw new GatehouseError('ERR_HEADERS_TOO_LARGE', { detail: `${bytes} bytes of header fields`, headers: CLOSE })
  // Over a limit or ambiguous framing: answer and close (as the parser's own answers do), never
  // read on in a stream that may be misframed.
  if (hosts > 1) throw new GatehouseError('ERR_BAD_REQUEST', { detail: 'more than one Host header', headers: CLOSE })
  const te = req.headers['transfer-encoding']
  if (te !== undefined) {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) throw new GatehouseError('ERR_BAD_REQUEST', { detail: 'Transfer-Encoding in an HTTP/1.0 request', headers: CLOSE })
    if (te.trim().toLowerCase() !== 'chunked') throw new GatehouseError('ERR_UNSUPPORTED_TRANSFER_CODING', { detail: 'transfer coding other than chunked', headers: CLOSE })
  }
}

/**
 * Minimum body rate (`listen.timeouts.minBodyRate`): a body that arrives slower than the rate
 * gets 408 (if nothing was answered yet) and the upstream exchange is aborted, so a drip never
 * completes upstream; time the body waits on the upstream (backpressure) is not counted.
 */
function guardBodyRate(ctx: RequestContext, rate: BodyRate): void {
  const { req, res } = ctx
  const socket = req.socket
  const stop = watchBodyRate(req, rate, (detail) => {
    if (req.complete) return
    ctx.reason = 'ERR_REQUEST_TIMEOUT'
    ctx.abortUpstream?.()
    const answered = res.headersSent
    if (!answered) sendError(ctx, new GatehouseError('ERR_REQUEST_TIMEOUT', { detail }))
    if (req.httpVersionMajor === 1) {
      if (answered) socket.destroy()
      else socket.destroySoon()
      return
    }
    // HTTP/2: end this stream only, never the connection it shares with other streams. With
    // NO_ERROR Node sends RST_STREAM once the answer is flushed (RFC 9113 §8.1: the rest of the
    // body is not needed).
    const stream = (req as unknown as { stream: { close(code: number): void } }).stream
    stream.close(0)
  })
  res.once('close', stop)
}

/**
 * Slow-body guard: the socket's idle timer runs while the request body is being received, and
 * is cleared when the body is complete (Node then manages keep-alive itself). A client that
 * pauses longer than `ms` gets 408 (if nothing was answered yet) and the upstream exchange is
 * aborted, so a half-sent body never completes upstream.
 */
function guardBody(ctx: RequestContext, ms: number): void {
  const { req, res } = ctx
  // Captured now: after the error answer Node detaches the socket from the request.
  const socket = req.socket
  const onTimeout = (): void => {
    if (req.complete) return
    // Paused by backpressure (the upstream reads slowly): the pause is ours, not the client's.
    if (req.isPaused()) {
      socket.setTimeout(ms)
      return
    }
    if (res.headersSent) {
      ctx.abortUpstream?.()
      socket.destroy()
      return
    }
    // The reason first: the aborted exchange's failure is then not answered (this timeout is).
    ctx.reason = 'ERR_REQUEST_TIMEOUT'
    ctx.abortUpstream?.()
    sendError(ctx, new GatehouseError('ERR_REQUEST_TIMEOUT', { detail: `request body idle for ${ms} ms` }))
    socket.destroySoon()
  }
  // On the request (not the socket): Node then leaves the socket to us instead of destroying it.
  req.setTimeout(ms, onTimeout)
  const clear = (): void => {
    req.removeListener('timeout', onTimeout)
    // Once the response has finished, Node has set its keep-alive timer on the socket: keep it.
    if (!res.writableFinished && !socket.destroyed) socket.setTimeout(0)
  }
  req.once('end', clear)
  res.once('close', clear)
}

/** The metrics of one request, from the same context the access line reads (docs/metrics.md). */
function countRequest(metrics: Metrics, ctx: RequestContext, rt: Runtime): void {
  const { req, res } = ctx
  // A request that reached no classification but has a path was one of gatehouse's own routes.
  const own = ctx.classification === undefined && ctx.path !== undefined && ctx.reason === undefined
  const upstream = ctx.upstreamMs === undefined ? undefined : ctx.upstreamMs / 1e3
  metrics.request(req.httpVersionMajor >= 2 ? PROTOCOL.h2 : PROTOCOL.http1, res.headersSent ? res.statusCode : 0, ctx.principal?.method, ctx.reason, ctx.principal !== undefined, own, rt.config.upstream.profile, Number(process.hrtime.bigint() - ctx.start) / 1e9, upstream)
}

function logAccess(logger: Logger, ctx: RequestContext, client: string): void {
  // Allow-listed fields only: never the query, headers, or the credential.
  writeAccess(logger, {
    requestId: ctx.requestId,
    method: ctx.req.method,
    path: ctx.path ?? '(invalid)',
    status: ctx.res.headersSent ? ctx.res.statusCode : 0,
    durationMs: Math.round(Number(process.hrtime.bigint() - ctx.start) / 1e3) / 1e3,
    authMethod: ctx.principal?.method,
    user: ctx.principal?.user,
    reason: ctx.reason,
    detail: ctx.detail,
    upstreamStatus: ctx.upstreamStatus,
    aborted: ctx.res.writableFinished ? undefined : true,
    client,
  })
}
