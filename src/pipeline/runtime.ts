/**
 * The compiled runtime the request path reads (built by the composition root, `src/compose.ts`).
 * It lives here, under the composition root, so that the stages import it downwards.
 */
import type { BlockList } from 'node:net'
import type { Authenticator } from '../auth/authenticate.ts'
import type { FailureThrottle } from '../auth/throttle.ts'
import type { TokenCache } from '../auth/tokenCache.ts'
import type { AdminList } from '../authz/adminlist.ts'
import type { Profile } from '../authz/profiles.ts'
import type { Config } from '../config/types.ts'
import type { HeaderPolicy } from '../http/headers.ts'
import type { BodyRate } from '../http/bodyRate.ts'
import type { BrowserLogin } from '../browser/login.ts'

/** Everything a request needs, compiled. */
export interface Runtime {
  readonly config: Config
  /** Browser sign-in on this listener (`authentication.oidc.browserLogin`), or undefined when off. */
  readonly browser: BrowserLogin | undefined
  readonly profile: Profile
  readonly authenticator: Authenticator
  readonly adminList: AdminList
  readonly headers: HeaderPolicy
  readonly extract: { readonly apiKeyHeader: boolean; readonly queryToken: boolean }
  /** Body of GET /v1/.well-known/openid-configuration, or undefined when OIDC is off (404). */
  readonly wellKnown: string | undefined
  readonly anonymousEnabled: boolean
  readonly proto: 'http' | 'https'
  /** The verified-token cache (undefined when no JWT method is on or it is disabled). */
  readonly tokenCache: TokenCache | undefined
  /** Failed-credential throttle per client address (undefined when disabled). */
  readonly throttle: FailureThrottle | undefined
  /** Trusted proxies for the client address (undefined when none are configured). */
  readonly trustedProxies: BlockList | undefined
  /** Lower-cased request-id header name. */
  readonly requestIdHeader: string
  readonly limits: {
    readonly maxUrlBytes: number
    readonly maxHeaderFields: number
    readonly maxHeaderBytes: number
    readonly bodyIdleMs: number
    /** listen.timeouts.minBodyRate and its window and grace. */
    readonly bodyRate: BodyRate
  }
}
