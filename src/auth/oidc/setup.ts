/**
 * Build the OIDC verifiers from the configuration: one JWKS cache and one verifier per issuer,
 * each with its own outbound trust (`authentication.oidc.certificate`, like Weaviate's
 * AUTHENTICATION_OIDC_CERTIFICATE: inline PEM, a file, or an http(s) URL to download it from).
 */
import { readFileSync } from 'node:fs'
import { effectiveIssuers } from '../../config/issuers.ts'
import { rootCertificates } from 'node:tls'
import type { Config } from '../../config/types.ts'
import type { OutboundTrust } from '../../upstream/trust.ts'
import type { Logger } from '../../log.ts'
import type { FetchCounts } from '../../metrics/metrics.ts'
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
export async function createOidc(c: Config, logger: Logger, opts: { now?: () => number; trust?: OutboundTrust; counts?: (issuer: string) => FetchCounts } = {}): Promise<OidcRuntime> {
  const o = c.authentication.oidc
  const issuers = effectiveIssuers(c)
  if (issuers.length === 0) return { verifiers: new Map(), status: () => [], start() {}, stop() {}, settle: async () => {} }
  const caches: JwksCache[] = []
  const verifiers = new Map<string, JwtVerifier>()
  for (const i of issuers) {
    const own = i.certificate === '' ? undefined : await loadCertificate(i.certificate, o.jwks.fetchTimeout)
    // The issuer's own certificate replaces the system CAs (Weaviate); a runtime CA is added to either.
    const trustFor = (): string[] | undefined => {
      const extra = opts.trust?.extraCa
      if (own === undefined) return extra === undefined ? undefined : [...rootCertificates, extra]
      return extra === undefined ? [own] : [own, extra]
    }
    const cache = new JwksCache({
      issuer: i.issuer,
      jwksUrl: i.jwksUrl,
      dispatcher: issuerDispatcher(trustFor(), o.jwks.fetchTimeout),
      limits: { timeoutMs: o.jwks.fetchTimeout, maxBytes: o.jwks.maxBytes },
      cooldownMs: o.jwks.cooldown,
      refreshMs: o.jwks.refreshInterval,
      staleIfErrorMs: o.jwks.staleIfError,
      stateDir: c.stateDir,
      logger,
      ...(opts.now === undefined ? {} : { now: opts.now }),
      counts: opts.counts?.(i.issuer),
    })
    caches.push(cache)
    opts.trust?.subscribe(() => cache.setDispatcher(issuerDispatcher(trustFor(), o.jwks.fetchTimeout)))
    verifiers.set(
      i.issuer,
      new OidcVerifier({
        issuer: i.issuer,
        clientId: i.clientId,
        skipClientIdCheck: i.skipClientIdCheck,
        usernameClaim: i.usernameClaim,
        groupsClaim: i.groupsClaim,
        algorithms: i.algorithms,
        clockToleranceMs: o.clockTolerance,
        maxTokenBytes: o.maxTokenBytes,
        cache,
        ...(opts.now === undefined ? {} : { now: opts.now }),
      }),
    )
  }
  return {
    verifiers,
    status: () => caches.map((x) => x.status()),
    start: () => caches.forEach((x) => x.start()),
    stop: () => caches.forEach((x) => x.stop()),
    settle: async () => {
      await Promise.all(caches.map((x) => x.refresh()))
    },
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
