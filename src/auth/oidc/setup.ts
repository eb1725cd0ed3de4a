/**
 * Build the OIDC verifiers from the configuration: one JWKS cache and one verifier per issuer,
 * each with its own outbound trust (`authentication.oidc.certificate`, like Weaviate's
 * AUTHENTICATION_OIDC_CERTIFICATE: inline PEM, a file, or an http(s) URL to download it from).
 */
import { readFileSync } from 'node:fs'
import type { Config } from '../../config/types.ts'
import type { Logger } from '../../log.ts'
import type { JwtVerifier } from '../authenticate.ts'
import { fetchText, issuerDispatcher } from './fetch.ts'
import { JwksCache, type JwksStatus } from './jwksCache.ts'
import { OidcVerifier } from './verifier.ts'

/** The OIDC part of a running gatehouse. */
export interface OidcRuntime {
  readonly verifiers: ReadonlyMap<string, JwtVerifier>
  /** Per-issuer status for /readyz. */
  status(): JwksStatus[]
  /** Load persisted keys and start fetching (non-blocking). */
  start(): void
  stop(): void
  /** Resolves when every issuer has been tried once (for `explain`). */
  settle(): Promise<void>
}

/** Create the OIDC runtime (empty when OIDC is off). */
export async function createOidc(c: Config, logger: Logger, opts: { now?: () => number } = {}): Promise<OidcRuntime> {
  const o = c.authentication.oidc
  if (!o.enabled) return { verifiers: new Map(), status: () => [], start() {}, stop() {}, settle: async () => {} }
  const ca = o.certificate === '' ? undefined : await loadCertificate(o.certificate, o.jwks.fetchTimeout)
  const dispatcher = issuerDispatcher(ca, o.jwks.fetchTimeout)
  const cache = new JwksCache({
    issuer: o.issuer,
    jwksUrl: o.jwksUrl,
    dispatcher,
    limits: { timeoutMs: o.jwks.fetchTimeout, maxBytes: o.jwks.maxBytes },
    cooldownMs: o.jwks.cooldown,
    refreshMs: o.jwks.refreshInterval,
    staleIfErrorMs: o.jwks.staleIfError,
    stateDir: c.stateDir,
    logger,
    ...(opts.now === undefined ? {} : { now: opts.now }),
  })
  const verifier = new OidcVerifier({
    issuer: o.issuer,
    clientId: o.clientId,
    skipClientIdCheck: o.skipClientIdCheck,
    usernameClaim: o.usernameClaim,
    groupsClaim: o.groupsClaim,
    algorithms: o.algorithms,
    clockToleranceMs: o.clockTolerance,
    maxTokenBytes: o.maxTokenBytes,
    cache,
    ...(opts.now === undefined ? {} : { now: opts.now }),
  })
  return {
    verifiers: new Map([[o.issuer, verifier]]),
    status: () => [cache.status()],
    start: () => cache.start(),
    stop: () => cache.stop(),
    settle: () => cache.refresh(),
  }
}

/**
 * Resolve `authentication.oidc.certificate`. Like Weaviate, the certificate replaces the system
 * CAs for connections to the issuer.
 */
export async function loadCertificate(value: string, timeoutMs: number): Promise<string> {
  if (value.includes('-----BEGIN')) return value
  if (/^https?:\/\//i.test(value)) return fetchText(value, issuerDispatcher(undefined, timeoutMs), { timeoutMs, maxBytes: 256 * 1024 })
  return readFileSync(value, 'utf8')
}
