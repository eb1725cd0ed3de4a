/**
 * Stages 3 and 7: strip what the client may not send upstream, then inject identity.
 *
 * Strip before inject (STYLE habit 6): hop-by-hop headers and every header the client names
 * in `Connection` (Traefik CVE-2024-45410); every spelling of the managed identity headers —
 * case, `_`, `.` (oauth2-proxy GHSA-vjrc-mh2v-45x6, Traefik CVE-2026-33433/88011); method
 * overrides, so a read cannot become a write upstream; `X-Forwarded-*`, `Forwarded` and
 * URL-rewrite headers from peers that are not trusted proxies (oauth2-proxy GHSA-7x63-xv5r-3p2x,
 * Envoy CVE-2023-27487).
 */
import type { IncomingMessage } from 'node:http'
import type { BlockList } from 'node:net'
import { HOP_BY_HOP } from './hop.ts'
import type { Principal } from './principal.ts'

/** Compiled header policy (built once from config). */
export interface HeaderPolicy {
  readonly names: { readonly user: string; readonly groups: string; readonly email: string; readonly authMethod: string; readonly requestId: string }
  /** Managed names and exact `identityHeaders.strip` entries, in canonical form (see `canonical`). */
  readonly managed: ReadonlySet<string>
  /** `identityHeaders.strip` prefix entries (`x-remote-*`), in canonical form without the `*`. */
  readonly stripPrefixes: readonly string[]
  readonly trusted: BlockList
  /** False when trustedProxies is empty (no per-request address check at all). */
  readonly hasTrusted: boolean
  readonly passAuthorization: boolean
  /** Strip the qdrant `api-key` header (when it is a credential and not passed on). */
  readonly stripApiKeyHeader: boolean
  /** `upstream.headers`, resolved: set on every request, replacing client copies. */
  readonly fixed: readonly (readonly [string, string])[]
  readonly fixedLower: ReadonlySet<string>
  readonly preserveHost: boolean
  /**
   * The `Cookie` header to forward, from every `Cookie` field the client sent (HTTP/2 may send
   * several): gatehouse's own cookies removed (compiled in compose.ts from session/cookie.ts),
   * undefined to drop the header. Absent: cookies pass as they are.
   */
  readonly cookieFilter?: ((values: readonly string[]) => string | undefined) | undefined
}

/** Canonical form for comparing header names across spellings: lower case, letters and digits only. */
export function canonical(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '')
}

/**
 * The default `identityHeaders.strip` list: header families that other authenticating proxies
 * inject and that upstreams (or their plugins) trust as "the proxy says who this is". A client
 * that sends one through gatehouse must not be believed, so they are removed in every spelling,
 * whatever gatehouse itself injects. An entry ending in `*` is a prefix. Sources:
 * - oauth2-proxy: `X-Forwarded-User/Email/Groups/Preferred-Username/Access-Token`,
 *   `X-Auth-Request-*` (`--set-xauthrequest`), `Gap-Auth`; its nginx example maps these to
 *   `X-User` and `X-Email`;
 * - Authelia, Authentik, tinyauth (trusted-header SSO): `Remote-User/Groups/Email/Name`;
 * - Kubernetes authenticating proxy, Apache, NetBox: `X-Remote-User/Group/Extra-*`;
 * - Grafana auth proxy: `X-WEBAUTH-USER` (and `X-WEBAUTH-NAME/EMAIL/ROLE/GROUPS`);
 * - Blue Coat, Websense, Squid, Kong: `X-Authenticated-User/Groups/Userid/Scope`;
 *   Kong also `X-Consumer-*` and `X-Credential-Identifier`;
 * - Pomerium: `X-Pomerium-Jwt-Assertion`, `X-Pomerium-Claim-*`;
 * - Traefik forward-auth: whatever `authResponseHeaders` names, in practice `X-Forwarded-User`;
 * - Envoy `jwt_authn` `forward_payload_header` (e.g. `x-jwt-payload`), WSO2 `X-JWT-Assertion`;
 * - mod_auth_openidc: `OIDC_CLAIM_*`, `OIDC_access_token`, `OIDC_id_token*`;
 * - cloud front doors: Google IAP `X-Goog-Authenticated-User-*`, `X-Goog-Iap-Jwt-Assertion`;
 *   Cloudflare Access `Cf-Access-*`; AWS ALB `X-Amzn-Oidc-*`; Azure App Service
 *   `X-MS-Client-Principal*`, `X-MS-Token-*`; Vouch `X-Vouch-*`.
 * Left out on purpose: `X-User*` as a prefix (its canonical form would also match
 * `X-User-Agent`), so only the exact `X-User…` names in use are listed.
 */
export const DEFAULT_IDENTITY_STRIP: readonly string[] = Object.freeze([
  'remote-*',
  'x-remote-*',
  'x-auth-request-*',
  'x-authenticated-*',
  'x-webauth-*',
  'x-forwarded-user*',
  'x-forwarded-email',
  'x-forwarded-groups',
  'x-forwarded-preferred-username',
  'x-forwarded-access-token',
  'gap-auth',
  'x-user',
  'x-user-id',
  'x-user-name',
  'x-username',
  'x-user-email',
  'x-user-groups',
  'x-email',
  'x-groups',
  'x-consumer-*',
  'x-credential-identifier',
  'x-pomerium-*',
  'x-jwt-*',
  'oidc-*',
  'x-goog-authenticated-user-*',
  'x-goog-iap-jwt-assertion',
  'cf-access-*',
  'x-amzn-oidc-*',
  'x-ms-client-principal*',
  'x-ms-token-*',
  'x-vouch-*',
])

// Names the strip list must never remove: the request's framing and target, and the credential
// (which has its own switch, identityHeaders.passAuthorization).
const NEVER_STRIPPED = ['Host', 'Content-Length', 'Content-Type', 'Transfer-Encoding', 'Authorization']
const STRIP_ENTRY_RE = /^[!#$%&'+.^_`|~0-9A-Za-z-]+\*?$/

/**
 * Compile `identityHeaders.strip` entries into exact names and prefixes, both in canonical form
 * (so `X_Remote.User` matches `x-remote-*`). Assumes `stripListProblems` found nothing.
 */
export function compileStripList(entries: readonly string[]): { readonly exact: readonly string[]; readonly prefixes: readonly string[] } {
  const exact: string[] = []
  const prefixes: string[] = []
  for (const e of entries) {
    if (e.endsWith('*')) prefixes.push(canonical(e.slice(0, -1)))
    else exact.push(canonical(e))
  }
  return { exact, prefixes }
}

/**
 * Problems with `identityHeaders.strip` entries, for the configuration check: each entry must be
 * a header name, optionally ending in one `*`, with letters or digits, and must not remove the
 * request's framing, Host or Authorization.
 */
export function stripListProblems(entries: readonly string[]): { readonly index: number; readonly value: string; readonly message: string; readonly remedy: string }[] {
  const out: { index: number; value: string; message: string; remedy: string }[] = []
  entries.forEach((e, index) => {
    const prefix = e.endsWith('*')
    const c = canonical(prefix ? e.slice(0, -1) : e)
    if (!STRIP_ENTRY_RE.test(e) || c === '') {
      out.push({ index, value: e, message: 'not a header name or a prefix ending in *', remedy: 'use a header name such as X-Remote-User, or a prefix such as x-remote-*' })
      return
    }
    const hit = NEVER_STRIPPED.find((n) => (prefix ? canonical(n).startsWith(c) : canonical(n) === c))
    if (hit !== undefined) out.push({ index, value: e, message: `would remove ${hit}, which gatehouse needs to forward the request`, remedy: 'list only identity headers; Authorization is controlled by identityHeaders.passAuthorization' })
  })
  return out
}

// Headers that can make an upstream change the method or the path it acts on.
const ALWAYS_STRIPPED = new Set(['xhttpmethodoverride', 'xhttpmethod', 'xmethodoverride', 'xoriginalurl', 'xrewriteurl', 'xoriginaluri', 'xoriginalpath', 'xenvoyoriginalpath'])

/** What the injector reads of a request: an HTTP/1.1 or HTTP/2 request, or a gRPC stream's headers. */
export type HeaderSource = Pick<IncomingMessage, 'rawHeaders' | 'headers'> & { readonly socket: { readonly remoteAddress?: string | undefined } }

/** Per-request facts the injector needs. */
export interface InjectFacts {
  /** Undefined: inject no identity at all (a CORS preflight, SPEC §6), only the forwarding headers. */
  readonly principal: Principal | undefined
  readonly requestId: string
  readonly proto: 'http' | 'https'
}

/** What to do with a client header, decided by its name alone (cached per distinct name). */
const KIND = {
  DROP: 0,
  KEEP: 1,
  AUTHORIZATION: 2,
  FORWARDED: 3, // X-Forwarded-*, Forwarded, X-Real-IP: kept only from trusted proxies
  COOKIE: 4, // filtered: gatehouse's session and flow cookies never reach the upstream
} as const
type Kind = (typeof KIND)[keyof typeof KIND]

const MAX_CACHED_NAMES = 2048
const kindCache = new WeakMap<HeaderPolicy, Map<string, Kind>>()

function classify(policy: HeaderPolicy, name: string): Kind {
  let cache = kindCache.get(policy)
  if (cache === undefined) {
    cache = new Map()
    kindCache.set(policy, cache)
  }
  const hit = cache.get(name)
  if (hit !== undefined) return hit
  const lower = name.toLowerCase()
  const canon = canonical(name)
  let kind: Kind
  // Expect: gatehouse answers 100-continue itself once the request is authorized (serve.ts).
  // HTTP/2 pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) describe this hop only.
  if (HOP_BY_HOP.has(lower) || lower === 'host' || lower === 'expect' || lower.startsWith(':')) kind = KIND.DROP
  else if (lower === 'authorization') kind = policy.passAuthorization ? KIND.KEEP : KIND.DROP
  else if (lower === 'api-key' && policy.stripApiKeyHeader) kind = KIND.DROP
  else if (policy.fixedLower.has(lower)) kind = KIND.DROP
  else if (policy.managed.has(canon) || ALWAYS_STRIPPED.has(canon) || hasPrefix(policy.stripPrefixes, canon)) kind = KIND.DROP
  else if (canon.startsWith('xforwarded') || lower === 'forwarded' || canon === 'xrealip') kind = KIND.FORWARDED
  else if (lower === 'cookie' && policy.cookieFilter !== undefined) kind = KIND.COOKIE
  else kind = KIND.KEEP
  // Bounded: a client inventing header names cannot grow it without limit.
  if (cache.size < MAX_CACHED_NAMES) cache.set(name, kind)
  return kind
}

function hasPrefix(prefixes: readonly string[], canon: string): boolean {
  for (const p of prefixes) if (canon.startsWith(p)) return true
  return false
}

const trustedSockets = new WeakMap<object, boolean>()

function peerIsTrusted(req: HeaderSource, policy: HeaderPolicy): boolean {
  if (!policy.hasTrusted) return false
  const socket = req.socket
  let t = trustedSockets.get(socket)
  if (t === undefined) {
    const peer = socket.remoteAddress ?? ''
    t = peer !== '' && policy.trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')
    trustedSockets.set(socket, t)
  }
  return t
}

/**
 * Build the header list sent upstream: the client's headers after stripping, then the identity
 * headers. Returns a flat `[name, value, name, value, …]` array (keeps duplicates and case).
 */
export function upstreamHeaders(req: HeaderSource, policy: HeaderPolicy, facts: InjectFacts): string[] {
  const raw = req.rawHeaders
  const peer = req.socket.remoteAddress ?? ''
  const peerTrusted = peerIsTrusted(req, policy)
  const connection = req.headers.connection
  // Connection may name ordinary headers, but never the body framing.
  const named = connection === undefined ? undefined : new Set(connection.toLowerCase().split(',').map((s) => s.trim()))
  named?.delete('content-length')
  const out: string[] = []
  let xff: string | undefined
  let xfp: string | undefined
  let xfh: string | undefined
  let cookies: string[] | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const kind = classify(policy, name)
    if (kind === KIND.DROP) continue
    if (named !== undefined && named.has(name.toLowerCase())) continue
    const value = raw[i + 1] as string
    if (kind === KIND.COOKIE) {
      // Every Cookie field, joined once below: a session id in a second field is caught too.
      ;(cookies ??= []).push(value)
      continue
    }
    if (kind === KIND.FORWARDED) {
      if (!peerTrusted) continue
      // From a trusted proxy: keep the chain (exact spelling only), appended to below.
      const lower = name.toLowerCase()
      if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`
      else if (lower === 'x-forwarded-proto') xfp ??= value
      else if (lower === 'x-forwarded-host') xfh ??= value
      else if (lower === 'forwarded' || canonical(name) === 'xrealip') out.push(name, value)
      continue
    }
    out.push(name, value)
  }
  if (cookies !== undefined) {
    const kept = (policy.cookieFilter as (v: readonly string[]) => string | undefined)(cookies)
    if (kept !== undefined) out.push('Cookie', kept)
  }
  const n = policy.names
  const p = facts.principal
  if (p !== undefined) {
    out.push(n.user, p.user)
    if (p.groups.length > 0) out.push(n.groups, p.groups.join(','))
    if (p.email !== undefined && p.email !== '') out.push(n.email, p.email)
    out.push(n.authMethod, p.method)
  }
  out.push('X-Forwarded-For', xff === undefined ? peer : `${xff}, ${peer}`)
  out.push('X-Forwarded-Proto', xfp ?? facts.proto)
  // HTTP/2: `:authority` plays the role of Host (RFC 9113 §8.3.1).
  const host = req.headers.host ?? (req.headers[':authority'] as string | undefined)
  if (xfh !== undefined) out.push('X-Forwarded-Host', xfh)
  else if (host !== undefined) out.push('X-Forwarded-Host', host)
  out.push(n.requestId, facts.requestId)
  for (const [k, v] of policy.fixed) out.push(k, v)
  if (policy.preserveHost && host !== undefined) out.push('Host', host)
  return out
}

/** A flat `[name, value, …]` list as an object with lower-case names; repeated names become arrays. */
export function headerObject(flat: readonly string[]): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {}
  for (let i = 0; i < flat.length; i += 2) {
    const k = (flat[i] as string).toLowerCase()
    const v = flat[i + 1] as string
    const prev = h[k]
    h[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  return h
}
