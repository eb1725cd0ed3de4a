/**
 * The web console under `/ui/` on the admin listener (SPEC §10, docs/console.md): server-rendered
 * pages over the same local issuer, store, certificate manager and CA trust as the admin API, so
 * lockout, password rules, revocation and the audit trail behave exactly as they do there.
 *
 * - Sessions: `SessionManager` on the state store (`console.idleTimeout`,
 *   `console.absoluteLifetime`), its id in `__Host-gatehouse-console` (`Secure; HttpOnly;
 *   SameSite=Strict; Path=/`). The principal is rebuilt from the user record on every request,
 *   so a role change or a forced password change applies at once.
 * - Every POST passes `checkCsrf`: from this origin (Sec-Fetch-Site / Origin, checked before
 *   anything else, even before the session) and carrying the session's token. The sign-in form,
 *   which has no session yet, double-submits a token from a pre-sign-in `__Host-` cookie, so a
 *   foreign page cannot sign a visitor in to an account of its choosing (login CSRF).
 * - Every page carries PAGE_HEADERS (CSP without inline script or style, no framing, nosniff,
 *   Referrer-Policy same-origin, no-store). Flash messages are fixed texts chosen by a key in the
 *   query, never text from the request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { formatDuration, parseDuration } from '../config/units.ts'
import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import { PAGE_HEADERS, type SafeHtml } from '../http/html.ts'
import type { Principal } from '../http/principal.ts'
import { asGatehouseError } from '../http/respond.ts'
import type { LocalIssuer, RequestMeta } from '../issuer/localIssuer.ts'
import { audit, type AuditEvent, type Logger } from '../log.ts'
import { clearHostCookie, readCookie, serializeHostCookie } from '../session/cookie.ts'
import { checkCsrf, type CsrfRefusal } from '../session/csrf.ts'
import { newCsrfToken } from '../session/id.ts'
import { SessionManager } from '../session/manager.ts'
import type { IssuerStore, UserRecord } from '../store/store.ts'
import type { CertManager } from '../tls/certs.ts'
import type { OutboundTrust } from '../upstream/trust.ts'
import { ASSETS } from './assets.ts'
import { readForm, type Form } from './form.ts'
import { bare, errorBody, mayView, page, type NavKey, type Notice, type Role, type Viewer } from './layout.ts'
import { accountPage, forcedPasswordPage, loginPage, securityPage, statusPage, usersPage, type SecurityView, type UserFormValues } from './pages.ts'
import { statusView, version, type ServerFacts } from './status.ts'

/** The console's session cookie. */
export const SESSION_COOKIE = '__Host-gatehouse-console'
/** The sign-in form's token before there is a session (double-submit). */
export const LOGIN_COOKIE = '__Host-gatehouse-console-login'

/** What the console needs from the running server. */
export interface ConsoleDeps {
  readonly issuer: LocalIssuer
  readonly store: IssuerStore
  readonly logger: Logger
  readonly certs: CertManager | undefined
  readonly trust: OutboundTrust
  /** The running configuration, read per request (a reload may change it). */
  readonly config: () => Config
  /** Readiness and listener facts for the status page. */
  readonly facts: () => Pick<ServerFacts, 'listeners' | 'state' | 'draining' | 'issuers' | 'urls'>
  /** The clock (tests may fake it). */
  readonly now?: () => number
}

/** What the admin listener's access log records of a console request. */
export interface ConsoleOutcome {
  readonly principal?: Principal
  readonly reason?: string
}

/** Handles one request whose path is `/ui` or below. */
export type ConsoleHandler = (req: IncomingMessage, res: ServerResponse, meta: RequestMeta) => Promise<ConsoleOutcome>

const DEFAULT_BODY_TIMEOUT_MS = 10_000

/** Fixed texts for the `m` query flag after a redirect (never reflected request text). */
const FLASH: Readonly<Record<string, Notice>> = {
  'user-added': { kind: 'ok', text: 'The user was added.' },
  'user-deleted': { kind: 'ok', text: 'The user was deleted; their tokens and sessions ended.' },
  'tokens-revoked': { kind: 'ok', text: 'Every token of the user was revoked and their console sessions ended.' },
  unlocked: { kind: 'ok', text: 'The account was unlocked.' },
  'role-changed': { kind: 'ok', text: 'The role was changed; the user’s tokens and sessions ended.' },
  'password-set': { kind: 'ok', text: 'The password was set; the user’s tokens and sessions ended.' },
  password: { kind: 'ok', text: 'Your password was changed. Your earlier tokens and other sessions have ended.' },
  lockout: { kind: 'ok', text: 'The lockout policy was saved.' },
  'lockout-reset': { kind: 'ok', text: 'The lockout policy is back to the configured values and every account is unlocked.' },
  banner: { kind: 'ok', text: 'The login banner was saved.' },
  tls: { kind: 'ok', text: 'The certificate was installed; new connections use it.' },
  'tls-unset': { kind: 'ok', text: 'Back to the configured certificate; new connections use it.' },
  ca: { kind: 'ok', text: 'The CA certificate was set.' },
  'ca-unset': { kind: 'ok', text: 'The CA certificate was removed.' },
}

/** Notices of the sign-in page, by `m` flag. */
const LOGIN_FLASH: Readonly<Record<string, Notice>> = {
  expired: { kind: 'info', text: 'Your session expired, sign in again.' },
  ended: { kind: 'info', text: 'Your session has ended, sign in again.' },
  signedout: { kind: 'ok', text: 'You are signed out.' },
  revoked: { kind: 'info', text: 'Your tokens were revoked and your sessions ended. Sign in again.' },
}

/** A notice by its `m` key: own keys only (`?m=__proto__` or `constructor` is no notice). */
function noticeOf(table: Readonly<Record<string, Notice>>, key: string | null): Notice | undefined {
  return key !== null && Object.hasOwn(table, key) ? table[key] : undefined
}

type Section = 'users' | 'account' | 'security' | 'forced'

interface Signed {
  readonly viewer: Viewer
  readonly principal: Principal
  readonly user: UserRecord
  readonly cookie: string
}

interface Ctx {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly meta: RequestMeta
  readonly path: string
  readonly query: URLSearchParams
  readonly head: boolean
  readonly origin: string
}

/** Build the console. */
export function createConsole(d: ConsoleDeps): ConsoleHandler {
  const now = d.now ?? Date.now
  let sm: { idle: number; life: number; m: SessionManager } | undefined
  const sessions = (): SessionManager => {
    const c = d.config().console
    if (sm === undefined || sm.idle !== c.idleTimeout || sm.life !== c.absoluteLifetime) {
      sm = { idle: c.idleTimeout, life: c.absoluteLifetime, m: new SessionManager(d.store, { idleTimeoutMs: c.idleTimeout, absoluteLifetimeMs: Math.max(c.absoluteLifetime, c.idleTimeout), now }) }
    }
    return sm.m
  }
  const sessionCookie = (id: string): string => serializeHostCookie(SESSION_COOKIE, id, { sameSite: 'Strict', maxAgeSeconds: Math.floor(Math.max(d.config().console.absoluteLifetime, d.config().console.idleTimeout) / 1000) })
  const v = version()

  const auditLine = (c: Ctx, event: AuditEvent, actor: string | undefined, target: string | undefined, outcome: 'success' | 'failure', reason?: string, extra?: Record<string, string | number | boolean>): void => {
    audit(d.logger, { event, actor, target, client: c.meta.client, requestId: c.meta.requestId, outcome, reason, extra })
  }

  // --- responses ---------------------------------------------------------------------------

  const send = (c: Ctx, status: number, body: SafeHtml, headers: Record<string, string | string[]> = {}): void => {
    const text = body.toString()
    c.res.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(text), ...headers })
    c.res.end(c.head ? undefined : text)
  }
  const redirect = (c: Ctx, location: string, cookies: string[] = []): void => {
    const { 'content-type': _t, ...h } = PAGE_HEADERS
    c.res.writeHead(303, { ...h, location, 'content-length': 0, ...(cookies.length === 0 ? {} : { 'set-cookie': cookies }) })
    c.res.end()
  }
  const errorPage = (c: Ctx, status: number, heading: string, text: string, viewer: Viewer | undefined, headers: Record<string, string> = {}): void => {
    const link = viewer === undefined ? { href: '/ui/login', label: 'Go to the sign-in page' } : { href: '/ui/status', label: 'Back to the status page' }
    const body = errorBody(status, heading, text, link)
    send(c, status, viewer === undefined ? bare({ title: heading, body, version: v }) : page({ title: heading, viewer, body, version: v }), headers)
  }
  const forbidden = (c: Ctx, viewer: Viewer | undefined, text: string): ConsoleOutcome => {
    errorPage(c, 403, 'Not allowed', text, viewer)
    return { reason: 'ERR_FORBIDDEN' }
  }
  const csrfRefused = (c: Ctx, viewer: Viewer | undefined, why: CsrfRefusal): ConsoleOutcome => {
    d.logger.warn({ requestId: c.meta.requestId, client: c.meta.client, path: c.path, csrf: why }, 'console: refused a form post (CSRF check)')
    const text = why === 'cross-site' || why === 'no-origin'
      ? 'This form was not sent from this console’s own pages, so it was refused and nothing was changed.'
      : 'This form was refused and nothing was changed: its security token is missing or out of date. Reload the page and try again.'
    errorPage(c, 403, 'Request refused', text, viewer)
    return { reason: 'ERR_FORBIDDEN' }
  }

  // --- sign-in -----------------------------------------------------------------------------

  const loginToken = (c: Ctx): { token: string; cookie: string | undefined } => {
    const r = readCookie(c.req.headers.cookie, LOGIN_COOKIE)
    if (r.ok && /^[A-Za-z0-9_-]{43}$/.test(r.value)) return { token: r.value, cookie: undefined }
    const token = newCsrfToken()
    return { token, cookie: serializeHostCookie(LOGIN_COOKIE, token, { sameSite: 'Strict' }) }
  }
  const showLogin = async (c: Ctx, status: number, ns: readonly Notice[], username: string, headers: Record<string, string> = {}): Promise<void> => {
    const b = await d.issuer.banner()
    const t = loginToken(c)
    const plain = c.origin.startsWith('http:') && !/^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/.test(c.origin)
    const warn: Notice[] = plain ? [{ kind: 'warn', text: 'This listener serves plain HTTP: browsers keep the console’s Secure cookie only on localhost. Enable tls.enabled.' }] : []
    send(c, status, loginPage({ banner: b.enabled && b.text !== '' ? b.text : undefined, notices: [...warn, ...ns], username, csrf: t.token, version: v }), { ...headers, ...(t.cookie === undefined ? {} : { 'set-cookie': t.cookie }) })
  }

  const postLogin = async (c: Ctx): Promise<ConsoleOutcome> => {
    const form = await readForm(c.req, bodyTimeout())
    const lc = readCookie(c.req.headers.cookie, LOGIN_COOKIE)
    const check = checkCsrf({ method: 'POST', secFetchSite: header(c.req, 'sec-fetch-site'), origin: header(c.req, 'origin'), expectedOrigin: c.origin, submittedToken: form.get('_csrf'), sessionToken: lc.ok ? lc.value : '' })
    if (!check.ok) return csrfRefused(c, undefined, check.reason)
    const username = form.get('username') ?? ''
    try {
      const u = await d.issuer.checkLogin(username, form.get('password') ?? '', c.meta)
      auditLine(c, 'login', u.username, u.username, 'success', undefined, { via: 'console' })
      const s = await sessions().create({ kind: 'console', username: u.username, method: 'local', groups: [u.role], generation: u.generation })
      redirect(c, u.mustChangePassword ? '/ui/change-password' : '/ui/status', [sessionCookie(s.id), clearHostCookie(LOGIN_COOKIE, 'Strict')])
      return { principal: principalOf(u) }
    } catch (e) {
      const err = asGatehouseError(e)
      auditLine(c, 'login', undefined, username === '' ? undefined : username, 'failure', err.code, { via: 'console' })
      if (err.code === 'ERR_INTERNAL') throw e
      let text = err.message
      let headers: Record<string, string> = {}
      if (err.code === 'ERR_ACCOUNT_LOCKED') {
        const secs = Number(err.headers?.['retry-after'] ?? '60')
        text = `This account is locked after too many failed sign-in attempts. Try again in ${waitText(secs)}.`
        headers = { 'retry-after': String(secs) }
      } else if (err.code === 'ERR_LOGIN_FAILED') {
        // The attempt that reached the limit locked the account: say so now, not on the next try.
        // Unknown names lock alike, so this reveals nothing about which names exist.
        const lock = await d.store.lockState(username, now())
        if (lock.lockedUntil > now()) text = `Invalid username or password. This account is now locked for ${waitText(Math.ceil((lock.lockedUntil - now()) / 1000))}.`
      } else if (err.code === 'ERR_BAD_REQUEST') text = 'Enter your username and your password.'
      await showLogin(c, err.status, [{ kind: 'bad', text }], username.slice(0, 256), headers)
      return { reason: err.code }
    }
  }

  // --- the session of a request ----------------------------------------------------------------

  /** The signed-in user, or the redirect to the sign-in page that was sent instead. */
  const signedIn = async (c: Ctx): Promise<Signed | ConsoleOutcome> => {
    const r = readCookie(c.req.headers.cookie, SESSION_COOKIE)
    if (!r.ok) {
      if (r.reason === 'absent') redirect(c, '/ui/login')
      else redirect(c, '/ui/login?m=ended', [clearHostCookie(SESSION_COOKIE, 'Strict')])
      return { reason: 'ERR_UNAUTHENTICATED' }
    }
    const m = sessions()
    const check = await m.authenticate(r.value)
    if (!check.ok) {
      redirect(c, `/ui/login?m=${check.reason === 'idle-expired' || check.reason === 'expired' ? 'expired' : 'ended'}`, [clearHostCookie(SESSION_COOKIE, 'Strict')])
      return { reason: 'ERR_UNAUTHENTICATED' }
    }
    const user = await d.store.getUser(check.session.username)
    if (user === undefined || check.session.kind !== 'console' || check.session.method !== 'local') {
      await m.end(r.value)
      redirect(c, '/ui/login?m=ended', [clearHostCookie(SESSION_COOKIE, 'Strict')])
      return { reason: 'ERR_UNAUTHENTICATED' }
    }
    // From the user record, not the session: a role change or a password change applies at once.
    const viewer: Viewer = { username: user.username, role: user.role, csrf: check.session.csrfToken, mustChangePassword: user.mustChangePassword }
    return { viewer, principal: principalOf(user), user, cookie: r.value }
  }

  // --- pages ---------------------------------------------------------------------------------

  const flash = (c: Ctx): Notice[] => {
    const f = noticeOf(FLASH, c.query.get('m'))
    return f === undefined ? [] : [f]
  }

  const securityView = async (): Promise<SecurityView> => {
    const lp = await d.issuer.lockoutPolicy()
    const b = await d.issuer.banner()
    const t = d.certs?.status()
    const ca = d.trust.status()
    return {
      lockout: { failedAttempts: lp.failed_attempts, lockoutDuration: formatDuration(lp.lockout_duration * 1000) },
      banner: b,
      tls: t === undefined ? undefined : { source: sourceText(String(t.source)), subject: String(t.subject), notAfter: when(String(t.not_after)), fingerprint: String(t.fingerprint256), names: [...(t.dns_names as string[]), ...(t.ip_addresses as string[])].join(', ') || '—' },
      ca: ca.set === true ? { subject: String(ca.subject), notAfter: when(String(ca.not_after)), fingerprint: String(ca.fingerprint256) } : undefined,
    }
  }
  const userRows = async (): Promise<{ username: string; role: Role; locked: boolean; mustChangePassword: boolean }[]> =>
    (await d.issuer.listUsers()).map((u) => ({ username: String(u.username), role: u.role as Role, locked: u.locked === true, mustChangePassword: u.password_change_required === true }))
  const accountInfo = (): { idleTimeout: string; defaultTokenLifetime: string } => ({ idleTimeout: formatDuration(d.config().console.idleTimeout), defaultTokenLifetime: days(d.config().authentication.local.longLivedTokenLifetime) })

  const render = async (section: Section | 'status', s: Signed, c: Ctx, status: number, ns: readonly Notice[], values: UserFormValues = {}): Promise<void> => {
    let body: SafeHtml
    if (section === 'status') {
      const f = d.facts()
      const cert = d.certs?.status()
      body = statusPage(s.viewer, await statusView({ ...f, tls: cert === undefined ? 'TLS is off' : `${sourceText(String(cert.source))}, expires ${when(String(cert.not_after))}`, upstreamUrl: d.config().upstream.url, localUsers: (await d.store.listUsers()).length }, now()), ns)
    } else if (section === 'users') body = usersPage(s.viewer, await userRows(), ns, v, values)
    else if (section === 'security') body = securityPage(s.viewer, await securityView(), ns, v)
    else if (section === 'account') body = accountPage(s.viewer, accountInfo(), ns, v)
    else body = forcedPasswordPage(s.viewer, v, ns)
    send(c, status, body)
  }

  const PAGES: Readonly<Record<string, NavKey>> = { '/ui/status': 'status', '/ui/users': 'users', '/ui/security': 'security', '/ui/account': 'account' }

  // --- actions -------------------------------------------------------------------------------

  interface Action {
    readonly path: RegExp
    /** `admin`: role admin only; `self`: anyone signed in, on their own account. */
    readonly who: 'admin' | 'self'
    /** Where a refusal is shown. */
    readonly section: Section
    readonly events?: readonly AuditEvent[]
    readonly target?: (s: Signed, form: Form, params: readonly string[]) => string | undefined
    readonly extra?: (form: Form) => Record<string, string | number | boolean> | undefined
    /** Do it; return where to go (303) — or nothing when the action sent its own page. */
    run(s: Signed, form: Form, params: readonly string[], c: Ctx): Promise<{ location: string; cookies?: string[] } | undefined>
  }

  /** A password change ended every session of the user, this one too: continue on a new one (a fresh id and CSRF token). */
  const renewSession = async (username: string): Promise<string> => {
    const u = await d.store.getUser(username)
    if (u === undefined) throw new GatehouseError('ERR_USER_NOT_FOUND')
    return sessionCookie((await sessions().create({ kind: 'console', username: u.username, method: 'local', groups: [u.role], generation: u.generation })).id)
  }
  const ownPassword = (to: string) => async (s: Signed, form: Form, _p: readonly string[], c: Ctx): Promise<{ location: string; cookies: string[] }> => {
    const next = form.get('new_password') ?? ''
    if (next !== (form.get('confirm_password') ?? '')) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'The two new passwords do not match.' })
    await d.issuer.changePassword(s.principal, { old_password: form.get('old_password') ?? '', new_password: next }, c.meta)
    return { location: to, cookies: [await renewSession(s.user.username)] }
  }
  const change = (what: string) => (): Record<string, string> => ({ change: what })
  const field = (name: string) => (_s: Signed, f: Form): string | undefined => f.get(name)
  const param = (_s: Signed, _f: Form, p: readonly string[]): string | undefined => p[0]

  const ACTIONS: readonly Action[] = [
    { path: /^\/ui\/change-password$/, who: 'self', section: 'forced', events: ['password.changed'], target: (s) => s.user.username, run: ownPassword('/ui/status?m=password') },
    { path: /^\/ui\/account\/password$/, who: 'self', section: 'account', events: ['password.changed'], target: (s) => s.user.username, run: ownPassword('/ui/account?m=password') },
    {
      path: /^\/ui\/account\/token$/, who: 'self', section: 'account', events: ['token.generated'], target: (s) => s.user.username,
      extra: (f) => ({ lifetime: (f.get('access_token_timeout') ?? '').trim() || 'default' }),
      run: async (s, f, _p, c) => {
        const t = (f.get('access_token_timeout') ?? '').trim()
        let ms: number | undefined
        if (t !== '') {
          ms = parseDuration(t)
          if (ms === undefined || ms <= 0) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'The lifetime must be a duration such as 30d, 1d5h, 1w or infinite.' })
        }
        const tok = await d.issuer.generateToken(s.principal, ms)
        const expires = tok.expires_in === null ? ' never expires' : ` expires on ${new Date(now() + tok.expires_in * 1000).toISOString().slice(0, 16).replace('T', ' ')} UTC`
        // Shown once, in this answer only (no-store): a redirect would have to keep it somewhere.
        send(c, 200, accountPage(s.viewer, accountInfo(), [], v, { value: tok.access_token, expires }))
        return undefined
      },
    },
    {
      path: /^\/ui\/account\/revoke$/, who: 'self', section: 'account', events: ['tokens.revoked'], target: (s) => s.user.username,
      run: async (s) => {
        await d.issuer.revoke(s.user.username)
        return { location: '/ui/login?m=revoked', cookies: [clearHostCookie(SESSION_COOKIE, 'Strict')] }
      },
    },
    {
      path: /^\/ui\/users$/, who: 'admin', section: 'users', events: ['user.created'], target: field('username'), extra: (f) => ({ role: f.get('role') ?? '' }),
      run: async (_s, f) => {
        await d.issuer.createUser(f.get('username') ?? '', f.get('password') ?? '', f.get('role') ?? '')
        return { location: '/ui/users?m=user-added' }
      },
    },
    {
      path: /^\/ui\/users\/password$/, who: 'admin', section: 'users', events: ['password.changed'], target: field('username'),
      run: async (s, f, _p, c) => {
        const target = f.get('username') ?? ''
        if (target === '' || target === s.user.username) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'Choose another user; change your own password under My account.' })
        await d.issuer.changePassword(s.principal, { username: target, new_password: f.get('new_password') ?? '' }, c.meta)
        return { location: '/ui/users?m=password-set' }
      },
    },
    {
      path: /^\/ui\/users\/role$/, who: 'admin', section: 'users', events: ['user.role_changed'], target: field('username'), extra: (f) => ({ role: f.get('role') ?? '' }),
      run: async (s, f) => {
        const target = f.get('username') ?? ''
        if (target === '' || target === s.user.username) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'Choose another user; nobody changes their own role.' })
        await d.issuer.setRole(s.principal, target, f.get('role') ?? '')
        return { location: '/ui/users?m=role-changed' }
      },
    },
    {
      path: /^\/ui\/users\/([^/]+)\/delete$/, who: 'admin', section: 'users', events: ['user.deleted'], target: param,
      run: async (s, _f, p) => {
        await d.issuer.deleteUser(s.principal, p[0] as string)
        return { location: '/ui/users?m=user-deleted' }
      },
    },
    {
      path: /^\/ui\/users\/([^/]+)\/revoke$/, who: 'admin', section: 'users', events: ['tokens.revoked'], target: param,
      run: async (s, _f, p) => {
        await d.issuer.revoke(p[0] as string)
        if (p[0] === s.user.username) return { location: '/ui/login?m=revoked', cookies: [clearHostCookie(SESSION_COOKIE, 'Strict')] }
        return { location: '/ui/users?m=tokens-revoked' }
      },
    },
    {
      path: /^\/ui\/users\/([^/]+)\/unlock$/, who: 'admin', section: 'users', events: ['locks.cleared'], target: param,
      run: async (_s, _f, p) => {
        await d.issuer.unlock(p[0] as string)
        return { location: '/ui/users?m=unlocked' }
      },
    },
    {
      path: /^\/ui\/security\/lockout$/, who: 'admin', section: 'security', events: ['lockout_policy.changed'], target: () => 'lockoutPolicy',
      extra: (f) => ({ failed_attempts: f.get('failed_attempts') ?? '', lockout_duration: f.get('lockout_duration') ?? '' }),
      run: async (_s, f) => {
        const n = Number(f.get('failed_attempts') ?? '')
        if (!Number.isInteger(n)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'Failed attempts must be a whole number from 2 to 50.' })
        const raw = (f.get('lockout_duration') ?? '').trim()
        const ms = /^\d+$/.test(raw) ? Number(raw) * 1000 : parseDuration(raw)
        if (ms === undefined || !Number.isFinite(ms)) throw new GatehouseError('ERR_BAD_REQUEST', { message: 'The lockout duration must be seconds or a duration such as 2m.' })
        await d.issuer.setLockoutPolicy(n, ms)
        return { location: '/ui/security?m=lockout' }
      },
    },
    {
      path: /^\/ui\/security\/lockout\/reset$/, who: 'admin', section: 'security', events: ['lockout_policy.reset', 'locks.cleared'], target: () => 'lockoutPolicy',
      run: async () => {
        await d.issuer.resetLockoutPolicy()
        return { location: '/ui/security?m=lockout-reset' }
      },
    },
    {
      path: /^\/ui\/security\/banner$/, who: 'admin', section: 'security', events: ['banner.changed'], target: () => 'banner',
      extra: (f) => ({ change: f.get('enabled') === 'on' ? 'text,enabled' : 'text,disabled' }),
      run: async (_s, f) => {
        await d.issuer.updateBanner({ text: (f.get('text') ?? '').replace(/\r\n/g, '\n'), enabled: f.get('enabled') === 'on' })
        return { location: '/ui/security?m=banner' }
      },
    },
    {
      path: /^\/ui\/security\/tls$/, who: 'admin', section: 'security', events: ['tls.changed'], target: () => 'tls', extra: change('set'),
      run: async (_s, f) => {
        if (d.certs === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'TLS is off (tls.enabled); there is no certificate to replace.' })
        await d.certs.set(f.get('certificate') ?? '', f.get('private_key') ?? '')
        return { location: '/ui/security?m=tls' }
      },
    },
    {
      path: /^\/ui\/security\/tls\/unset$/, who: 'admin', section: 'security', events: ['tls.changed'], target: () => 'tls', extra: change('unset'),
      run: async () => {
        if (d.certs === undefined) throw new GatehouseError('ERR_NOT_FOUND', { message: 'TLS is off (tls.enabled).' })
        await d.certs.unset()
        return { location: '/ui/security?m=tls-unset' }
      },
    },
    {
      path: /^\/ui\/security\/ca$/, who: 'admin', section: 'security', events: ['ca_cert.changed'], target: () => 'caCert', extra: change('set'),
      run: async (_s, f) => {
        await d.trust.set(f.get('certificate') ?? '')
        return { location: '/ui/security?m=ca' }
      },
    },
    {
      path: /^\/ui\/security\/ca\/unset$/, who: 'admin', section: 'security', events: ['ca_cert.changed'], target: () => 'caCert', extra: change('unset'),
      run: async () => {
        await d.trust.unset()
        return { location: '/ui/security?m=ca-unset' }
      },
    },
  ]

  const runAction = async (c: Ctx, s: Signed, a: Action, params: readonly string[]): Promise<ConsoleOutcome> => {
    // Origin first (before the body is even read), then the session's token.
    const form = await readForm(c.req, bodyTimeout())
    const check = checkCsrf({ method: 'POST', secFetchSite: header(c.req, 'sec-fetch-site'), origin: header(c.req, 'origin'), expectedOrigin: c.origin, submittedToken: form.get('_csrf'), sessionToken: s.viewer.csrf })
    if (!check.ok) return { ...csrfRefused(c, s.viewer, check.reason), principal: s.principal }
    const auditAll = (outcome: 'success' | 'failure', reason?: string): void => {
      let target: string | undefined
      let extra: Record<string, string | number | boolean> | undefined
      try {
        target = a.target?.(s, form, params)
        extra = a.extra?.(form)
      } catch {
        // an audit line is never the reason a request fails
      }
      for (const e of a.events ?? []) auditLine(c, e, s.user.username, target, outcome, reason, extra)
    }
    if (a.who === 'admin' && s.user.role !== 'admin') {
      auditAll('failure', 'ERR_FORBIDDEN')
      return { ...forbidden(c, s.viewer, 'Only a user with the admin role can do this. Nothing was changed.'), principal: s.principal }
    }
    try {
      const out = await a.run(s, form, params, c)
      auditAll('success')
      if (out !== undefined) redirect(c, out.location, out.cookies)
      return { principal: s.principal }
    } catch (e) {
      const err = asGatehouseError(e)
      auditAll('failure', err.code)
      if (err.code === 'ERR_INTERNAL') throw e
      const ns: Notice[] = [{ kind: 'bad', text: friendly(err) }]
      // A wrong current password can lock the account: the same lockout as the API.
      await render(a.section, s, c, err.status, ns, a.section === 'users' && a.path.source === '^\\/ui\\/users$' ? { username: form.get('username'), role: form.get('role') } : {})
      return { principal: s.principal, reason: err.code }
    }
  }

  const bodyTimeout = (): number => d.config().admin.bodyTimeout ?? DEFAULT_BODY_TIMEOUT_MS

  // --- the router ------------------------------------------------------------------------------

  return async (req, res, meta) => {
    const url = req.url ?? '/ui'
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET')
    const scheme = (req.socket as TLSSocket).encrypted === true ? 'https' : 'http'
    const host = req.headers.host ?? ''
    const c0 = { req, res, meta, path, query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), head: req.method === 'HEAD' }
    // The expected origin of form posts: this Host with this listener's scheme (as the browser serializes it).
    const origin = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host) ? originOf(`${scheme}://${host}`) : undefined
    if (origin === undefined) {
      errorPage({ ...c0, origin: `${scheme}://invalid` }, 400, 'Bad request', 'The Host header is missing or malformed.', undefined)
      return { reason: 'ERR_BAD_REQUEST' }
    }
    const c: Ctx = { ...c0, origin }
    try {
      const asset = ASSETS.get(path)
      if (asset !== undefined && method === 'GET') {
        const fresh = c.req.headers['if-none-match'] === asset.etag
        res.writeHead(fresh ? 304 : 200, { 'content-type': asset.type, 'cache-control': 'no-cache', etag: asset.etag, 'x-content-type-options': 'nosniff', 'cross-origin-resource-policy': 'same-origin', ...(fresh ? {} : { 'content-length': Buffer.byteLength(asset.body) }) })
        res.end(fresh || c.head ? undefined : asset.body)
        return {}
      }
      if (method !== 'GET' && method !== 'POST') {
        errorPage(c, 405, 'Method not allowed', 'The console answers GET and POST only.', undefined, { allow: 'GET, HEAD, POST' })
        return { reason: 'ERR_METHOD_NOT_ALLOWED' }
      }
      // Every POST: this origin first, before any session or body is looked at.
      if (method === 'POST') {
        const o = checkCsrf({ method, secFetchSite: header(req, 'sec-fetch-site'), origin: header(req, 'origin'), expectedOrigin: c.origin, submittedToken: 'origin-only', sessionToken: 'origin-only' })
        if (!o.ok) return csrfRefused(c, undefined, o.reason)
      }
      if (path === '/ui/login') {
        if (method === 'POST') return await postLogin(c)
        const r = readCookie(req.headers.cookie, SESSION_COOKIE)
        if (r.ok && (await sessions().authenticate(r.value)).ok) {
          redirect(c, '/ui/status')
          return {}
        }
        const n = noticeOf(LOGIN_FLASH, c.query.get('m'))
        await showLogin(c, 200, n === undefined ? [] : [n], '')
        return {}
      }
      if (path === '/ui' || path === '/ui/') {
        redirect(c, '/ui/status')
        return {}
      }
      const s = await signedIn(c)
      if (!('viewer' in s)) return s
      if (path === '/ui/logout') {
        if (method !== 'POST') {
          errorPage(c, 405, 'Method not allowed', 'Sign out with the button in the header.', s.viewer, { allow: 'POST' })
          return { principal: s.principal, reason: 'ERR_METHOD_NOT_ALLOWED' }
        }
        const form = await readForm(req, bodyTimeout())
        const check = checkCsrf({ method, secFetchSite: header(req, 'sec-fetch-site'), origin: header(req, 'origin'), expectedOrigin: c.origin, submittedToken: form.get('_csrf'), sessionToken: s.viewer.csrf })
        if (!check.ok) return { ...csrfRefused(c, s.viewer, check.reason), principal: s.principal }
        await sessions().end(s.cookie)
        redirect(c, '/ui/login?m=signedout', [clearHostCookie(SESSION_COOKIE, 'Strict')])
        return { principal: s.principal }
      }
      // SPEC §8: until the first password change, nothing but that change (and signing out).
      if (s.user.mustChangePassword && path !== '/ui/change-password') {
        redirect(c, '/ui/change-password')
        return { principal: s.principal, reason: 'ERR_PASSWORD_CHANGE_REQUIRED' }
      }
      if (method === 'GET') {
        if (path === '/ui/change-password') {
          if (!s.user.mustChangePassword) {
            redirect(c, '/ui/account')
            return { principal: s.principal }
          }
          await render('forced', s, c, 200, [])
          return { principal: s.principal }
        }
        const key = PAGES[path]
        if (key === undefined) {
          errorPage(c, 404, 'Page not found', 'There is no console page at this address.', s.viewer)
          return { principal: s.principal, reason: 'ERR_NOT_FOUND' }
        }
        if (!mayView(s.user.role, key)) return { ...forbidden(c, s.viewer, 'This page needs the admin or read-only role.'), principal: s.principal }
        await render(key, s, c, 200, flash(c))
        return { principal: s.principal }
      }
      for (const a of ACTIONS) {
        const m = a.path.exec(path)
        if (m === null) continue
        let params: string[]
        try {
          params = m.slice(1).map((x) => decodeURIComponent(x))
        } catch {
          errorPage(c, 400, 'Bad request', 'The address is not valid.', s.viewer)
          return { principal: s.principal, reason: 'ERR_BAD_REQUEST' }
        }
        return await runAction(c, s, a, params)
      }
      errorPage(c, 404, 'Not found', 'There is no console action at this address.', s.viewer)
      return { principal: s.principal, reason: 'ERR_NOT_FOUND' }
    } catch (e) {
      const err = asGatehouseError(e)
      if (err.code === 'ERR_INTERNAL') d.logger.error({ requestId: meta.requestId, detail: err.detail }, 'console error')
      if (res.headersSent) {
        res.destroy()
        return { reason: err.code }
      }
      const text = err.code === 'ERR_INTERNAL' ? 'Something went wrong on the server; the error is in its log.' : err.message
      errorPage(c, err.status, err.status >= 500 ? 'Server error' : 'Request refused', text, undefined, { ...err.headers })
      if (err.code === 'ERR_REQUEST_TIMEOUT' || err.code === 'ERR_REQUEST_TOO_LARGE') res.once('finish', () => req.socket.destroySoon())
      return { reason: err.code }
    }
  }
}

function principalOf(u: { username: string; role: Role; mustChangePassword: boolean }): Principal {
  return Object.freeze({ user: u.username, groups: Object.freeze([u.role]), method: 'local' as const, mustChangePassword: u.mustChangePassword })
}

function originOf(url: string): string | undefined {
  try {
    const o = new URL(url).origin
    return o === 'null' ? undefined : o
  } catch {
    return undefined
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const h = req.headers[name]
  return Array.isArray(h) ? h.join(',') : h
}

function waitText(secs: number): string {
  if (secs < 90) return `${Math.max(1, secs)} seconds`
  return `${Math.ceil(secs / 60)} minutes`
}

/** `30d` rather than `4w2d` for whole days. */
function days(ms: number): string {
  return ms !== Infinity && ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : formatDuration(ms)
}

/** An ISO time as people read it: `2027-12-03 00:28 UTC`. */
function when(iso: string): string {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : iso
}

function sourceText(source: string): string {
  return source === 'api' ? 'uploaded through the console or the API' : source === 'files' ? 'from the configured files' : 'self-signed, generated in the state directory'
}

/** The message of a refused action, as a sentence for a person. */
function friendly(err: GatehouseError): string {
  switch (err.code) {
    case 'ERR_LOGIN_FAILED':
      return 'The current password is wrong.'
    case 'ERR_ACCOUNT_LOCKED':
      return 'This account is locked after too many failed attempts; try again later.'
    default: {
      const m = err.message
      return m.charAt(0).toUpperCase() + m.slice(1)
    }
  }
}
