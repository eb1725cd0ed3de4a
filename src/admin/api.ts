/**
 * The admin listener's routes (docs/api.md): health, the local issuer's keys, and Weka's login
 * and administration API. Only local users' tokens are accepted here; roles decide: `admin`
 * changes users and security settings, `readonly` reads them, `regular` manages only itself.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { jwtShape } from '../auth/jwtShape.ts'
import type { Principal } from '../http/principal.ts'
import { parseDuration } from '../config/units.ts'
import { errorBody, GatehouseError } from '../errors.ts'
import type { LocalIssuer } from '../issuer/localIssuer.ts'
import { writeAccess, type Logger } from '../log.ts'
import type { ServeState } from '../pipeline/handler.ts'
import { asGatehouseError } from '../http/respond.ts'
import type { CertManager } from '../tls/certs.ts'
import type { OutboundTrust } from '../upstream/trust.ts'
import type { Readiness } from './routes.ts'

export interface AdminDeps {
  readonly state: ServeState
  readonly readiness: Readiness
  readonly logger: Logger
  readonly issuer: LocalIssuer | undefined
  readonly certs: CertManager | undefined
  readonly trust: OutboundTrust
  readonly accessLog: boolean
  readonly tokenLifetimes: { readonly accessMs: number; readonly refreshMs: number }
}

type Access = 'public' | 'user' | 'reader' | 'admin' | 'password'

interface Ctx {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly requestId: string
  readonly params: readonly string[]
  principal: Principal | undefined
  body(): Promise<Record<string, unknown>>
}

interface Route {
  readonly method: string
  readonly path: RegExp
  readonly access: Access
  /** Needs local users enabled. */
  readonly local: boolean
  run(ctx: Ctx, d: AdminDeps): Promise<{ status?: number; data?: unknown; raw?: unknown; headers?: Record<string, string> }>
}

const MAX_BODY = 256 * 1024
const seg = '([^/]+)'

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: `${what} is not enabled` })
  return v
}
const iss = (d: AdminDeps): LocalIssuer => need(d.issuer, 'local users (authentication.local.enabled)')

const ROUTES: Route[] = [
  {
    method: 'GET', path: /^\/healthz$/, access: 'public', local: false,
    run: async () => ({ raw: { status: 'ok' } }),
  },
  {
    method: 'GET', path: /^\/readyz$/, access: 'public', local: false,
    run: async (_c, d) => {
      const issuers = d.readiness.issuers().map((i) => ({ issuer: i.issuer, ready: i.ready, keys: i.keys, lastSuccess: i.lastSuccess, lastError: i.lastError }))
      const checks = { listeners: d.readiness.listeners, state: d.readiness.state, draining: d.state.draining, issuers }
      const ready = d.readiness.listeners && d.readiness.state && !d.state.draining && issuers.every((i) => i.ready)
      return { status: ready ? 200 : 503, raw: { status: ready ? 'ready' : 'not ready', checks } }
    },
  },
  { method: 'GET', path: /^\/\.well-known\/jwks\.json$/, access: 'public', local: true, run: async (_c, d) => ({ raw: iss(d).jwks() }) },
  {
    method: 'GET', path: /^\/\.well-known\/openid-configuration$/, access: 'public', local: true,
    run: async (c, d) => ({ raw: { issuer: iss(d).iss, jwks_uri: `https://${c.req.headers.host ?? 'localhost'}/.well-known/jwks.json`, id_token_signing_alg_values_supported: ['ES256'] } }),
  },
  {
    method: 'POST', path: /^\/api\/v2\/login$/, access: 'public', local: true,
    run: async (c, d) => {
      const b = await c.body()
      return { data: await iss(d).login(b.username, b.password) }
    },
  },
  {
    method: 'POST', path: /^\/api\/v2\/login\/refresh$/, access: 'public', local: true,
    run: async (c, d) => ({ data: await iss(d).refresh((await c.body()).refresh_token) }),
  },
  {
    method: 'GET', path: /^\/api\/v2\/security\/defaultTokensExpiry$/, access: 'public', local: true,
    run: async (_c, d) => ({ data: { access_token_expiry: Math.round(d.tokenLifetimes.accessMs / 1000), refresh_token_expiry: Math.round(d.tokenLifetimes.refreshMs / 1000) } }),
  },
  { method: 'GET', path: /^\/api\/v2\/security\/banner$/, access: 'public', local: true, run: async (_c, d) => ({ data: await iss(d).banner() }) },
  { method: 'PUT', path: /^\/api\/v2\/security\/banner$/, access: 'admin', local: true, run: async (c, d) => ({ data: await iss(d).updateBanner({ text: (await c.body()).text as string }) }) },
  { method: 'DELETE', path: /^\/api\/v2\/security\/banner$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await iss(d).updateBanner({ text: '' }) }) },
  { method: 'POST', path: /^\/api\/v2\/security\/banner\/enable$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await iss(d).updateBanner({ enabled: true }) }) },
  { method: 'POST', path: /^\/api\/v2\/security\/banner\/disable$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await iss(d).updateBanner({ enabled: false }) }) },
  { method: 'GET', path: /^\/api\/v2\/users\/whoami$/, access: 'user', local: true, run: async (c, d) => ({ data: await iss(d).whoami(c.principal as Principal) }) },
  { method: 'GET', path: /^\/api\/v2\/users$/, access: 'reader', local: true, run: async (_c, d) => ({ data: await iss(d).listUsers() }) },
  {
    method: 'POST', path: /^\/api\/v2\/users$/, access: 'admin', local: true,
    run: async (c, d) => {
      const b = await c.body()
      return { status: 201, data: await iss(d).createUser(b.username, b.password, b.role) }
    },
  },
  {
    method: 'PUT', path: /^\/api\/v2\/users\/password$/, access: 'password', local: true,
    run: async (c, d) => ({ data: { username: await iss(d).changePassword(c.principal as Principal, await c.body()) } }),
  },
  {
    method: 'POST', path: /^\/api\/v2\/users\/tokens$/, access: 'user', local: true,
    run: async (c, d) => {
      const t = (await c.body()).access_token_timeout
      let ms: number | undefined
      if (t !== undefined) {
        ms = typeof t === 'string' ? parseDuration(t) : undefined
        if (ms === undefined || ms <= 0) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'access_token_timeout must be a duration such as 30d, 1d5h, 1w or infinite' })
      }
      return { data: await iss(d).generateToken(c.principal as Principal, ms) }
    },
  },
  {
    method: 'DELETE', path: new RegExp(`^/api/v2/users/${seg}/revoke$`), access: 'user', local: true,
    run: async (c, d) => {
      const user = c.params[0] as string
      const p = c.principal as Principal
      if (user !== p.user && !p.groups.includes('admin')) throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: only an admin may revoke another user’s tokens' })
      await iss(d).revoke(user)
      return { data: { username: user } }
    },
  },
  {
    method: 'DELETE', path: new RegExp(`^/api/v2/users/${seg}$`), access: 'admin', local: true,
    run: async (c, d) => {
      await iss(d).deleteUser(c.principal as Principal, c.params[0] as string)
      return { data: { username: c.params[0] } }
    },
  },
  { method: 'GET', path: /^\/api\/v2\/lockoutPolicy$/, access: 'reader', local: true, run: async (_c, d) => ({ data: await iss(d).lockoutPolicy() }) },
  {
    method: 'PUT', path: /^\/api\/v2\/lockoutPolicy$/, access: 'admin', local: true,
    run: async (c, d) => {
      const b = await c.body()
      const n = b.failed_attempts
      const dur = b.lockout_duration
      if (n !== undefined && typeof n !== 'number') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'failed_attempts must be a number' })
      let ms: number | undefined
      if (dur !== undefined) {
        ms = typeof dur === 'number' ? dur * 1000 : typeof dur === 'string' ? parseDuration(dur) : undefined
        if (ms === undefined) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'lockout_duration must be seconds or a duration such as 2m' })
      }
      return { data: await iss(d).setLockoutPolicy(n, ms) }
    },
  },
  { method: 'DELETE', path: /^\/api\/v2\/lockoutPolicy$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await iss(d).resetLockoutPolicy() }) },
  { method: 'GET', path: /^\/api\/v2\/tls$/, access: 'reader', local: true, run: async (_c, d) => ({ data: need(d.certs, 'TLS').status() }) },
  {
    method: 'POST', path: /^\/api\/v2\/tls$/, access: 'admin', local: true,
    run: async (c, d) => {
      const b = await c.body()
      return { data: await need(d.certs, 'TLS (tls.enabled)').set(b.certificate, b.private_key) }
    },
  },
  { method: 'DELETE', path: /^\/api\/v2\/tls$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await need(d.certs, 'TLS (tls.enabled)').unset() }) },
  { method: 'GET', path: /^\/api\/v2\/security\/caCert$/, access: 'reader', local: true, run: async (_c, d) => ({ data: d.trust.status() }) },
  { method: 'PUT', path: /^\/api\/v2\/security\/caCert$/, access: 'admin', local: true, run: async (c, d) => ({ data: await d.trust.set((await c.body()).certificate) }) },
  { method: 'DELETE', path: /^\/api\/v2\/security\/caCert$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await d.trust.unset() }) },
]

/** Build the admin listener's handler. */
export function createAdminHandler(d: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const requestId = randomUUID()
    const start = process.hrtime.bigint()
    const url = req.url ?? '/'
    const path = url.split('?')[0] as string
    let principal: Principal | undefined
    let reason: string | undefined
    if (d.accessLog) {
      res.once('close', () => {
        writeAccess(d.logger, { requestId, listener: 'admin', method: req.method, path, status: res.statusCode, durationMs: Math.round(Number(process.hrtime.bigint() - start) / 1e3) / 1e3, authMethod: principal?.method, user: principal?.user, reason, detail: undefined, upstreamStatus: undefined, aborted: undefined })
      })
    }
    const fail = (e: unknown): void => {
      const err = asGatehouseError(e)
      reason = err.code
      if (err.code === 'ERR_INTERNAL') d.logger.error({ requestId, detail: err.detail }, 'admin API error')
      send(res, err.status, errorBody(err, requestId), req.method === 'HEAD', { ...err.headers, ...(err.status === 401 ? { 'www-authenticate': 'Bearer realm="gatehouse"' } : {}) })
    }
    void (async () => {
      const method = req.method === 'HEAD' ? 'GET' : (req.method as string)
      let pathMatched = false
      for (const r of ROUTES) {
        const m = r.path.exec(path)
        if (m === null) continue
        pathMatched = true
        if (r.method !== method) continue
        if (r.local && d.issuer === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'local users are not enabled (set authentication.local.enabled or GATEHOUSE_LOCAL_ENABLED)' })
        const params = m.slice(1).map((x) => decodeURIComponent(x))
        if (r.access !== 'public') principal = await authenticate(req, d, r.access)
        const ctx: Ctx = { req, res, requestId, params, principal, body: () => readJson(req) }
        const out = await r.run(ctx, d)
        send(res, out.status ?? 200, out.raw ?? { data: out.data }, req.method === 'HEAD', out.headers)
        return
      }
      throw new GatehouseError(pathMatched ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_NOT_FOUND')
    })().catch(fail)
  }
}

async function authenticate(req: IncomingMessage, d: AdminDeps, access: Access): Promise<Principal> {
  const issuer = d.issuer as LocalIssuer
  const m = /^bearer +(\S+)$/i.exec(req.headers.authorization ?? '')
  if (m === null) throw new GatehouseError('ERR_UNAUTHENTICATED', { message: 'log in first: POST /api/v2/login (gatehouse user login), then send Authorization: Bearer <access_token>' })
  const token = m[1] as string
  const shape = jwtShape(token)
  if (shape === undefined || shape.payload.iss !== issuer.iss) throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: the admin API accepts only local users’ tokens' })
  const p = await issuer.verify(token, shape)
  if (p.mustChangePassword === true && access !== 'password') throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
  const role = p.groups[0]
  if (access === 'admin' && role !== 'admin') throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: this needs the admin role' })
  if (access === 'reader' && role !== 'admin' && role !== 'readonly') throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: this needs the admin or readonly role' })
  return p
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length
    if (n > MAX_BODY) throw new GatehouseError('ERR_REQUEST_TOO_LARGE', { message: `request body exceeds ${MAX_BODY} bytes` })
    chunks.push(c)
  }
  if (n === 0) return {}
  let v: unknown
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new GatehouseError('ERR_BAD_REQUEST', { message: 'the body must be JSON' })
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'the body must be a JSON object' })
  return v as Record<string, unknown>
}

function send(res: ServerResponse, status: number, body: unknown, head: boolean, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(head ? undefined : text)
}
