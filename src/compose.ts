/**
 * Compile a validated Config into the plain objects and closures the hot path uses (STYLE
 * habit 3): sets instead of lists, resolved secrets, chosen forwarder. Runs once at start; a
 * failure here is a configuration problem, never a request error.
 */
import { readFileSync } from 'node:fs'
import { ApiKeyVerifier } from './auth/apikey.ts'
import { Authenticator, type JwtVerifier } from './auth/authenticate.ts'
import { FailureThrottle } from './auth/throttle.ts'
import { TokenCache } from './auth/tokenCache.ts'
import { AdminList } from './authz/adminlist.ts'
import { profileFor } from './authz/profiles.ts'
import { canonical, compileStripList, type HeaderPolicy } from './http/headers.ts'
import { createEchoForwarder } from './upstream/echo.ts'
import { createHttpForwarder, type Forwarder } from './upstream/forward.ts'
import type { OutboundTrust } from './upstream/trust.ts'
import { readKeysFile } from './config/keys.ts'
import type { Config, SecretRef } from './config/types.ts'
import { trustedProxyList } from './config/validate.ts'
import type { Runtime } from './pipeline/runtime.ts'
import type { Metrics } from './metrics/metrics.ts'
import { anonymousEnabled } from './config/anonymous.ts'
import { BrowserLogin } from './browser/login.ts'
import { ProviderClient } from './browser/provider.ts'
import { OidcVerifier } from './auth/oidc/verifier.ts'
import { stripCookies } from './session/cookie.ts'

export type { Runtime } from './pipeline/runtime.ts'

export { anonymousEnabled }

/** Compile the request-time objects (no forwarder; see `createForwarder`). */
export function compile(c: Config, extraVerifiers: ReadonlyMap<string, JwtVerifier> = new Map(), previous?: Runtime, metrics?: Metrics): Runtime {
  const a = c.authentication
  const methodNames: string[] = []
  if (a.apikey.enabled) methodNames.push('API-keys')
  if (a.oidc.enabled) methodNames.push('OIDC')
  if (a.local.enabled) methodNames.push('local users')
  let apiKeys: ApiKeyVerifier | undefined
  if (a.apikey.enabled) {
    const keys = [...a.apikey.allowedKeys, ...(a.apikey.allowedKeysFile === undefined ? [] : readKeysFile(a.apikey.allowedKeysFile))]
    apiKeys = new ApiKeyVerifier(keys, a.apikey.users)
  }
  const anon = anonymousEnabled(c)
  const tc = c.authentication.tokenCache
  const tokenCache = extraVerifiers.size > 0 && tc.maxEntries > 0 && tc.maxTtl > 0 ? new TokenCache({ maxEntries: tc.maxEntries, maxTtlMs: tc.maxTtl, counts: metrics?.tokenCache }) : undefined
  const profile = profileFor(c.upstream.profile)
  const ih = c.identityHeaders
  const fixed = Object.entries(c.upstream.headers).map(([k, ref]) => [k, resolveSecret(ref)] as const)
  // identityHeaders.strip: compiled once; the hot path classifies each distinct name once.
  const strip = compileStripList(ih.strip)
  const headers: HeaderPolicy = Object.freeze({
    names: { user: ih.user, groups: ih.groups, email: ih.email, authMethod: ih.authMethod, requestId: ih.requestId },
    managed: new Set([...[ih.user, ih.groups, ih.email, ih.authMethod, ih.requestId, 'X-Forwarded-User', 'X-Forwarded-Groups', 'X-Forwarded-Email', 'X-Forwarded-Auth-Method', 'X-Forwarded-Preferred-Username', 'X-Forwarded-Access-Token'].map(canonical), ...strip.exact]),
    stripPrefixes: strip.prefixes,
    trusted: trustedProxyList(c.trustedProxies),
    hasTrusted: c.trustedProxies.length > 0,
    passAuthorization: ih.passAuthorization,
    stripApiKeyHeader: c.upstream.profile === 'qdrant' && !ih.passAuthorization,
    fixed,
    fixedLower: new Set(fixed.map(([k]) => k.toLowerCase())),
    preserveHost: c.upstream.preserveHost,
    cookieFilter: gatehouseCookieFilter(c.authentication.oidc.browserLogin.cookieName),
  })
  let wellKnown: string | undefined
  if (a.oidc.enabled) {
    // Weaviate: url.JoinPath(issuer, "/.well-known/openid-configuration"); empty fields omitted (W20).
    const body: Record<string, unknown> = { href: `${a.oidc.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration` }
    if (a.oidc.clientId !== '') body.clientId = a.oidc.clientId
    const scopes = a.oidc.scopes.filter((s) => s !== '')
    if (scopes.length > 0) body.scopes = scopes
    wellKnown = JSON.stringify(body)
  }
  const ft = a.failureThrottle
  // A reload keeps the failure counts (and blocks) when the throttle settings did not change.
  const throttle = !ft.enabled
    ? undefined
    : previous?.throttle !== undefined && JSON.stringify(previous.config.authentication.failureThrottle) === JSON.stringify(ft)
      ? previous.throttle
      : new FailureThrottle({ maxFailures: ft.maxFailures, windowMs: ft.window, blockMs: ft.blockDuration, maxAddresses: ft.maxAddresses, counts: metrics?.credentialThrottle })
  return Object.freeze({
    config: c,
    browser: compileBrowserLogin(c, extraVerifiers),
    throttle,
    trustedProxies: headers.hasTrusted ? headers.trusted : undefined,
    requestIdHeader: ih.requestId.toLowerCase(),
    limits: { maxUrlBytes: c.limits.maxUrlBytes, maxHeaderFields: c.limits.maxHeaderCount, maxHeaderBytes: c.limits.maxHeaderBytes, bodyIdleMs: c.listen.timeouts.body,
      bodyRate: { minBytesPerSecond: c.listen.timeouts.minBodyRate, windowMs: c.listen.timeouts.bodyRateWindow, graceMs: c.listen.timeouts.bodyRateGrace },
    },
    profile,
    authenticator: new Authenticator({ anonymousEnabled: anon, apiKeys, jwtVerifiers: extraVerifiers, methodNames, tokenCache }),
    adminList: new AdminList(c.authorization.adminlist),
    headers,
    extract: { apiKeyHeader: c.upstream.profile === 'qdrant', queryToken: a.allowQueryToken },
    wellKnown,
    anonymousEnabled: anon,
    proto: c.tls.enabled ? 'https' : 'http',
    tokenCache,
  })
}

/** Every cookie gatehouse sets starts with this (session, flow, console): none reaches the upstream. */
const OWN_COOKIE_PREFIX = '__Host-gatehouse-'

/**
 * The Cookie filter of the header policy: gatehouse's own cookies (the configured session cookie
 * and every `__Host-gatehouse-…` one — the console's too, since cookies are not scoped by port)
 * are removed from every Cookie field; other cookies pass byte for byte.
 */
function gatehouseCookieFilter(sessionCookie: string): (values: readonly string[]) => string | undefined {
  const names = [sessionCookie]
  const prefixes = [OWN_COOKIE_PREFIX]
  return (values) => stripCookies(values, names, prefixes)
}

/**
 * The browser sign-in (SPEC §10), or undefined when it is off. The ID token is verified by the
 * main issuer's bearer verifier (the same rules), and the provider is reached with that issuer's
 * HTTP client (its CA, time and size limits).
 */
function compileBrowserLogin(c: Config, verifiers: ReadonlyMap<string, JwtVerifier>): BrowserLogin | undefined {
  const a = c.authentication
  const b = a.oidc.browserLogin
  if (!b.enabled) return undefined
  let oidc: BrowserLogin['settings']['oidc']
  if (a.oidc.enabled) {
    const verifier = verifiers.get(a.oidc.issuer)
    if (!(verifier instanceof OidcVerifier)) throw new TypeError(`browser sign-in: no verifier for issuer ${a.oidc.issuer}`)
    const secret = b.clientSecret ?? (b.clientSecretFile === undefined ? undefined : resolveSecret({ file: b.clientSecretFile }))
    const scopes = [...new Set(['openid', ...b.scopes])]
    oidc = {
      issuer: a.oidc.issuer,
      clientId: a.oidc.clientId,
      scopes,
      verifier,
      provider: new ProviderClient({ issuer: a.oidc.issuer, clientId: a.oidc.clientId, clientSecret: secret === '' ? undefined : secret, http: () => verifier.http }),
    }
  }
  return new BrowserLogin({
    oidc,
    localUsers: a.local.enabled && b.localUsers,
    redirectUrl: b.redirectUrl === '' ? undefined : b.redirectUrl,
    cookieName: b.cookieName,
    idleTimeoutMs: b.idleTimeout,
    lifetimeMs: b.cookieLifetime,
    proto: c.tls.enabled ? 'https' : 'http',
  })
}

/** Create the forwarder for the configured upstream. */
export function createForwarder(c: Config, trust?: OutboundTrust): Forwarder {
  if (c.upstream.url === 'echo:') return createEchoForwarder(c.limits.maxRequestBody)
  return createHttpForwarder({
    url: c.upstream.url,
    caFile: c.upstream.caFile,
    trust,
    timeouts: c.upstream.timeouts,
    maxRequestBody: c.limits.maxRequestBody,
    maxResponseBody: c.limits.maxResponseBody,
  })
}

/** Resolve a secret reference. Files are trimmed of the trailing newline Secrets usually carry. */
export function resolveSecret(ref: SecretRef): string {
  if ('value' in ref) return ref.value
  if ('env' in ref) return process.env[ref.env] ?? ''
  return readFileSync(ref.file, 'utf8').trim()
}
