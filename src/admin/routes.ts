/** Readiness inputs of the admin listener's /readyz (see admin/api.ts). */
import type { JwksStatus } from '../auth/oidc/jwksCache.ts'
import type { StoreHealth } from '../store/open.ts'

/** Readiness checks; each is true when satisfied. */
export interface Readiness {
  listeners: boolean
  state: boolean
  /** Each OIDC issuer's key status: ready once its keys were loaded at least once. */
  issuers: () => JwksStatus[]
  /**
   * The state store, named in /readyz. It does not make /readyz fail: every replica loses a
   * shared store at once, and API keys and OIDC keep working (docs/replicas.md).
   */
  store?: () => StoreHealth
}
