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
import type { Runtime } from '../config/compile.ts'
import { GatehouseError } from '../errors.ts'
import { writeAccess, type Logger } from '../log.ts'
import type { Forwarder } from '../upstream/forward.ts'
import type { RequestContext } from './context.ts'
import { upstreamHeaders } from './headers.ts'
import { asGatehouseError, sendError, sendJson } from './respond.ts'
import { parseTarget } from './target.ts'

/** Shared mutable process state the handler reads (draining) and updates (in-flight count). */
export interface ServeState {
  draining: boolean
  inflight: number
}

export interface HandlerDeps {
  readonly runtime: Runtime
  readonly forwarder: Forwarder
  readonly logger: Logger
  readonly state: ServeState
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/
const WELL_KNOWN = '/v1/.well-known/openid-configuration'

/** Build the request handler for the data listener. */
export function createHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { runtime: rt, forwarder, logger, state } = deps
  const requestIdHeader = rt.config.identityHeaders.requestId.toLowerCase()
  const accessLog = rt.config.log.access

  return (req, res) => {
    // 1 · request id: kept from the client when well-formed, else generated
    const given = req.headers[requestIdHeader]
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
      detail: undefined,
      abortUpstream: undefined,
    }
    state.inflight++
    res.once('close', () => {
      state.inflight--
      ctx.abortUpstream?.()
      if (accessLog) logAccess(logger, ctx)
    })
    // HTTP/2 has no Connection header (RFC 9113 §8.2.2); its sessions get GOAWAY on stop().
    if (state.draining && req.httpVersionMajor < 2) res.setHeader('connection', 'close')
    run(ctx).catch((e: unknown) => sendError(ctx, asGatehouseError(e)))
  }

  async function run(ctx: RequestContext): Promise<void> {
    const { req, res } = ctx
    const method = req.method as string
    // 2 · target
    const target = parseTarget(req.url ?? '/')
    ctx.path = target.path
    // 4 · credential (read from the client's own headers, before any stripping can hide it)
    const { credential, query } = extractCredential(req, target.query, rt.extract)
    ctx.credential = credential
    ctx.query = query
    // 6a · what the request needs (decided before authentication: public paths admit anonymous)
    const wellKnown = target.path === WELL_KNOWN && (method === 'GET' || method === 'HEAD')
    ctx.classification = wellKnown ? { access: 'public', rule: 'gatehouse: OIDC discovery endpoint' } : rt.profile.classify(method, target.path)
    // 5 · authenticate
    const authn = rt.authenticator.authenticate(credential, ctx.classification.access)
    const { principal } = authn instanceof Promise ? await authn : authn
    ctx.principal = principal
    // A local account that must change its password may do nothing else (SPEC §8).
    if (principal.mustChangePassword === true) throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
    // 6b · authorize
    const decision = rt.adminList.decide(principal, ctx.classification.access)
    if (!decision.allowed) throw new GatehouseError('ERR_FORBIDDEN', { detail: decision.rule })
    if (wellKnown) {
      if (rt.wellKnown === undefined) {
        // Weaviate answers 404 with an empty body and no Content-Type when OIDC is off (W20).
        res.writeHead(404, { 'content-length': 0, 'x-request-id': ctx.requestId })
        res.end()
        return
      }
      sendJson(res, 200, rt.wellKnown, method === 'HEAD', { 'x-request-id': ctx.requestId })
      return
    }
    // 3 + 7 · strip, then inject
    const headers = upstreamHeaders(req, rt.headers, { principal, requestId: ctx.requestId, proto: rt.proto })
    // 8 · forward
    ctx.upstreamStatus = await forwarder.forward(req, res, target.path, query, headers, {
      requestId: ctx.requestId,
      onAbortable: (abort) => {
        ctx.abortUpstream = abort
      },
    })
  }
}

function logAccess(logger: Logger, ctx: RequestContext): void {
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
  })
}
