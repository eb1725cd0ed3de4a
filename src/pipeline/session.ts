/**
 * Stage 5 for a request without a credential when browser sign-in is on: a session cookie
 * authenticates like a bearer token (SPEC §10). A request that carries a credential ignores the
 * cookie, so bearer clients behave exactly as before. A session cookie that does not
 * authenticate (unknown, tampered, expired, revoked, refresh failed) is no credential: the
 * request is judged as one without any — and it never counts in the failure throttle, since a
 * 256-bit id cannot be guessed.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Credential } from '../auth/extract.ts'
import type { Access } from '../authz/profiles.ts'
import type { BrowserLogin, SessionMiss } from '../browser/login.ts'
import { sessionAllowed } from '../browser/site.ts'
import type { Principal } from '../http/principal.ts'
import type { LocalIssuer } from '../issuer/localIssuer.ts'
import type { Logger } from '../log.ts'
import { SessionManager } from '../session/manager.ts'
import type { IssuerStore } from '../store/store.ts'
import { authenticate, type Peer } from './authenticate.ts'
import type { Runtime } from './runtime.ts'

/** What the browser sign-in needs of the process: the state store, the local issuer, the logger. */
export interface SessionServices {
  readonly store: IssuerStore
  readonly issuer: LocalIssuer | undefined
  readonly logger: Logger
}

const managers = new WeakMap<BrowserLogin, SessionManager>()

/** The session manager of a runtime's browser sign-in (its idle timeout and lifetime). */
export function sessionManager(login: BrowserLogin, store: IssuerStore): SessionManager {
  let m = managers.get(login)
  if (m === undefined) {
    m = new SessionManager(store, { idleTimeoutMs: login.settings.idleTimeoutMs, absoluteLifetimeMs: login.settings.lifetimeMs })
    managers.set(login, m)
  }
  return m
}

// The request handler's services, for the upgrade handler (which receives the handler, not its deps).
const registry = new WeakMap<object, SessionServices>()

/** Remember the services of a request handler. */
export function registerServices(handler: object, s: SessionServices): void {
  registry.set(handler, s)
}

/** The services a request handler was built with, if any. */
export function servicesOf(handler: object): SessionServices | undefined {
  return registry.get(handler)
}

/**
 * Authenticate: the credential when there is one; else the session cookie (browser sign-in on);
 * else as a request without a credential. `onMiss` learns why a presented cookie did not count.
 * A state-changing request uses the cookie only when it comes from a page of this origin
 * (browser/site.ts): the Lax cookie also rides on form posts from other pages of the same site.
 * (A WebSocket handshake is a GET; upgrade.ts applies the same rule to it and answers 403.)
 */
export function authenticateRequest(
  rt: Runtime,
  method: string,
  headers: IncomingHttpHeaders,
  credential: Credential | undefined,
  access: Access,
  peer: () => Peer,
  services: SessionServices | undefined,
  onMiss?: (why: SessionMiss) => void,
): Principal | Promise<Principal> {
  const login = rt.browser
  if (credential !== undefined || login === undefined || services === undefined || headers.cookie === undefined) return authenticate(rt, credential, access, peer)
  // Cookies of the application only: the synchronous path, no store round trip.
  if (!login.hasSessionCookie(headers.cookie)) return authenticate(rt, credential, access, peer)
  if (!sessionAllowed(method, headers, login.settings.proto, login.settings.redirectUrl)) {
    onMiss?.('cross-site')
    return authenticate(rt, credential, access, peer)
  }
  const sessions = sessionManager(login, services.store)
  return login.sessionPrincipal(headers.cookie, { sessions, store: services.store, logger: services.logger }).then((r) => {
    if ('principal' in r) return r.principal
    if (r.miss !== 'absent') onMiss?.(r.miss)
    return authenticate(rt, undefined, access, peer)
  })
}
