/**
 * Stage 5 for every kind of request (HTTP/1.1, HTTP/2, gRPC, WebSocket upgrade): authenticate
 * through the router, behind the per-address failure throttle. A blocked address is answered
 * before any verification; a presented credential that fails (401) counts against its address.
 */
import type { Credential } from '../auth/extract.ts'
import type { Principal } from '../auth/principal.ts'
import { clientKey } from '../auth/throttle.ts'
import type { Access } from '../authz/profiles.ts'
import type { Runtime } from '../config/compile.ts'
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
  const failed = (e: unknown): never => {
    if (e instanceof GatehouseError && e.status === 401) throttle.fail(key)
    throw e
  }
  try {
    const r = rt.authenticator.authenticate(credential, access)
    return r instanceof Promise ? r.then((x) => x.principal, failed) : r.principal
  } catch (e) {
    return failed(e)
  }
}
