/**
 * gatehouse's own routes on the data listener when browser sign-in is on (`/oauth2/…`, as
 * oauth2-proxy): start, callback, the sign-in page and its form, sign-out, signed-out, the
 * stylesheet. They are answered here and never forwarded. Every answer is `no-store`; every
 * problem is an HTML page with words of our own and a "Try again" link — never a stack, never
 * the provider's or the client's raw text. Codes, tokens, session ids, state and verifiers are
 * never logged.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { audit, type Logger } from '../log.ts'
import type { LocalIssuer } from '../issuer/localIssuer.ts'
import { checkCsrf } from '../session/csrf.ts'
import { clearHostCookie, readCookie, serializeHostCookie } from '../session/cookie.ts'
import { hashSessionId, isSessionId } from '../session/id.ts'
import type { SessionManager } from '../session/manager.ts'
import { safeReturnPath } from '../session/returnPath.ts'
import { openTokens } from '../session/tokens.ts'
import type { StateStore } from '../store/store.ts'
import { FLOW_COOKIE, FLOW_LIFETIME_MS, newNonce, openFlow, pkcePair, sealFlow } from './flow.ts'
import type { BrowserLogin } from './login.ts'
import { PAGE_HEADERS, problemPage, signedOutPage, signInPage, STYLESHEET, STYLESHEET_PATH } from './pages.ts'
import { ProviderError } from './provider.ts'

/** The path prefix gatehouse keeps for itself when browser sign-in is on. */
export const ROUTE_PREFIX = '/oauth2/'

/** Whether a (normalized) path is one of gatehouse's browser routes. */
export function isBrowserRoute(path: string): boolean {
  return path.startsWith(ROUTE_PREFIX)
}

/** One request to a browser route. */
export interface RouteRequest {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly path: string
  /** The raw query (without `?`). */
  readonly query: string
  readonly requestId: string
  /** The client address as the throttles key it. */
  readonly client: string
}

/** What the routes use besides the compiled login. */
export interface RouteDeps {
  readonly login: BrowserLogin
  readonly sessions: SessionManager
  readonly store: Pick<StateStore, 'getSession'>
  readonly issuer: LocalIssuer | undefined
  readonly logger: Logger
  readonly now?: () => number
}

const MAX_FORM_BYTES = 8 * 1024
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/** Where an unauthenticated page load is sent: the sign-in page when local users are offered, else the start of the OIDC flow. */
export function signInLocation(login: BrowserLogin, target: string): string {
  const s = login.settings
  const to = s.localUsers ? '/oauth2/sign_in' : '/oauth2/start'
  return `${to}?rd=${encodeURIComponent(target)}`
}

/** Answer a browser route. Never throws: every problem becomes a page. */
export async function handleBrowserRoute(r: RouteRequest, d: RouteDeps): Promise<void> {
  try {
    await route(r, d)
  } catch (e) {
    const detail = e instanceof GatehouseError ? `${e.code}${e.detail === undefined ? '' : `: ${e.detail}`}` : e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    d.logger.error({ requestId: r.requestId, path: r.path, error: detail }, 'browser sign-in route failed')
    if (!r.res.headersSent) sendPage(r, 500, problemPage('Something went wrong', 'gatehouse could not complete this step. Please try again.', startFor(d.login, '/')))
    else r.res.destroy()
  }
}

async function route(r: RouteRequest, d: RouteDeps): Promise<void> {
  const method = r.req.method ?? 'GET'
  const q = new URLSearchParams(r.query)
  switch (r.path) {
    case STYLESHEET_PATH:
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(r, 'GET, HEAD')
      r.res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'public, max-age=3600', 'x-content-type-options': 'nosniff', 'content-length': Buffer.byteLength(STYLESHEET) })
      r.res.end(method === 'HEAD' ? undefined : STYLESHEET)
      return
    case '/oauth2/start':
      if (method !== 'GET') return methodNotAllowed(r, 'GET')
      return start(r, d, returnPath(q.get('rd')))
    case '/oauth2/callback':
      if (method !== 'GET') return methodNotAllowed(r, 'GET')
      return callback(r, d, q)
    case '/oauth2/sign_in':
      if (method === 'GET') return showSignIn(r, d, returnPath(q.get('rd')), undefined, undefined, 200)
      if (method === 'POST') return postSignIn(r, d)
      return methodNotAllowed(r, 'GET, POST')
    case '/oauth2/sign_out':
      if (method !== 'GET' && method !== 'POST') return methodNotAllowed(r, 'GET, POST')
      return signOut(r, d, q)
    case '/oauth2/signed_out':
      if (method !== 'GET') return methodNotAllowed(r, 'GET')
      return sendPage(r, 200, signedOutPage(startFor(d.login, '/')))
    default:
      return sendPage(r, 404, problemPage('Page not found', 'There is no such sign-in page.', startFor(d.login, '/')))
  }
}

/**
 * Where a sign-in returns: `safeReturnPath` (a path on this origin, every open-redirect shape
 * refused), and never one of these routes — a return to `/oauth2/sign_out` would end the new
 * session at once, one to `/oauth2/start` would start over.
 */
function returnPath(rd: string | null): string {
  const p = safeReturnPath(rd ?? undefined)
  return p.toLowerCase().startsWith(ROUTE_PREFIX) ? '/' : p
}

/** The start of a sign-in that returns to `rd`: the sign-in page when it offers local users, else the OIDC start. */
function startFor(login: BrowserLogin, rd: string): string {
  return signInLocation(login, rd)
}

function methodNotAllowed(r: RouteRequest, allow: string): void {
  sendPage(r, 405, problemPage('Not allowed', 'This address does not accept that kind of request.', '/'), { allow })
}

function sendPage(r: RouteRequest, status: number, body: string, extra: Record<string, string | string[]> = {}): void {
  r.res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(body), 'x-request-id': r.requestId, ...extra })
  r.res.end(r.req.method === 'HEAD' ? undefined : body)
}

function redirect(r: RouteRequest, status: 302 | 303, location: string, cookies: string[] = []): void {
  const headers: Record<string, string | string[] | number> = { location, 'cache-control': 'no-store', 'content-length': 0, 'x-request-id': r.requestId, 'referrer-policy': 'no-referrer' }
  if (cookies.length > 0) headers['set-cookie'] = cookies
  r.res.writeHead(status, headers)
  r.res.end()
}

/** A `Set-Cookie` for the session: `__Host-` names by the helper; another configured name with the same attributes. */
function sessionCookie(d: RouteDeps, value: string | undefined): string {
  const s = d.login.settings
  const maxAge = value === undefined ? 0 : Math.floor(s.lifetimeMs / 1000)
  if (s.cookieName.startsWith('__Host-')) return value === undefined ? clearHostCookie(s.cookieName, 'Lax') : serializeHostCookie(s.cookieName, value, { sameSite: 'Lax', maxAgeSeconds: maxAge })
  // The configuration check warned about the missing prefix; the attributes stay the same.
  return `${s.cookieName}=${value ?? ''}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAge}`
}

function flowCookie(value: string): string {
  return serializeHostCookie(FLOW_COOKIE, value, { sameSite: 'Lax', maxAgeSeconds: FLOW_LIFETIME_MS / 1000 })
}
const CLEAR_FLOW = (): string => clearHostCookie(FLOW_COOKIE, 'Lax')

/**
 * This listener's origin as the browser sees it: from `redirectUrl` when configured, else the
 * listener's scheme and the request's Host (`:authority` in HTTP/2). Undefined for a Host that
 * is not a plain host[:port].
 */
function originOf(r: RouteRequest, d: RouteDeps): string | undefined {
  const s = d.login.settings
  if (s.redirectUrl !== undefined) return new URL(s.redirectUrl).origin
  const host = r.req.headers.host ?? (r.req.headers[':authority'] as string | undefined)
  if (host === undefined || !HOST_RE.test(host)) return undefined
  try {
    return new URL(`${s.proto}://${host}`).origin
  } catch {
    return undefined
  }
}

/**
 * `/oauth2/start?rd=PATH`: authorization code flow with PKCE (S256), state and nonce. A forged
 * Host only changes the redirect_uri we ask for, which the provider compares with the URIs
 * registered for the client (OAuth 2.0 Security BCP, RFC 9700 §4.1): a foreign one is refused
 * there, so the code never travels to another host.
 */
async function start(r: RouteRequest, d: RouteDeps, rd: string): Promise<void> {
  const o = d.login.settings.oidc
  if (o === undefined) return redirect(r, 302, `/oauth2/sign_in?rd=${encodeURIComponent(rd)}`)
  const origin = originOf(r, d)
  if (origin === undefined) return sendPage(r, 400, problemPage('Cannot sign in here', 'This address cannot be used for signing in. Use the service’s usual address.', '/'))
  const redirectUri = d.login.settings.redirectUrl ?? `${origin}/oauth2/callback`
  const pkce = pkcePair()
  const nonce = newNonce()
  const flow = sealFlow({ kind: 'oidc', rd, verifier: pkce.verifier, nonce, redirectUri, exp: now(d) + FLOW_LIFETIME_MS })
  let url: string
  try {
    url = await o.provider.authorizationUrl({ redirectUri, scopes: o.scopes, state: flow.state, nonce, challenge: pkce.challenge })
  } catch (e) {
    d.logger.warn({ requestId: r.requestId, issuer: o.issuer, error: e instanceof ProviderError ? e.message : String(e) }, 'browser sign-in: the identity provider cannot be reached')
    return sendPage(r, 503, problemPage('Sign-in unavailable', 'The identity provider cannot be reached right now. Please try again in a moment.', `/oauth2/start?rd=${encodeURIComponent(rd)}`), { 'retry-after': '5' })
  }
  redirect(r, 302, url, [flowCookie(flow.cookie)])
}

// The provider's `error` codes we explain (OAuth 2.0 §4.1.2.1, OIDC Core §3.1.2.6); any other
// code gets the general sentence. The provider's error_description is never shown.
const PROVIDER_ERRORS: Readonly<Record<string, string>> = {
  access_denied: 'The sign-in was cancelled or denied at the identity provider.',
  login_required: 'The identity provider needs you to sign in.',
  consent_required: 'The identity provider needs your consent first.',
  interaction_required: 'The identity provider needs you to finish signing in there.',
  temporarily_unavailable: 'The identity provider is busy right now.',
  server_error: 'The identity provider had a problem.',
}

function failSignIn(r: RouteRequest, d: RouteDeps, status: number, reason: string, message: string, rd: string, actor?: string): void {
  audit(d.logger, { event: 'browser.sign_in', actor: undefined, target: actor, client: r.client, requestId: r.requestId, outcome: 'failure', reason, extra: { method: 'oidc' } })
  sendPage(r, status, problemPage('Sign-in failed', message, startFor(d.login, rd)), { 'set-cookie': CLEAR_FLOW() })
}

/** `/oauth2/callback`: check state, exchange the code, verify the ID token and its nonce, start the session. */
async function callback(r: RouteRequest, d: RouteDeps, q: URLSearchParams): Promise<void> {
  const o = d.login.settings.oidc
  if (o === undefined) return sendPage(r, 404, problemPage('Page not found', 'Sign-in with an identity provider is not enabled here.', '/'))
  const cookie = readCookie(r.req.headers.cookie, FLOW_COOKIE)
  const state = q.get('state') ?? undefined
  const opened = openFlow(cookie.ok ? cookie.value : undefined, state, 'state', now(d))
  // The return path is trusted only from a flow this browser started.
  // The flow cookie is the browser's to write (its key is derived from its own content), so its
  // return path is checked again like any other input before it is used.
  const rd = opened.ok ? returnPath(opened.flow.rd) : '/'
  const error = q.get('error')
  if (error !== null) {
    const known = Object.hasOwn(PROVIDER_ERRORS, error) ? error : 'other'
    return failSignIn(r, d, 400, `provider:${known}`, PROVIDER_ERRORS[known] ?? 'The identity provider did not sign you in.', rd)
  }
  if (!opened.ok || opened.flow.kind !== 'oidc') {
    const why = opened.ok ? 'wrong-flow' : opened.reason
    return failSignIn(r, d, 400, `state:${why}`, why === 'expired' ? 'The sign-in took too long. Please start again.' : 'This sign-in did not start in this browser, or it was already used. Please start again.', '/')
  }
  const flow = opened.flow
  // RFC 9207: a provider that names itself in the answer must be ours (mix-up defence).
  const iss = q.get('iss')
  if (iss !== null && iss !== o.issuer) return failSignIn(r, d, 400, 'iss-mismatch', 'The answer came from another identity provider. Please start again.', rd)
  const code = q.get('code')
  if (code === null || code === '' || code.length > 2048) return failSignIn(r, d, 400, 'no-code', 'The identity provider sent no authorization code.', rd)
  let tokens
  try {
    tokens = await o.provider.exchangeCode(code, flow.verifier as string, flow.redirectUri as string)
  } catch (e) {
    const pe = e instanceof ProviderError ? e : undefined
    d.logger.warn({ requestId: r.requestId, issuer: o.issuer, error: pe?.message ?? String(e) }, 'browser sign-in: the code exchange failed')
    return failSignIn(r, d, 502, `exchange:${pe?.oauthError ?? pe?.reason ?? 'error'}`, 'The identity provider did not accept this sign-in (it may have been used already). Please start again.', rd)
  }
  if (tokens.idToken === undefined) return failSignIn(r, d, 502, 'no-id-token', 'The identity provider sent no ID token (is the openid scope allowed for this client?).', rd)
  let id
  try {
    id = await d.login.verifyIdToken(tokens.idToken, flow.nonce)
  } catch (e) {
    const ge = e instanceof GatehouseError ? e : undefined
    d.logger.warn({ requestId: r.requestId, issuer: o.issuer, error: ge === undefined ? String(e) : `${ge.code}: ${ge.detail ?? ''}` }, 'browser sign-in: the ID token was refused')
    return failSignIn(r, d, 401, `id_token:${ge?.code ?? 'invalid'}`, ge?.code === 'ERR_MISSING_CLAIM' ? 'Your account at the identity provider lacks the user name this service needs.' : 'The identity provider’s answer could not be verified.', rd)
  }
  // Session fixation (oauth2-proxy GHSA-f24x-5g9q-753f): a session cookie the browser already
  // had is ended, and the new session gets a new id.
  await endOld(r, d)
  const p = id.principal
  const created = await d.sessions.create({
    kind: 'browser',
    username: p.user,
    method: 'oidc',
    groups: p.groups,
    ...(p.email === undefined ? {} : { email: p.email }),
    oidc: { issuer: o.issuer, tokens: d.login.tokensOf(tokens, id) },
  })
  audit(d.logger, { event: 'browser.sign_in', actor: p.user, target: p.user, client: r.client, requestId: r.requestId, outcome: 'success', extra: { method: 'oidc' } })
  redirect(r, 302, rd, [sessionCookie(d, created.id), CLEAR_FLOW()])
}

async function endOld(r: RouteRequest, d: RouteDeps): Promise<void> {
  const old = readCookie(r.req.headers.cookie, d.login.settings.cookieName)
  if (old.ok) await d.sessions.end(old.value)
}

/** The sign-in page (local users, and the identity provider's button when OIDC is on). */
async function showSignIn(r: RouteRequest, d: RouteDeps, rd: string, error: string | undefined, username: string | undefined, status: number, extra: Record<string, string> = {}): Promise<void> {
  const s = d.login.settings
  const local = s.localUsers && d.issuer !== undefined
  if (!local) return redirect(r, 302, `/oauth2/start?rd=${encodeURIComponent(rd)}`)
  const flow = sealFlow({ kind: 'form', rd, exp: now(d) + FLOW_LIFETIME_MS })
  const banner = await (d.issuer as LocalIssuer).banner()
  const body = signInPage({
    oidcStart: s.oidc === undefined ? undefined : `/oauth2/start?rd=${encodeURIComponent(rd)}`,
    issuerLabel: s.oidc === undefined ? undefined : issuerLabel(s.oidc.issuer),
    form: { csrf: flow.csrf, rd, ...(username === undefined ? {} : { username }) },
    banner: banner.enabled && banner.text !== '' ? banner.text : undefined,
    error,
  })
  sendPage(r, status, body, { ...extra, 'set-cookie': [flowCookie(flow.cookie)] })
}

/** "Sign in with login.example.com": the issuer's host (its path is noise to a person). */
function issuerLabel(issuer: string): string {
  try {
    return new URL(issuer).host
  } catch {
    return 'your identity provider'
  }
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') return undefined
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length
    if (n > MAX_FORM_BYTES) return undefined
    chunks.push(c)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

/**
 * The local sign-in form: same origin (Origin / Sec-Fetch-Site), the flow cookie's CSRF token,
 * then the local issuer's own login checks (address throttle, lockout, password), so the
 * answers are those of `POST /api/v2/login`.
 */
async function postSignIn(r: RouteRequest, d: RouteDeps): Promise<void> {
  const s = d.login.settings
  if (!s.localUsers || d.issuer === undefined) return sendPage(r, 404, problemPage('Page not found', 'Local accounts cannot sign in here.', startFor(d.login, '/')))
  const form = await readForm(r.req)
  if (form === undefined) return sendPage(r, 400, problemPage('Sign-in failed', 'The sign-in form was not sent as expected. Please start again.', '/oauth2/sign_in?rd=%2F'))
  const rd = returnPath(form.get('rd'))
  const csrf = form.get('csrf') ?? undefined
  const cookie = readCookie(r.req.headers.cookie, FLOW_COOKIE)
  const opened = openFlow(cookie.ok ? cookie.value : undefined, csrf, 'csrf', now(d))
  const origin = originOf(r, d)
  // The token was just checked against the flow cookie; checkCsrf adds the origin rule.
  const site = origin === undefined ? { ok: false as const } : checkCsrf({ method: 'POST', secFetchSite: header(r.req, 'sec-fetch-site'), origin: header(r.req, 'origin'), expectedOrigin: origin, submittedToken: csrf, sessionToken: csrf ?? '' })
  if (!opened.ok || opened.flow.kind !== 'form' || !site.ok) {
    audit(d.logger, { event: 'browser.sign_in', actor: undefined, target: undefined, client: r.client, requestId: r.requestId, outcome: 'failure', reason: !site.ok ? 'csrf:origin' : `csrf:${opened.ok ? 'wrong-flow' : opened.reason}`, extra: { method: 'local' } })
    return showSignIn(r, d, rd, 'The sign-in form expired or did not come from this page. Please sign in again.', undefined, 403)
  }
  const username = form.get('username') ?? ''
  let u
  try {
    u = await d.issuer.checkLogin(username, form.get('password') ?? '', { client: r.client, requestId: r.requestId })
  } catch (e) {
    const code = e instanceof GatehouseError ? e.code : 'ERR_INTERNAL'
    if (code === 'ERR_INTERNAL' || code === 'ERR_STORE_UNAVAILABLE') throw e
    audit(d.logger, { event: 'browser.sign_in', actor: undefined, target: username, client: r.client, requestId: r.requestId, outcome: 'failure', reason: code, extra: { method: 'local' } })
    const status = (e as GatehouseError).status
    const message =
      code === 'ERR_ACCOUNT_LOCKED' ? 'This account is locked after too many failed sign-ins. Try again later.'
      : code === 'ERR_TOO_MANY_FAILURES' ? 'Too many failed sign-ins from this address. Try again later.'
      : code === 'ERR_BAD_REQUEST' ? 'Enter a username and a password.'
      : 'Invalid username or password'
    const retry = (e as GatehouseError).headers?.['retry-after']
    return showSignIn(r, d, rd, message, username.length <= 128 ? username : undefined, status, retry === undefined ? {} : { 'retry-after': String(retry) })
  }
  if (u.mustChangePassword) {
    audit(d.logger, { event: 'browser.sign_in', actor: undefined, target: u.username, client: r.client, requestId: r.requestId, outcome: 'failure', reason: 'ERR_PASSWORD_CHANGE_REQUIRED', extra: { method: 'local' } })
    return sendPage(r, 403, problemPage('Change your password first', 'Your password must be changed before you can sign in here. Change it in the web console or with “gatehouse user passwd”, then sign in again.', `/oauth2/sign_in?rd=${encodeURIComponent(rd)}`), { 'set-cookie': CLEAR_FLOW() })
  }
  await endOld(r, d)
  const created = await d.sessions.create({ kind: 'browser', username: u.username, method: 'local', groups: [u.role], generation: u.generation })
  audit(d.logger, { event: 'browser.sign_in', actor: u.username, target: u.username, client: r.client, requestId: r.requestId, outcome: 'success', extra: { method: 'local' } })
  redirect(r, 303, rd, [sessionCookie(d, created.id), CLEAR_FLOW()])
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * `/oauth2/sign_out`: end the session and clear its cookie; then RP-initiated logout at the
 * provider when it advertises `end_session_endpoint` (with `id_token_hint`, `client_id` and
 * `post_logout_redirect_uri` = this origin's `/oauth2/signed_out`), else the safe `rd` or the
 * signed-out page.
 */
async function signOut(r: RouteRequest, d: RouteDeps, q: URLSearchParams): Promise<void> {
  const s = d.login.settings
  const c = readCookie(r.req.headers.cookie, s.cookieName)
  let idToken: string | undefined
  let user: string | undefined
  let method: string | undefined
  if (c.ok && isSessionId(c.value)) {
    const rec = await d.store.getSession(hashSessionId(c.value))
    if (rec !== undefined && rec.kind === 'browser') {
      user = rec.username
      method = rec.method
      if (rec.oidc !== undefined) idToken = openTokens(c.value, rec.oidc.sealed)?.idToken
      await d.sessions.end(c.value)
    }
  }
  audit(d.logger, { event: 'browser.sign_out', actor: user, target: user, client: r.client, requestId: r.requestId, outcome: 'success', extra: { method: method ?? 'none' } })
  const cookies = [sessionCookie(d, undefined), CLEAR_FLOW()]
  const rdParam = q.get('rd')
  const rd = rdParam === null ? undefined : safeReturnPath(rdParam)
  if (s.oidc !== undefined && method === 'oidc') {
    const origin = originOf(r, d)
    const url = await s.oidc.provider.endSessionUrl({ idTokenHint: idToken, postLogoutRedirectUri: origin === undefined ? undefined : `${origin}/oauth2/signed_out` })
    if (url !== undefined) return redirect(r, 302, url, cookies)
  }
  redirect(r, 302, rd ?? '/oauth2/signed_out', cookies)
}

function now(d: RouteDeps): number {
  return (d.now ?? Date.now)()
}
