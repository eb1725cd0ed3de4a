/**
 * Stage 5 for every kind of request (HTTP/1.1, HTTP/2, gRPC, WebSocket upgrade): authenticate
 * through the router, behind the per-address failure throttle (auth/throttle.ts).
 *
 * A presented credential that fails (401) counts against its address, unless it is a JWT whose
 * signature verified (expired, not yet valid, wrong audience: not a guess). A blocked address is
 * not refused wholesale, since one address is often many clients: a JWT whose signature verifies
 * offline and an API key proven from that address before are authenticated as usual; any other
 * credential is 429 (and counts) without the key being looked up.
 */
import { isSignedFailure, type AuthResult } from '../auth/authenticate.ts'
import type { Credential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import { clientKey, isTrusted, type FailureThrottle } from '../auth/throttle.ts'
import type { Access } from '../authz/profiles.ts'
import type { Runtime } from './runtime.ts'
import { GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'

/** Where a request came from, for the throttle: the peer and any X-Forwarded-For it sent. */
export interface Peer {
  readonly remoteAddress: string | undefined
  readonly forwardedFor: unknown
  /** Where the one-time warning about untrusted X-Forwarded-For goes. */
  readonly logger?: Logger | undefined
}

/** Authenticate; synchronous when the router is (cached JWTs, API keys, anonymous). */
export function authenticate(rt: Runtime, credential: Credential | undefined, access: Access, peer: () => Peer): Principal | Promise<Principal> {
  const throttle = rt.throttle
  if (credential === undefined || throttle === undefined) {
    const r = rt.authenticator.authenticate(credential, access)
    return r instanceof Promise ? r.then((x) => x.principal) : r.principal
  }
  const p = peer()
  if (p.forwardedFor !== undefined && !throttle.untrustedForwardWarned) warnUntrustedForward(rt, throttle, p)
  const key = clientKey(p.remoteAddress, p.forwardedFor, rt.trustedProxies)
  const blocked = throttle.blocked(key)
  if (blocked !== undefined) return authenticateBlocked(rt, throttle, key, credential, access, blocked)
  // No closure on the synchronous path (a cached JWT, an API key): only a failure or a pending
  // verification builds one. (A per-call closure plus try/return measured at twice the cost of
  // the API-key lookup itself.)
  let r: AuthResult | Promise<AuthResult>
  try {
    r = rt.authenticator.authenticate(credential, access)
  } catch (e) {
    countFailure(throttle, key, e)
    throw e
  }
  if (!(r instanceof Promise)) {
    if (r.digest !== undefined) throttle.prove(key, r.digest)
    return r.principal
  }
  return r.then(
    (x) => {
      if (x.digest !== undefined) throttle.prove(key, x.digest)
      return x.principal
    },
    (e: unknown) => {
      countFailure(throttle, key, e)
      throw e
    },
  )
}

/**
 * A blocked address: what passes is a JWT with a good signature (checked with keys at hand only)
 * and an API key proven from this address; a failure after a good signature is answered as it
 * is (401, not counted); everything else is the 429 and counts.
 */
function authenticateBlocked(rt: Runtime, throttle: FailureThrottle, key: string, credential: Credential, access: Access, blocked: GatehouseError): Principal | Promise<Principal> {
  const refuse = (e: unknown): never => {
    if (isSignedFailure(e)) throw e
    throttle.fail(key)
    // The count may have extended the block: answer with the current Retry-After.
    throw throttle.blocked(key) ?? blocked
  }
  let r: AuthResult | Promise<AuthResult>
  try {
    r = rt.authenticator.authenticate(credential, access, { proven: (digest) => throttle.isProven(key, digest) })
  } catch (e) {
    return refuse(e)
  }
  return r instanceof Promise ? r.then((x) => x.principal, refuse) : r.principal
}

/** A presented credential that failed (401) counts against its address, unless its signature verified. */
function countFailure(throttle: FailureThrottle, key: string, e: unknown): void {
  if (e instanceof GatehouseError && e.status === 401 && !isSignedFailure(e)) throttle.fail(key)
}

/**
 * Warn once that X-Forwarded-For arrives from a peer that is not a trusted proxy: the throttle
 * then keys every client behind that proxy by the proxy's address, so one client's failures can
 * get the others' unproven credentials refused.
 */
function warnUntrustedForward(rt: Runtime, throttle: FailureThrottle, p: Peer): void {
  const peer = p.remoteAddress ?? ''
  if (peer === '' || (rt.trustedProxies !== undefined && isTrusted(rt.trustedProxies, peer))) return
  if (p.logger === undefined || !throttle.firstUntrustedForward()) return
  p.logger.warn(
    { peer, setting: 'trustedProxies' },
    `requests carry X-Forwarded-For from ${peer}, which is not in trustedProxies: the failure throttle sees every client behind that proxy as the one address ${peer}, so failed credentials from one of them can get the others' unproven credentials refused with 429. Add the proxy's address or CIDR to trustedProxies so each client is throttled by its own address (or, if this is not a proxy, ignore this warning). It is logged once.`,
  )
}
