/** How a principal was authenticated; also the value of `X-Forwarded-Auth-Method`. */
export type AuthMethod = 'apikey' | 'oidc' | 'local' | 'anonymous'

/**
 * Who a request comes from. Produced by an authenticator, judged by the authorizer, and
 * injected into the forwarded request as identity headers.
 */
export interface Principal {
  readonly user: string
  readonly groups: readonly string[]
  readonly email?: string | undefined
  readonly method: AuthMethod
  /** A local account that must change its password: its token may only do that (SPEC §8). */
  readonly mustChangePassword?: boolean | undefined
}

/** The principal of a request without credentials; Weaviate judges it as the user `anonymous` (W22). */
export const ANONYMOUS: Principal = Object.freeze({ user: 'anonymous', groups: Object.freeze([]) as readonly string[], method: 'anonymous' })
