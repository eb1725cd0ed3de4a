/**
 * The effective anonymous policy, a pure function of the configuration. It lives here rather
 * than in the composition root so that `config check`/`config print` can show it without
 * loading the runtime's modules (CLI start-up, docs/benchmarks.md).
 */
import type { Config } from './types.ts'

/** Effective anonymous policy (W3): on when no method is enabled; else only when explicitly on. */
export function anonymousEnabled(c: Config): boolean {
  const a = c.authentication
  const any = a.apikey.enabled || a.oidc.enabled || a.local.enabled
  return any ? a.anonymous.enabled === true : true
}
