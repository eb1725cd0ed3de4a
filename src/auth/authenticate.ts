/**
 * Stage 5: authenticate. One router, no trying of authenticators in turn (STYLE habit 5):
 * a JWT-shaped token goes to the verifier registered for its `iss` (OIDC issuers, gatehouse's
 * own local issuer), anything else to the API-key verifier. A presented credential that fails
 * is 401 even when anonymous access is on; anonymous applies only when nothing was presented.
 */
import { GatehouseError } from '../errors.ts'
import type { Access } from '../authz/profiles.ts'
import type { ApiKeyVerifier } from './apikey.ts'
import type { Credential } from './extract.ts'
import { jwtShape, type JwtShape } from './jwtShape.ts'
import { ANONYMOUS, type Principal } from '../http/principal.ts'
import { tokenDigest, type TokenCache } from './tokenCache.ts'

/** How a verifier may work for one request. */
export interface VerifyOptions {
  /**
   * Use only keys at hand: no fetch, no wait (the address is blocked by the failure throttle,
   * and checking its tokens must stay cheap and bounded). A key that is not at hand is a failure.
   */
  readonly offline?: boolean
}

/** Verifies JWTs of one issuer. Implemented by the OIDC and local-token verifiers. */
export interface JwtVerifier {
  /**
   * Verify the token; resolve to a principal or reject with a GatehouseError. A failure raised
   * after the signature verified (a claim: expiry, audience, user name, revocation) is marked
   * with `signedFailure`: it is not a guess, and the failure throttle neither counts nor
   * refuses it.
   */
  verify(token: string, shape: JwtShape, opts?: VerifyOptions): Principal | Promise<Principal>
  /**
   * For the verified-token cache: a cheap synchronous check, run on every cache hit, that the
   * verified token is still valid (not revoked). Undefined: valid until exp.
   */
  revalidator?(shape: JwtShape): (() => boolean) | undefined
}

export interface AuthenticatorOptions {
  readonly anonymousEnabled: boolean
  readonly apiKeys: ApiKeyVerifier | undefined
  /** Verifiers by exact `iss`. */
  readonly jwtVerifiers: ReadonlyMap<string, JwtVerifier>
  /** Names of the enabled methods for the 401 message, e.g. ["API-keys", "OIDC"]. */
  readonly methodNames: readonly string[]
  /** Verified-token cache for JWTs; undefined: verify every time. */
  readonly tokenCache?: TokenCache | undefined
}

/** What the router decided; `explain` prints it. */
export interface AuthResult {
  readonly principal: Principal
  readonly authenticator: 'apikey' | 'jwt' | 'anonymous'
  /** For an API key: its digest (the failure throttle remembers keys proven per address). */
  readonly digest?: string
}

/**
 * Authentication for an address the failure throttle has blocked: JWTs are checked offline,
 * and only API keys already proven from that address are looked up at all.
 */
export interface BlockedGuard {
  /** Whether the API key with this digest succeeded from the blocked address before. */
  proven(digest: string): boolean
}

/** Errors raised after a JWT's signature verified (see `JwtVerifier.verify`). */
const SIGNED = new WeakSet<object>()

/** Mark `e` as raised after the token's signature verified; returns `e`. */
export function signedFailure<E>(e: E): E {
  if (typeof e === 'object' && e !== null) SIGNED.add(e)
  return e
}

/** Whether `e` was raised after the token's signature verified (so it cannot be a guess). */
export function isSignedFailure(e: unknown): boolean {
  return typeof e === 'object' && e !== null && SIGNED.has(e)
}

const OFFLINE: VerifyOptions = Object.freeze({ offline: true })

/** The authentication router. */
export class Authenticator {
  readonly #o: AuthenticatorOptions
  readonly #unauthenticated: GatehouseError

  constructor(o: AuthenticatorOptions) {
    this.#o = o
    // Weaviate's exact text (W10), with our list of methods.
    this.#unauthenticated = new GatehouseError('ERR_UNAUTHENTICATED', {
      message: `anonymous access not enabled. Please authenticate through one of the available methods: [${o.methodNames.join(', ')}]`,
    })
  }

  /** True when any credential-checking method is enabled. */
  get anyMethod(): boolean {
    return this.#o.methodNames.length > 0
  }

  /**
   * Authenticate one request.
   *
   * @param access what the request needs; public paths admit a request without credential.
   * @param guard set when the client's address is blocked by the failure throttle.
   */
  authenticate(cred: Credential | undefined, access: Access, guard?: BlockedGuard): AuthResult | Promise<AuthResult> {
    if (cred === undefined) {
      if (this.#o.anonymousEnabled || access === 'public') return { principal: ANONYMOUS, authenticator: 'anonymous' }
      throw this.#unauthenticated
    }
    if (!this.anyMethod) throw new GatehouseError('ERR_NO_AUTH_SCHEME')
    // One SHA-256 per request serves both the verified-token cache and the API-key comparison;
    // a cached JWT costs this hash and a look-up, with no decoding.
    const digest = tokenDigest(cred.token)
    const cache = this.#o.tokenCache
    if (cache !== undefined) {
      const hit = cache.get(digest)
      if (hit !== undefined) return { principal: hit, authenticator: 'jwt' }
    }
    const shape = jwtShape(cred.token)
    if (shape !== undefined) {
      cache?.miss()
      const iss = shape.payload.iss
      const verifier = typeof iss === 'string' ? this.#o.jwtVerifiers.get(iss) : undefined
      if (verifier === undefined) throw new GatehouseError('ERR_UNKNOWN_ISSUER', { detail: typeof iss === 'string' ? 'iss not configured' : 'no iss claim' })
      const opts = guard === undefined ? undefined : OFFLINE
      if (cache === undefined) {
        const p = verifier.verify(cred.token, shape, opts)
        return p instanceof Promise ? p.then((principal) => ({ principal, authenticator: 'jwt' as const })) : { principal: p, authenticator: 'jwt' }
      }
      // After verification the decoded payload is the verified one (same bytes): its exp/iat bound the entry.
      const remember = (principal: Principal): AuthResult => {
        const exp = shape.payload.exp
        cache.set(digest, principal, typeof exp === 'number' ? exp : undefined, verifier.revalidator?.(shape))
        return { principal, authenticator: 'jwt' }
      }
      const p = verifier.verify(cred.token, shape, opts)
      return p instanceof Promise ? p.then(remember) : remember(p)
    }
    if (this.#o.apiKeys === undefined) {
      throw new GatehouseError('ERR_INVALID_TOKEN', { message: 'unauthorized: the token is not a JWT and API keys are not enabled', detail: 'api key presented, apikey disabled' })
    }
    // A blocked address must not learn whether a guess was right: unproven keys are not looked up.
    if (guard !== undefined && !guard.proven(digest)) throw new GatehouseError('ERR_INVALID_API_KEY', { detail: 'blocked address, key not proven from it (not checked)' })
    const principal = this.#o.apiKeys.authenticateDigest(digest)
    if (principal === undefined) throw new GatehouseError('ERR_INVALID_API_KEY')
    return { principal, authenticator: 'apikey', digest }
  }
}
