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
import type { Principal } from '../auth/principal.ts'
import { HOP_BY_HOP } from '../upstream/hop.ts'

/** Compiled header policy (built once from config). */
export interface HeaderPolicy {
  readonly names: { readonly user: string; readonly groups: string; readonly email: string; readonly authMethod: string; readonly requestId: string }
  /** Managed names in canonical form (see `canonical`). */
  readonly managed: ReadonlySet<string>
  readonly trusted: BlockList
  readonly passAuthorization: boolean
  /** Strip the qdrant `api-key` header (when it is a credential and not passed on). */
  readonly stripApiKeyHeader: boolean
  /** `upstream.headers`, resolved: set on every request, replacing client copies. */
  readonly fixed: readonly (readonly [string, string])[]
  readonly fixedLower: ReadonlySet<string>
  readonly preserveHost: boolean
}

/** Canonical form for comparing header names across spellings: lower case, letters and digits only. */
export function canonical(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '')
}

// Headers that can make an upstream change the method or the path it acts on.
const ALWAYS_STRIPPED = new Set(['xhttpmethodoverride', 'xhttpmethod', 'xmethodoverride', 'xoriginalurl', 'xrewriteurl', 'xoriginaluri', 'xoriginalpath', 'xenvoyoriginalpath'])

/** Per-request facts the injector needs. */
export interface InjectFacts {
  readonly principal: Principal
  readonly requestId: string
  readonly proto: 'http' | 'https'
}

/**
 * Build the header list sent upstream: the client's headers after stripping, then the identity
 * headers. Returns a flat `[name, value, name, value, …]` array (keeps duplicates and case).
 */
export function upstreamHeaders(req: IncomingMessage, policy: HeaderPolicy, facts: InjectFacts): string[] {
  const raw = req.rawHeaders
  const peer = req.socket.remoteAddress ?? ''
  const peerTrusted = peer !== '' && policy.trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')
  const connection = req.headers.connection
  const named = connection === undefined ? undefined : new Set(connection.toLowerCase().split(',').map((s) => s.trim()))
  const out: string[] = []
  let xff: string | undefined
  let xfp: string | undefined
  let xfh: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || lower === 'host') continue
    // Connection may name ordinary headers, but never the body framing.
    if (named !== undefined && named.has(lower) && lower !== 'content-length') continue
    if (lower === 'authorization' && !policy.passAuthorization) continue
    if (lower === 'api-key' && policy.stripApiKeyHeader) continue
    if (policy.fixedLower.has(lower)) continue
    const canon = canonical(name)
    if (policy.managed.has(canon) || ALWAYS_STRIPPED.has(canon)) continue
    if (canon.startsWith('xforwarded') || lower === 'forwarded' || canon === 'xrealip') {
      if (!peerTrusted) continue
      // From a trusted proxy: keep the chain (exact spelling only), appended to below.
      if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`
      else if (lower === 'x-forwarded-proto') xfp ??= value
      else if (lower === 'x-forwarded-host') xfh ??= value
      else if (lower === 'forwarded' || canon === 'xrealip') out.push(name, value)
      continue
    }
    out.push(name, value)
  }
  const n = policy.names
  const p = facts.principal
  out.push(n.user, p.user)
  if (p.groups.length > 0) out.push(n.groups, p.groups.join(','))
  if (p.email !== undefined && p.email !== '') out.push(n.email, p.email)
  out.push(n.authMethod, p.method)
  out.push('X-Forwarded-For', xff === undefined ? peer : `${xff}, ${peer}`)
  out.push('X-Forwarded-Proto', xfp ?? facts.proto)
  const host = req.headers.host
  if (xfh !== undefined) out.push('X-Forwarded-Host', xfh)
  else if (host !== undefined) out.push('X-Forwarded-Host', host)
  out.push(n.requestId, facts.requestId)
  for (const [k, v] of policy.fixed) out.push(k, v)
  if (policy.preserveHost && host !== undefined) out.push('Host', host)
  return out
}
