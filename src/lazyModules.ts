/**
 * Dependencies that only some configurations use, loaded on first use instead of by every
 * process at start-up. A data-plane worker with API keys only never touches undici (OIDC
 * discovery and JWKS, browser sign-in) or ldapts (directory users), and loading them cost it
 * ~20 and ~13 MiB resident (docs/benchmarks.md, "Footprint"). Both ship CommonJS builds, so a
 * require keeps the first use synchronous; their first use is at start (an issuer's discovery,
 * a directory bind), never on the request path of a configuration that does not use them.
 */
import { createRequire } from 'node:module'
import type * as Ldapts from 'ldapts'
import type * as Undici from 'undici'

const require = createRequire(import.meta.url)

/** undici (HTTP client for issuers' discovery, JWKS and token endpoints). */
export function undici(): typeof Undici {
  return require('undici') as typeof Undici
}

/** ldapts (LDAP client for directory users). */
export function ldapts(): typeof Ldapts {
  return require('ldapts') as typeof Ldapts
}
