/**
 * Verifies OIDC JWTs of one issuer with jose (SPEC §5): signature against the issuer's keys,
 * only asymmetric algorithms (configured, else advertised by the issuer, else RS256), `iss`
 * exact, `aud` contains the client id unless skipped, and with several audiences a present
 * `azp` must be the client id (OIDC Core §3.1.3.7), `exp` required, `nbf`/`iat` with a
 * tolerance. Header-embedded keys (`jwk`, `jku`, `x5u`, `x5c`) are refused outright: a token
 * never chooses its own verification key (RFC 8725 §3.10). Header values are attacker-chosen:
 * they reach logs only through `logValue` (bounded, escaped).
 */
import type { JWTPayload } from 'jose'
import { GatehouseError } from '../../errors.ts'
import { ASYMMETRIC_ALGS } from '../../config/validate.ts'
import { signedFailure, type JwtVerifier, type VerifyOptions } from '../authenticate.ts'
import type { JwtShape } from '../jwtShape.ts'
import type { Principal } from '../../http/principal.ts'
import type { JwksCache, VerifyKey } from './jwksCache.ts'
import { verifySignature } from './jws.ts'
import { logValue } from './logValue.ts'

export interface OidcVerifierOptions {
  readonly issuer: string
  readonly clientId: string
  readonly skipClientIdCheck: boolean
  readonly usernameClaim: string
  readonly groupsClaim: string
  /** Configured allow-list; empty: what the issuer advertises. */
  readonly algorithms: readonly string[]
  readonly clockToleranceMs: number
  readonly maxTokenBytes: number
  readonly cache: JwksCache
  readonly now?: () => number
}

const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const
const ASYMMETRIC = new Set<string>(ASYMMETRIC_ALGS)

/** The verifier of one OIDC issuer. */
export class OidcVerifier implements JwtVerifier {
  readonly #o: OidcVerifierOptions
  readonly #now: () => number

  constructor(o: OidcVerifierOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
  }

  get issuer(): string {
    return this.#o.issuer
  }

  /** The issuer's HTTP client and limits (the browser sign-in's discovery and token requests). */
  get http(): JwksCache['http'] {
    return this.#o.cache.http
  }

  /** The algorithms accepted now. */
  allowedAlgorithms(): string[] {
    const configured = this.#o.algorithms.filter((a) => ASYMMETRIC.has(a))
    if (configured.length > 0) return configured
    const advertised = (this.#o.cache.advertisedAlgorithms() ?? []).filter((a) => ASYMMETRIC.has(a))
    // Weaviate/go-oidc default when the issuer says nothing.
    return advertised.length > 0 ? advertised : ['RS256']
  }

  /** Synchronous when the key is at hand (the common case); a promise when keys must be fetched. */
  verify(token: string, shape: JwtShape, opts?: VerifyOptions): Principal | Promise<Principal> {
    const o = this.#o
    if (token.length > o.maxTokenBytes) throw invalid(`token of ${token.length} bytes exceeds ${o.maxTokenBytes}`, 'unauthorized: token too large')
    const h = shape.header
    for (const name of FORBIDDEN_HEADERS) if (name in h) throw invalid(`token header carries ${name}`)
    if (h.crit !== undefined) throw invalid('token header has crit')
    const alg = h.alg
    // Never none, never HS* (RFC 8725 §3.1); and within a configured allow-list when there is one.
    if (typeof alg !== 'string' || !ASYMMETRIC.has(alg)) throw invalid(`alg ${logValue(alg)} is not an allowed asymmetric algorithm`)
    if (o.algorithms.length > 0 && !o.algorithms.includes(alg)) throw invalid(`alg ${alg} not in the configured algorithms`)
    const kid = typeof h.kid === 'string' ? h.kid : undefined
    const key = o.cache.keyNow(kid, alg)
    if (key !== undefined) return this.#verified(token, shape, alg, key)
    // Offline (a blocked address): no fetch and no wait; a key that is not at hand is a failure.
    if (opts?.offline === true) throw invalid(`no key at hand for kid ${logValue(kid ?? null)} and alg ${alg} (offline check)`)
    // Looking the key up may refetch discovery (a rotation can bring a new algorithm), so the
    // issuer's advertised list is checked after it (in #verified).
    return o.cache.getKey(kid, alg).then((k) => this.#verified(token, shape, alg, k))
  }

  /** The checks that need the key: algorithm allowed now, signature, claims. */
  #verified(token: string, shape: JwtShape, alg: string, key: VerifyKey): Principal {
    const o = this.#o
    const allowed = this.allowedAlgorithms()
    if (!allowed.includes(alg)) throw invalid(`alg ${alg} not in ${allowed.join(',')}`)
    if (shape.header.b64 !== undefined && shape.header.b64 !== true) throw invalid('unencoded payload (b64) is not a JWT')
    if (!verifySignature(token, alg, key)) throw invalid('signature verification failed')
    // The payload decoded by the router is the signed one (same bytes): check the claims. A
    // failure from here on is about a token the issuer signed, so it cannot be a guess.
    const payload = shape.payload as JWTPayload
    try {
      checkClaims(payload, {
        issuer: o.issuer,
        audience: o.skipClientIdCheck ? undefined : o.clientId,
        nowSeconds: Math.floor(this.#now() / 1000),
        toleranceSeconds: Math.floor(o.clockToleranceMs / 1000),
      })
      return this.#principal(payload)
    } catch (e) {
      throw signedFailure(e)
    }
  }

  #principal(claims: JWTPayload): Principal {
    const o = this.#o
    const user = claimAt(claims, o.usernameClaim)
    if (user === undefined) throw new GatehouseError('ERR_MISSING_CLAIM', { message: `unauthorized: the token has no '${o.usernameClaim}' claim (authentication.oidc.usernameClaim)`, detail: `missing ${o.usernameClaim}` })
    // Empty or blank would become an empty X-Forwarded-User (read as "no user" by upstreams); a
    // control character or a comma would corrupt the header.
    if (typeof user !== 'string' || user.trim() === '' || /[\x00-\x1f\x7f,]/.test(user)) { // eslint-disable-line no-control-regex
      throw new GatehouseError('ERR_MISSING_CLAIM', { message: `unauthorized: the '${o.usernameClaim}' claim is not a usable user name`, detail: `bad ${o.usernameClaim}` })
    }
    let groups: string[] = []
    if (o.groupsClaim !== '') {
      const g = claimAt(claims, o.groupsClaim)
      // Weaviate: an array keeps its strings, a single string becomes [s], anything else none.
      const list = Array.isArray(g) ? g : typeof g === 'string' ? [g] : []
      // A group with a comma or a control character would corrupt X-Forwarded-Groups.
      groups = list.filter((x): x is string => typeof x === 'string' && x !== '' && !/[\r\n\0,]/.test(x))
    }
    const email = typeof claims.email === 'string' && !/[\r\n\0]/.test(claims.email) ? claims.email : undefined
    return Object.freeze({ user, groups: Object.freeze(groups), email, method: 'oidc' as const })
  }
}

/**
 * Read a claim by name, or by a dotted path into nested objects (Keycloak's
 * `realm_access.roles`). An exact top-level name wins (claims like `https://x/roles` contain dots).
 */
export function claimAt(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name]
  let v: unknown = claims
  for (const part of name.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined
    v = (v as Record<string, unknown>)[part]
  }
  return v
}

function invalid(detail: string, message?: string): GatehouseError {
  return new GatehouseError('ERR_INVALID_TOKEN', { detail, ...(message === undefined ? {} : { message }) })
}

/**
 * The registered-claim checks of RFC 7519 §4.1 as jose applies them: `iss` equal, `aud` (string
 * or array) containing the audience, `exp` required and in the future, `nbf` and `iat` not in
 * the future — each within the clock tolerance.
 */
export function checkClaims(p: JWTPayload, o: { issuer: string; audience: string | undefined; nowSeconds: number; toleranceSeconds: number }): void {
  if (p.iss !== o.issuer) throw invalid(`iss ${JSON.stringify(p.iss)} is not the issuer`)
  if (o.audience !== undefined) {
    const aud = p.aud
    const ok = typeof aud === 'string' ? aud === o.audience : Array.isArray(aud) && aud.includes(o.audience)
    if (!ok) throw invalid('aud does not contain the client id')
    // OIDC Core §3.1.3.7: with several audiences the authorized party, when named, must be us;
    // otherwise a token issued to another client that also lists us would be accepted.
    if (Array.isArray(aud) && new Set(aud).size > 1 && p.azp !== undefined && p.azp !== o.audience) {
      throw new GatehouseError('ERR_INVALID_TOKEN', {
        message: 'unauthorized: the token was issued to another client (azp is not this client id)',
        detail: `azp ${logValue(p.azp)} is not the client id, with ${aud.length} audiences`,
      })
    }
  }
  if (typeof p.exp !== 'number' || !Number.isFinite(p.exp)) throw invalid('exp is missing or not a number')
  if (p.exp <= o.nowSeconds - o.toleranceSeconds) throw new GatehouseError('ERR_TOKEN_EXPIRED', { detail: 'exp has passed' })
  if (p.nbf !== undefined) {
    if (typeof p.nbf !== 'number' || !Number.isFinite(p.nbf)) throw invalid('nbf is not a number')
    if (p.nbf > o.nowSeconds + o.toleranceSeconds) throw invalid('nbf is in the future')
  }
  if (p.iat !== undefined) {
    if (typeof p.iat !== 'number' || !Number.isFinite(p.iat)) throw invalid('iat is not a number')
    if (p.iat > o.nowSeconds + o.toleranceSeconds) throw invalid('iat is in the future')
  }
}
