/**
 * The built-in `echo:` upstream (SPEC §7): answers every request with JSON of the method, path,
 * query and headers it received — exactly what a real upstream would have been sent. For the
 * demo and for tests. The body is read and counted (streamed, never kept).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { headerObject } from '../http/headers.ts'
import { asGatehouseError } from '../http/respond.ts'
import type { Forwarder } from './forward.ts'

/** What the echo upstream answers. */
export interface EchoReply {
  method: string
  path: string
  query: string
  headers: Record<string, string | string[]>
  bodyBytes: number
}

/** Create the echo forwarder. */
export function createEchoForwarder(maxRequestBody: number): Forwarder {
  return {
    forward(req, res, path, query, headers, hooks) {
      echo(req, res, path, query, headers, hooks.requestId, maxRequestBody).then(hooks.done, (e: unknown) => hooks.fail(asGatehouseError(e)))
    },
    async close() {},
  }
}

async function echo(req: IncomingMessage, res: ServerResponse, path: string, query: string, headers: string[], requestId: string, maxRequestBody: number): Promise<number> {
  const declared = Number(req.headers['content-length'] ?? NaN)
  if (maxRequestBody > 0 && declared > maxRequestBody) throw new GatehouseError('ERR_REQUEST_TOO_LARGE', { detail: `content-length ${declared}` })
  let bodyBytes = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bodyBytes += chunk.length
    if (maxRequestBody > 0 && bodyBytes > maxRequestBody) throw new GatehouseError('ERR_REQUEST_TOO_LARGE', { detail: `more than ${maxRequestBody} bytes` })
  }
  const reply: EchoReply = { method: req.method as string, path, query, headers: headerObject(headers), bodyBytes }
  const body = JSON.stringify(reply)
  sendJson(res, 200, body, requestId)
  return 200
}

function sendJson(res: ServerResponse, status: number, body: string, requestId: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-request-id': requestId })
  res.end(body)
}
