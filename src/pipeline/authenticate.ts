/**
 * Stage 5 for every kind of request (HTTP/1.1, HTTP/2, gRPC, WebSocket upgrade): authenticate
 * through the router, behind the per-address failure throttle. A blocked address is answered
 * before any verification; a presented credential that fails (401) counts against its address.
 */
import type { Credential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import { clientKey } from '../auth/throttle.ts'
import type { Access } from '../authz/profiles.ts'
import type { Runtime } from './runtime.ts'
import { GatehouseError } from '../errors.ts'

/** Where a request came from, for the throttle: the peer and any X-Forwarded-For it sent. */
export interface Peer {
  readonly remoteAddress: string | undefined
  readonly forwardedFor: unknown
}

/** Authenticate; synchronous when the router is (cached JWTs, API keys, anonymous). */
export function authenticate(rt: Runtime, credential: Credential | undefined, access: Access, peer: () => Peer): Principal | Promise<Principal> {
  const throttle = rt.throttle
  if (credential === undefined || throttle === undefined) {
    const r = rt.authenticator.authenticate(credential, access)
    return r instanceof Promise ? r.then((x) => x.principal) : r.principal
  }
  const p = peer()
  const key = clientKey(p.remoteAddress, p.forwardedFor, rt.trustedProxies)
  throttle.check(key)
  // No closure on the synchronous path (a cached JWT, an API key): only a failure or a pending
  // verification builds one. (A per-call closure plus try/return measured at twice the cost of
  // the API-key lookup itself.)
  let r: ReturnType<Runtime['authenticator']['authenticate']>
  try {
    r = rt.authenticator.authenticate(credential, access)
  } catch (e) {
    countFailure(throttle, key, e)
    throw e
  }
  if (!(r instanceof Promise)) return r.principal
  return r.then(
    (x) => x.principal,
    (e: unknown) => {
      countFailure(throttle, key, e)
      throw e
    },
  )
}

/** A presented credential that failed (401) counts against its address. */
function countFailure(throttle: NonNullable<Runtime['throttle']>, key: string, e: unknown): void {
  if (e instanceof GatehouseError && e.status === 401) throttle.fail(key)
}
