/**
 * The admin listener's routes (docs/api.md): health, the local issuer's keys, and Weka's login
 * and administration API. Only local users' tokens are accepted here; roles decide: `admin`
 * changes users and security settings, `readonly` reads them, `regular` manages only itself.
 *
 * Bodies are JSON only (415 otherwise: a cross-site form can send text/plain, urlencoded or
 * multipart bodies, never application/json) and must arrive whole within `admin.bodyTimeout`.
 * Every security-relevant route writes one audit line (log.ts `audit`) whatever its outcome.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { jwtShape } from '../auth/jwtShape.ts'
import { clientKey } from '../auth/throttle.ts'
import type { Principal } from '../http/principal.ts'
import { parseDuration } from '../config/units.ts'
import { errorBody, GatehouseError } from '../errors.ts'
import type { LocalIssuer, RequestMeta } from '../issuer/localIssuer.ts'
import { audit, writeAccess, type AuditEvent, type Logger } from '../log.ts'
import type { Live, ServeState } from '../pipeline/handler.ts'
import { asGatehouseError } from '../http/respond.ts'
import type { CertManager } from '../tls/certs.ts'
import type { OutboundTrust } from '../upstream/trust.ts'
import type { IssuerStore } from '../store/store.ts'
import { createConsole, type ConsoleHandler } from '../console/console.ts'
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
  /**
   * The data listener's live runtime, read per request for `admin.bodyTimeout`; without it a
   * 10 s deadline is used. (Its `trustedProxies` is not used here: see the client address below.)
   */
  readonly live?: { readonly current: Live }
  /** The state store (console sessions live there); absent in tests that need none. */
  readonly store?: IssuerStore
  /** The listeners' URLs, filled in once they are bound (the console's status page shows them). */
  readonly urls?: { data?: string | undefined; admin?: string | undefined; grpc?: string | undefined }
  /** `GET /metrics` (docs/metrics.md); undefined when `metrics.enabled` is false (404). */
  readonly metrics?: MetricsEndpoint | undefined
}

/** What `/metrics` serves: the Prometheus text (this process, or the workers' sum) and its guard. */
export interface MetricsEndpoint {
  /** When set, a scrape needs `Authorization: Bearer <token>` (compared in constant time). */
  readonly bearerToken: string | undefined
  readonly contentType: string
  text(): Promise<string>
}

type Access = 'public' | 'user' | 'reader' | 'admin' | 'password'

interface Ctx {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly requestId: string
  readonly params: readonly string[]
  principal: Principal | undefined
  /** Client address and request id, for the audit trail and the login throttle. */
  readonly meta: RequestMeta
  /** The parsed body once `body()` has read it (the audit line takes its target from it). */
  parsed: Record<string, unknown> | undefined
  body(): Promise<Record<string, unknown>>
}

/** What a route's audit line says (log.ts `audit`); the actor is the caller, the outcome its answer. */
interface RouteAudit {
  readonly events: readonly AuditEvent[]
  readonly target?: (c: Ctx) => string | undefined
  readonly extra?: (c: Ctx) => Record<string, string | number | boolean>
}

interface Route {
  readonly method: string
  readonly path: RegExp
  readonly access: Access
  /** Needs local users enabled. */
  readonly local: boolean
  run(ctx: Ctx, d: AdminDeps): Promise<{ status?: number; data?: unknown; raw?: unknown; headers?: Record<string, string>; text?: string }>
  readonly audit?: RouteAudit
}

const MAX_BODY = 256 * 1024
const DEFAULT_BODY_TIMEOUT_MS = 10_000
const seg = '([^/]+)'

/** A string field of the parsed body, for audit targets (never a secret field). */
const field = (c: Ctx, name: string): string | undefined => (typeof c.parsed?.[name] === 'string' ? (c.parsed[name] as string) : undefined)
const self = (c: Ctx): string | undefined => c.principal?.user
/** 400 unless `v` is a string: the admin API never guesses what a number or an object meant. */
function str(v: unknown, name: string, example: string): string {
  if (typeof v !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: `${name} is required and must be a string: send {"${name}": ${example}}` })
  return v
}
const change = (what: string) => (): Record<string, string> => ({ change: what })

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
      const checks = { listeners: d.readiness.listeners, state: d.readiness.state, draining: d.state.draining, issuers, ...(d.readiness.store === undefined ? {} : { store: d.readiness.store() }), ...(await directoryCheck(d)) }
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
    audit: { events: ['login'], target: (c) => field(c, 'username') },
    run: async (c, d) => {
      const b = await c.body()
      if (b.org !== undefined && typeof b.org !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'org must be a string (or left out)' })
      return { data: await iss(d).login(b.username, b.password, c.meta) }
    },
  },
  {
    method: 'POST', path: /^\/api\/v2\/login\/refresh$/, access: 'public', local: true,
    run: async (c, d) => ({ data: await iss(d).refresh((await c.body()).refresh_token, c.meta) }),
  },
  {
    method: 'GET', path: /^\/api\/v2\/security\/defaultTokensExpiry$/, access: 'public', local: true,
    run: async (_c, d) => ({ data: { access_token_expiry: Math.round(d.tokenLifetimes.accessMs / 1000), refresh_token_expiry: Math.round(d.tokenLifetimes.refreshMs / 1000) } }),
  },
  {
    // Prometheus text format; the scrape token (when set) is not a user's token: no role applies.
    method: 'GET', path: /^\/metrics$/, access: 'public', local: false,
    run: async (c, d) => {
      const m = need(d.metrics, 'metrics (metrics.enabled)')
      checkScrapeToken(c.req, m.bearerToken)
      return { text: await m.text(), headers: { 'content-type': m.contentType } }
    },
  },
  { method: 'GET', path: /^\/api\/v2\/security\/banner$/, access: 'public', local: true, run: async (_c, d) => ({ data: await iss(d).banner() }) },
  {
    method: 'PUT', path: /^\/api\/v2\/security\/banner$/, access: 'admin', local: true,
    audit: { events: ['banner.changed'], target: () => 'banner', extra: change('text') },
    run: async (c, d) => ({ data: await iss(d).updateBanner({ text: str((await c.body()).text, 'text', '"the banner text"') }) }),
  },
  { method: 'DELETE', path: /^\/api\/v2\/security\/banner$/, access: 'admin', local: true, audit: { events: ['banner.changed'], target: () => 'banner', extra: change('cleared') }, run: async (_c, d) => ({ data: await iss(d).updateBanner({ text: '' }) }) },
  { method: 'POST', path: /^\/api\/v2\/security\/banner\/enable$/, access: 'admin', local: true, audit: { events: ['banner.changed'], target: () => 'banner', extra: change('enabled') }, run: async (_c, d) => ({ data: await iss(d).updateBanner({ enabled: true }) }) },
  { method: 'POST', path: /^\/api\/v2\/security\/banner\/disable$/, access: 'admin', local: true, audit: { events: ['banner.changed'], target: () => 'banner', extra: change('disabled') }, run: async (_c, d) => ({ data: await iss(d).updateBanner({ enabled: false }) }) },
  { method: 'GET', path: /^\/api\/v2\/users\/whoami$/, access: 'user', local: true, run: async (c, d) => ({ data: await iss(d).whoami(c.principal as Principal) }) },
  { method: 'GET', path: /^\/api\/v2\/users$/, access: 'reader', local: true, run: async (_c, d) => ({ data: await iss(d).listUsers() }) },
  {
    method: 'POST', path: /^\/api\/v2\/users$/, access: 'admin', local: true,
    audit: { events: ['user.created'], target: (c) => field(c, 'username'), extra: (c): Record<string, string> => (field(c, 'role') === undefined ? {} : { role: field(c, 'role') as string }) },
    run: async (c, d) => {
      const b = await c.body()
      return { status: 201, data: await iss(d).createUser(b.username, b.password, b.role) }
    },
  },
  {
    method: 'PUT', path: /^\/api\/v2\/users\/password$/, access: 'password', local: true,
    audit: { events: ['password.changed'], target: (c) => field(c, 'username') || self(c) },
    run: async (c, d) => ({ data: { username: await iss(d).changePassword(c.principal as Principal, await c.body(), c.meta) } }),
  },
  {
    method: 'POST', path: /^\/api\/v2\/users\/tokens$/, access: 'user', local: true,
    audit: { events: ['token.generated'], target: self, extra: (c) => ({ lifetime: field(c, 'access_token_timeout') ?? 'default' }) },
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
    audit: { events: ['tokens.revoked'], target: (c) => c.params[0] },
    run: async (c, d) => {
      const user = c.params[0] as string
      const p = c.principal as Principal
      if (user !== p.user && !p.groups.includes('admin')) throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: only an admin may revoke another user’s tokens' })
      await iss(d).revoke(user)
      return { data: { username: user } }
    },
  },
  {
    method: 'PUT', path: new RegExp(`^/api/v2/users/${seg}$`), access: 'admin', local: true,
    audit: { events: ['user.role_changed'], target: (c) => c.params[0], extra: (c): Record<string, string> => (field(c, 'role') === undefined ? {} : { role: field(c, 'role') as string }) },
    run: async (c, d) => ({ data: await iss(d).setRole(c.principal as Principal, c.params[0] as string, (await c.body()).role) }),
  },
  {
    method: 'DELETE', path: new RegExp(`^/api/v2/users/${seg}$`), access: 'admin', local: true,
    audit: { events: ['user.deleted'], target: (c) => c.params[0] },
    run: async (c, d) => {
      await iss(d).deleteUser(c.principal as Principal, c.params[0] as string)
      return { data: { username: c.params[0] } }
    },
  },
  { method: 'GET', path: /^\/api\/v2\/lockoutPolicy$/, access: 'reader', local: true, run: async (_c, d) => ({ data: await iss(d).lockoutPolicy() }) },
  {
    method: 'PUT', path: /^\/api\/v2\/lockoutPolicy$/, access: 'admin', local: true,
    audit: {
      events: ['lockout_policy.changed'],
      target: () => 'lockoutPolicy',
      extra: (c) => {
        const out: Record<string, string | number> = {}
        for (const k of ['failed_attempts', 'lockout_duration']) if (typeof c.parsed?.[k] === 'number' || typeof c.parsed?.[k] === 'string') out[k] = c.parsed[k] as string | number
        return out
      },
    },
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
  { method: 'DELETE', path: /^\/api\/v2\/lockoutPolicy$/, access: 'admin', local: true, audit: { events: ['lockout_policy.reset', 'locks.cleared'], target: () => 'lockoutPolicy' }, run: async (_c, d) => ({ data: await iss(d).resetLockoutPolicy() }) },
  { method: 'GET', path: /^\/api\/v2\/tls$/, access: 'reader', local: true, run: async (_c, d) => ({ data: need(d.certs, 'TLS').status() }) },
  {
    method: 'POST', path: /^\/api\/v2\/tls$/, access: 'admin', local: true,
    audit: { events: ['tls.changed'], target: () => 'tls', extra: change('set') },
    run: async (c, d) => {
      const b = await c.body()
      return { data: await need(d.certs, 'TLS (tls.enabled)').set(str(b.certificate, 'certificate', '"<PEM>"'), str(b.private_key, 'private_key', '"<PEM>"')) }
    },
  },
  { method: 'DELETE', path: /^\/api\/v2\/tls$/, access: 'admin', local: true, audit: { events: ['tls.changed'], target: () => 'tls', extra: change('unset') }, run: async (_c, d) => ({ data: await need(d.certs, 'TLS (tls.enabled)').unset() }) },
  { method: 'GET', path: /^\/api\/v2\/security\/caCert$/, access: 'reader', local: true, run: async (_c, d) => ({ data: d.trust.status() }) },
  {
    method: 'PUT', path: /^\/api\/v2\/security\/caCert$/, access: 'admin', local: true,
    audit: { events: ['ca_cert.changed'], target: () => 'caCert', extra: change('set') },
    run: async (c, d) => ({ data: await d.trust.set(str((await c.body()).certificate, 'certificate', '"<PEM>"')) }),
  },
  { method: 'DELETE', path: /^\/api\/v2\/security\/caCert$/, access: 'admin', local: true, audit: { events: ['ca_cert.changed'], target: () => 'caCert', extra: change('unset') }, run: async (_c, d) => ({ data: await d.trust.unset() }) },
  // The local issuer's signing keys (docs/security.md, "Signing keys"): kids and times, never a private part.
  { method: 'GET', path: /^\/api\/v2\/security\/signingKey$/, access: 'reader', local: true, run: async (_c, d) => ({ data: iss(d).signingKeyStatus() }) },
  {
    method: 'POST', path: /^\/api\/v2\/security\/signingKey\/rotate$/, access: 'admin', local: true,
    audit: { events: ['signing_key.rotated'], target: () => 'signingKey', extra: (c) => ({ revokePrevious: c.parsed?.revoke_previous === true }) },
    run: async (c, d) => {
      const b = await c.body() // no body: {}
      if (b.revoke_previous !== undefined && typeof b.revoke_previous !== 'boolean') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'revoke_previous must be true or false: send {"revoke_previous": true}, or no body' })
      return { data: await iss(d).rotateSigningKey(b.revoke_previous === true) }
    },
  },
  // --- directory users (gatehouse user ldap …; docs/directory.md). Admin only: the settings name the reader account.
  { method: 'GET', path: /^\/api\/v2\/ldap$/, access: 'admin', local: true, run: async (_c, d) => ({ data: await iss(d).directory.show() }) },
  { method: 'POST', path: /^\/api\/v2\/ldap$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('setup') }, run: async (c, d) => ({ data: await iss(d).directory.setup(await c.body(), false) }) },
  { method: 'POST', path: /^\/api\/v2\/ldap\/ad$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('setup-ad') }, run: async (c, d) => ({ data: await iss(d).directory.setup(await c.body(), true) }) },
  { method: 'PUT', path: /^\/api\/v2\/ldap$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('update') }, run: async (c, d) => ({ data: await iss(d).directory.update(await c.body()) }) },
  { method: 'POST', path: /^\/api\/v2\/ldap\/enable$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('enabled') }, run: async (_c, d) => ({ data: await iss(d).directory.setEnabled(true) }) },
  { method: 'POST', path: /^\/api\/v2\/ldap\/disable$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('disabled') }, run: async (_c, d) => ({ data: await iss(d).directory.setEnabled(false) }) },
  { method: 'DELETE', path: /^\/api\/v2\/ldap$/, access: 'admin', local: true, audit: { events: ['ldap.changed'], target: () => 'ldap', extra: change('reset') }, run: async (_c, d) => ({ data: await iss(d).directory.reset() }) },
]

/**
 * `/readyz`'s `checks.directory` while directory users are enabled: degraded, never failed — the
 * directory being down stops only directory sign-ins; local users, API keys and OIDC go on.
 */
async function directoryCheck(d: AdminDeps): Promise<{ directory?: Record<string, unknown> }> {
  if (d.issuer === undefined) return {}
  const h = await d.issuer.directory.health().catch((e: unknown) => ({ enabled: true, reachable: false, lastError: String(e) }))
  if (!h.enabled) return {}
  return { directory: { ...h, status: h.reachable === true ? 'ok' : 'degraded' } }
}

/** Whether a path belongs to the web console (docs/console.md): `/ui` and everything under `/ui/`. */
function isConsolePath(path: string): boolean {
  return path === '/ui' || path.startsWith('/ui/')
}

/**
 * The web console, built on first use; a 404 with what to enable when it is off. It needs local
 * users (people sign in as local users), the state store (sessions) and the running config.
 */
function consoleFor(d: AdminDeps): () => ConsoleHandler {
  let built: ConsoleHandler | undefined
  return () => {
    const config = d.live?.current.runtime.config
    if (config !== undefined && !config.console.enabled) throw new GatehouseError('ERR_NOT_FOUND', { message: 'the web console is not enabled: set console.enabled: true (GATEHOUSE_CONSOLE_ENABLED=true)' })
    if (d.issuer === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'the web console needs local users: set authentication.local.enabled (GATEHOUSE_LOCAL_ENABLED=true)' })
    const live = d.live
    if (live === undefined || d.store === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'the web console is not available on this listener (no state store)' })
    built ??= createConsole({
      issuer: d.issuer,
      store: d.store,
      logger: d.logger,
      certs: d.certs,
      trust: d.trust,
      config: () => live.current.runtime.config,
      facts: () => ({ listeners: d.readiness.listeners, state: d.readiness.state, draining: d.state.draining, issuers: d.readiness.issuers(), urls: d.urls ?? {} }),
    })
    return built
  }
}

/** Build the admin listener's handler. */
export function createAdminHandler(d: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const consoleHandler = consoleFor(d)
  return (req, res) => {
    const requestId = randomUUID()
    const start = process.hrtime.bigint()
    const url = req.url ?? '/'
    const path = url.split('?')[0] as string
    const rt = d.live?.current.runtime
    // The address the login throttle and the audit trail key on: the peer itself (IPv6 per /64).
    // `trustedProxies` describes what sits in front of the data listener; the admin listener is
    // often reached directly, and a peer in that range could otherwise name a fresh address in
    // X-Forwarded-For for every login (and forge the audit client).
    const client = clientKey(req.socket.remoteAddress, undefined, undefined)
    const meta: RequestMeta = { client, requestId }
    let principal: Principal | undefined
    let reason: string | undefined
    let ctx: Ctx | undefined
    let routeAudit: RouteAudit | undefined
    if (d.accessLog) {
      res.once('close', () => {
        writeAccess(d.logger, { requestId, listener: 'admin', method: req.method, path, status: res.statusCode, durationMs: Math.round(Number(process.hrtime.bigint() - start) / 1e3) / 1e3, authMethod: principal?.method, user: principal?.user, reason, detail: undefined, upstreamStatus: undefined, aborted: undefined, client })
      })
    }
    const auditOnce = (outcome: 'success' | 'failure'): void => {
      const a = routeAudit
      if (a === undefined || ctx === undefined) return
      routeAudit = undefined
      let target: string | undefined
      let extra: Record<string, string | number | boolean> | undefined
      try {
        target = a.target?.(ctx)
        extra = a.extra?.(ctx)
      } catch {
        // an audit line is never the reason a request fails
      }
      // A login has no caller; whoever logged in successfully is the actor.
      const actor = principal?.user ?? (a.events[0] === 'login' && outcome === 'success' ? target : undefined)
      for (const event of a.events) audit(d.logger, { event, actor, target, client, requestId, outcome, reason: outcome === 'failure' ? reason : undefined, extra })
    }
    const fail = (e: unknown): void => {
      const err = asGatehouseError(e)
      reason = err.code
      if (err.code === 'ERR_INTERNAL') d.logger.error({ requestId, detail: err.detail }, 'admin API error')
      auditOnce('failure')
      send(res, err.status, errorBody(err, requestId), req.method === 'HEAD', { ...err.headers, ...(err.status === 401 ? { 'www-authenticate': 'Bearer realm="gatehouse"' } : {}), 'x-request-id': requestId })
      // A body we stopped reading (too slow, too large) would hold the connection: close it.
      if (err.code === 'ERR_REQUEST_TIMEOUT' || err.code === 'ERR_REQUEST_TOO_LARGE') res.once('finish', () => req.socket.destroySoon())
    }
    void (async () => {
      if (isConsolePath(path)) {
        // Pages and form posts, not the JSON API: the console answers every request itself.
        const out = await consoleHandler()(req, res, meta)
        principal = out.principal
        reason = out.reason
        return
      }
      const method = req.method === 'HEAD' ? 'GET' : (req.method as string)
      let pathMatched = false
      for (const r of ROUTES) {
        const m = r.path.exec(path)
        if (m === null) continue
        pathMatched = true
        if (r.method !== method) continue
        if (r.local && d.issuer === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'local users are not enabled (set authentication.local.enabled or GATEHOUSE_LOCAL_ENABLED)' })
        const params = m.slice(1).map((x) => decodeURIComponent(x))
        let bodyRead: Promise<Record<string, unknown>> | undefined
        const c: Ctx = {
          req, res, requestId, params, principal: undefined, meta, parsed: undefined,
          body: () => (bodyRead ??= readJson(req, rt?.config.admin.bodyTimeout ?? DEFAULT_BODY_TIMEOUT_MS).then((b) => (c.parsed = b))),
        }
        ctx = c
        routeAudit = r.audit
        assertJsonBody(req)
        if (r.access !== 'public') {
          principal = await verifyCaller(req, d)
          c.principal = principal
          checkAccess(principal, r.access)
        }
        const out = await r.run(c, d)
        auditOnce('success')
        if (out.text !== undefined) sendText(res, out.status ?? 200, out.text, req.method === 'HEAD', { ...out.headers, 'x-request-id': requestId })
        else send(res, out.status ?? 200, out.raw ?? { data: out.data }, req.method === 'HEAD', { ...out.headers, 'x-request-id': requestId })
        return
      }
      throw new GatehouseError(pathMatched ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_NOT_FOUND')
    })().catch(fail)
  }
}

/**
 * 415 for a body that is not JSON, on every method. A browser sends a cross-site form (or a
 * "simple" fetch) without a CORS preflight only as text/plain, urlencoded or multipart, so
 * requiring application/json keeps every state change out of a foreign page's reach. A
 * request without a body (Content-Length 0 or none, no Transfer-Encoding) needs no type.
 */
function assertJsonBody(req: IncomingMessage): void {
  const len = req.headers['content-length']
  const hasBody = req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0')
  if (!hasBody) return
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') throw new GatehouseError('ERR_UNSUPPORTED_MEDIA_TYPE', { detail: `content-type ${JSON.stringify((req.headers['content-type'] ?? '(none)').slice(0, 64))}` })
}

async function verifyCaller(req: IncomingMessage, d: AdminDeps): Promise<Principal> {
  const issuer = d.issuer as LocalIssuer
  const m = /^bearer +(\S+)$/i.exec(req.headers.authorization ?? '')
  if (m === null) throw new GatehouseError('ERR_UNAUTHENTICATED', { message: 'log in first: POST /api/v2/login (gatehouse user login), then send Authorization: Bearer <access_token>' })
  const token = m[1] as string
  const shape = jwtShape(token)
  if (shape === undefined || shape.payload.iss !== issuer.iss) throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: the admin API accepts only local users’ tokens' })
  return issuer.verify(token, shape)
}

function checkAccess(p: Principal, access: Access): void {
  if (p.mustChangePassword === true && access !== 'password') throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
  const role = p.groups[0]
  if (access === 'admin' && role !== 'admin') throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: this needs the admin role' })
  if (access === 'reader' && role !== 'admin' && role !== 'readonly') throw new GatehouseError('ERR_FORBIDDEN', { message: 'forbidden: this needs the admin or readonly role' })
}

/**
 * Read the whole JSON body within `timeoutMs` from now. The deadline covers the whole body, not
 * each pause: admin bodies are a few hundred bytes, so a 1-byte-every-2-s drip (which a
 * per-pause timeout never ends) is cut as soon as the deadline passes.
 */
function readJson(req: IncomingMessage, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let n = 0
    let settled = false
    const finish = (err: unknown, v?: Record<string, unknown>): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.off('data', onData).off('end', onEnd).off('error', onError)
      if (err !== undefined) {
        req.pause() // stop buffering what nobody will read; the connection closes after the answer
        reject(err)
      } else resolve(v as Record<string, unknown>)
    }
    const timer = setTimeout(() => {
      finish(new GatehouseError('ERR_REQUEST_TIMEOUT', { message: `the request body did not arrive within ${Math.round(timeoutMs / 1000)} s (admin.bodyTimeout); send the JSON body at once`, detail: `admin body: ${n} bytes in ${timeoutMs} ms`, headers: { connection: 'close' } }))
    }, timeoutMs)
    const onData = (c: Buffer): void => {
      n += c.length
      if (n > MAX_BODY) finish(new GatehouseError('ERR_REQUEST_TOO_LARGE', { message: `the request body exceeds ${MAX_BODY} bytes; admin API bodies are small JSON documents`, headers: { connection: 'close' } }))
      else chunks.push(c)
    }
    const onEnd = (): void => {
      try {
        finish(undefined, parseJsonObject(Buffer.concat(chunks)))
      } catch (e) {
        finish(e)
      }
    }
    const onError = (e: Error): void => finish(e)
    req.on('data', onData).on('end', onEnd).on('error', onError)
  })
}

function parseJsonObject(buf: Buffer): Record<string, unknown> {
  if (buf.length === 0) return {}
  let v: unknown
  try {
    v = JSON.parse(buf.toString('utf8'))
  } catch {
    throw new GatehouseError('ERR_BAD_REQUEST', { message: 'the body is not valid JSON; send a JSON object such as {"username": "…", "password": "…"}' })
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'the body must be a JSON object ({…}), not an array, string or number' })
  return v as Record<string, unknown>
}

/**
 * `/metrics` with `metrics.bearerToken`: 401 without the token or with another one. Both sides
 * are hashed first, so the comparison is constant-time whatever the lengths.
 */
function checkScrapeToken(req: IncomingMessage, token: string | undefined): void {
  if (token === undefined) return
  const m = /^bearer +(\S+)$/i.exec(req.headers.authorization ?? '')
  if (m === null) throw new GatehouseError('ERR_UNAUTHENTICATED', { message: 'the metrics need a token: send Authorization: Bearer <metrics.bearerToken>' })
  if (!timingSafeEqual(createHash('sha256').update(m[1] as string).digest(), createHash('sha256').update(token).digest())) throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: not the metrics token' })
}

function sendText(res: ServerResponse, status: number, text: string, head: boolean, headers: Record<string, string>): void {
  res.writeHead(status, { 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(head ? undefined : text)
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
