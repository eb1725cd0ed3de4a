/** Readiness inputs of the admin listener's /readyz (see admin/api.ts). */
import type { JwksStatus } from '../auth/oidc/jwksCache.ts'

/** Readiness checks; each is true when satisfied. */
export interface Readiness {
  listeners: boolean
  state: boolean
  /** Each OIDC issuer's key status: ready once its keys were loaded at least once. */
  issuers: () => JwksStatus[]
}
