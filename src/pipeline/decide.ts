/**
 * The decisions of the request path that need no I/O, as plain functions: the data listener's
 * handler and `gatehouse explain` both call these, so explain cannot drift from the server
 * (stage numbers as in docs/architecture.md).
 */
import type { IncomingMessage } from 'node:http'
import { CORS_PREFLIGHT, isCorsPreflight, type Classification } from '../authz/profiles.ts'
import { GatehouseError } from '../errors.ts'
import type { Principal } from '../http/principal.ts'
import { requestHasBody } from '../upstream/forward.ts'
import type { Runtime } from './runtime.ts'

const WELL_KNOWN = '/v1/.well-known/openid-configuration'

/** The classification of gatehouse's own OIDC discovery document (answered, never forwarded). */
export const WELL_KNOWN_CLASS: Classification = Object.freeze({ access: 'public', rule: 'gatehouse: OIDC discovery endpoint' })

const CLOSE = Object.freeze({ connection: 'close' })

/**
 * Stage 0, the part about the target: llhttp bounds only the whole head, so a target over
 * `limits.maxUrlBytes` is refused here (then stage 2, `parseTarget`, normalizes it).
 *
 * @throws GatehouseError ERR_URL_TOO_LONG (414, connection closed).
 */
export function checkUrlLength(rt: Runtime, url: string): void {
  if (url.length > rt.limits.maxUrlBytes) throw new GatehouseError('ERR_URL_TOO_LONG', { detail: `${url.length} bytes`, headers: CLOSE })
}

/**
 * Stage 6a: what the request needs, from the method and the normalized path (never a header
 * the client can set to gain rights; the one header-based rule, the CORS preflight, only makes a
 * bodiless OPTIONS public). Runs before authentication: public paths admit a request without a
 * credential even when anonymous access is off.
 */
export function classifyRequest(rt: Runtime, req: IncomingMessage, method: string, path: string): Classification {
  // A CORS preflight is public under every profile (SPEC §6): it needs headers, not just the path.
  if (method === 'OPTIONS' && isCorsPreflight(method, req.headers, requestHasBody(req))) return CORS_PREFLIGHT
  if (path === WELL_KNOWN && (method === 'GET' || method === 'HEAD')) return WELL_KNOWN_CLASS
  return rt.profile.classify(method, path)
}

/**
 * Stage 6b: may this principal do what the request needs? Returns the admin-list rule that
 * allowed it.
 *
 * @throws GatehouseError ERR_PASSWORD_CHANGE_REQUIRED (a local account that must change its
 *   password may do nothing else, SPEC §8), ERR_FORBIDDEN (403, the admin list said no).
 */
export function authorize(rt: Runtime, principal: Principal, cls: Classification): string {
  if (principal.mustChangePassword === true) throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
  const decision = rt.adminList.decide(principal, cls.access)
  if (!decision.allowed) throw new GatehouseError('ERR_FORBIDDEN', { detail: decision.rule })
  return decision.rule
}

/**
 * Stage 7: whose identity is injected upstream. A CORS preflight carries none, not even an
 * anonymous one (SPEC §6): the upstream answers it for any caller.
 */
export function forwardedIdentity(cls: Classification, principal: Principal): Principal | undefined {
  return cls === CORS_PREFLIGHT ? undefined : principal
}
