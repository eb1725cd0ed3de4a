/**
 * Error answers, built in one place (as Envoy's jwt_authn does): JSON body with a stable reason
 * code, `Cache-Control: no-store`, and `WWW-Authenticate` on 401 (RFC 6750 §3).
 */
import { errorBody, GatehouseError } from '../errors.ts'
import type { IncomingMessage, ServerResponse as Res } from 'node:http'

/** What an error answer needs of a request's state (the pipeline's RequestContext fits it). */
export interface ErrorTarget {
  readonly req: IncomingMessage
  readonly res: Res
  readonly requestId: string
  /** Whether a credential was presented (decides `error="invalid_token"`). */
  readonly credential: unknown
  reason: string | undefined
  detail: string | undefined
}

/** Send `err` as the JSON error answer of `ctx`; cuts the connection if the response started. */
export function sendError(ctx: ErrorTarget, err: GatehouseError): void {
  ctx.reason = err.code
  ctx.detail = err.detail
  const res = ctx.res
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = JSON.stringify(errorBody(err, ctx.requestId))
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    'x-request-id': ctx.requestId,
  }
  if (err.status === 401) {
    headers['www-authenticate'] = ctx.credential !== undefined || err.code === 'ERR_INVALID_TOKEN' ? 'Bearer realm="gatehouse", error="invalid_token"' : 'Bearer realm="gatehouse"'
  }
  // An unread request body is never forwarded; closing is cheaper than draining it.
  if (!ctx.req.complete && ctx.req.httpVersionMajor < 2) headers.connection = 'close'
  if (err.headers !== undefined) Object.assign(headers, err.headers)
  // HTTP/2 forbids connection-specific fields (RFC 9113 §8.2.2); a "close" there is a no-op anyway.
  if (ctx.req.httpVersionMajor >= 2) delete headers.connection
  res.writeHead(err.status, headers)
  res.end(ctx.req.method === 'HEAD' ? undefined : body)
}

/** Send a small JSON body gatehouse produced itself (well-known, health). */
export function sendJson(res: Res, status: number, body: string, head: boolean, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra })
  res.end(head ? undefined : body)
}

/** Coerce anything thrown into a GatehouseError (unknown errors become 500, detail logged). */
export function asGatehouseError(e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e
  return new GatehouseError('ERR_INTERNAL', { detail: e instanceof Error ? `${e.name}: ${e.message}` : String(e), cause: e })
}
