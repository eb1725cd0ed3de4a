/**
 * The admin listener's routes: `/healthz` (process up) and `/readyz` (listeners bound, state
 * loaded, not draining). The login and admin API join here with the local-users issue.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import { errorBody, GatehouseError } from '../errors.ts'
import type { JwksStatus } from '../auth/oidc/jwksCache.ts'
import { sendJson } from '../pipeline/respond.ts'
import type { ServeState } from '../pipeline/handler.ts'

/** Readiness checks; each is true when satisfied. */
export interface Readiness {
  listeners: boolean
  state: boolean
  /** Each OIDC issuer's key status: ready once its keys were loaded at least once. */
  issuers: () => JwksStatus[]
}

/** Build the admin request handler. */
export function createAdminHandler(state: ServeState, readiness: Readiness): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const head = req.method === 'HEAD'
    if (req.method !== 'GET' && !head) return fail(res, new GatehouseError('ERR_METHOD_NOT_ALLOWED'), head)
    if (path === '/healthz') return sendJson(res, 200, JSON.stringify({ status: 'ok' }), head)
    if (path === '/readyz') {
      const issuers = readiness.issuers().map((i) => ({ issuer: i.issuer, ready: i.ready, keys: i.keys, lastSuccess: i.lastSuccess, lastError: i.lastError }))
      const checks = { listeners: readiness.listeners, state: readiness.state, draining: state.draining, issuers }
      const ready = readiness.listeners && readiness.state && !state.draining && issuers.every((i) => i.ready)
      return sendJson(res, ready ? 200 : 503, JSON.stringify({ status: ready ? 'ready' : 'not ready', checks }), head)
    }
    return fail(res, new GatehouseError('ERR_NOT_FOUND'), head)
  }
}

function fail(res: ServerResponse, err: GatehouseError, head: boolean): void {
  sendJson(res, err.status, JSON.stringify(errorBody(err, randomUUID())), head)
}
