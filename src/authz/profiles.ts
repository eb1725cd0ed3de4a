/**
 * Upstream profiles (SPEC §6): what a request is — public, authentication-only, read or write —
 * decided on the method and the normalized path only. Never on a header the client can set
 * (no X-HTTP-Method-Override), never on the query string.
 */
import type { ProfileName } from '../config/types.ts'

/** What a request needs: nothing, any authenticated principal, a read role, or a write role. */
export type Access = 'public' | 'authenticated' | 'read' | 'write'

/** A classification with the rule that produced it (shown by `explain` and in debug logs). */
export interface Classification {
  readonly access: Access
  readonly rule: string
}

export interface Profile {
  readonly name: ProfileName
  classify(method: string, path: string): Classification
  /** Classify a gRPC call by its method path `/package.Service/Method` (docs/http2.md). */
  classifyGrpc(path: string): Classification
}

// gRPC's standard health check (grpc/grpc doc/health-checking.md) is public under every profile,
// like the REST liveness paths: probes carry no credential.
const GRPC_HEALTH_CHECK = '/grpc.health.v1.Health/Check'

/** Shared gRPC rule: the health check is public; `reads` are reads; every other method is a write. */
function grpcClassifier(profile: ProfileName, reads: ReadonlySet<string>): (path: string) => Classification {
  return (path) => {
    if (path === GRPC_HEALTH_CHECK) return { access: 'public', rule: `${profile}: gRPC ${path} is public` }
    if (reads.has(path)) return { access: 'read', rule: `${profile}: gRPC ${path} is a read` }
    return { access: 'write', rule: `${profile}: gRPC ${path} is a write` }
  }
}

// SPEC §6: Weaviate's read RPCs (weaviate.v1.Weaviate, v1/weaviate.proto).
const WEAVIATE_GRPC_READS = new Set(['/weaviate.v1.Weaviate/Search', '/weaviate.v1.Weaviate/Aggregate', '/weaviate.v1.Weaviate/TenantsGet'])
// Qdrant's read RPCs, mirroring its REST reads (qdrant/lib/api/src/grpc/proto/points_service.proto,
// collections_service.proto); qdrant.Qdrant/HealthCheck is its public health probe.
const QDRANT_GRPC_READS = new Set([
  ...['Get', 'Count', 'Scroll', 'Search', 'SearchBatch', 'SearchGroups', 'Recommend', 'RecommendBatch', 'RecommendGroups', 'Discover', 'DiscoverBatch', 'Query', 'QueryBatch', 'QueryGroups', 'Facet', 'SearchMatrixPairs', 'SearchMatrixOffsets'].map((m) => `/qdrant.Points/${m}`),
  ...['Get', 'List', 'CollectionExists', 'ListAliases', 'ListCollectionAliases', 'CollectionClusterInfo'].map((m) => `/qdrant.Collections/${m}`),
])
const qdrantGrpc = grpcClassifier('qdrant', QDRANT_GRPC_READS)

const isGetHead = (m: string): boolean => m === 'GET' || m === 'HEAD'

/**
 * A CORS preflight (Fetch standard §4.8): `OPTIONS` with `Origin` and
 * `Access-Control-Request-Method`. Browsers send it without credentials before a cross-origin
 * request, and Weaviate and Qdrant answer it themselves, so it is public under every profile
 * (SPEC §6) and forwarded without identity headers. A preflight never has a body; an `OPTIONS`
 * with one is judged as an ordinary `OPTIONS` (a read), so a body cannot ride in on the public rule.
 */
export function isCorsPreflight(method: string, headers: { readonly origin?: string | undefined; readonly 'access-control-request-method'?: string | undefined }, hasBody: boolean): boolean {
  if (method !== 'OPTIONS' || hasBody) return false
  const origin = headers.origin
  const acrm = headers['access-control-request-method']
  return origin !== undefined && origin !== '' && acrm !== undefined && acrm !== ''
}

/** The classification of a CORS preflight (see {@link isCorsPreflight}). */
export const CORS_PREFLIGHT: Classification = Object.freeze({ access: 'public', rule: 'CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) is public; forwarded without identity headers' })

const GENERIC: Profile = {
  name: 'generic',
  classify(method) {
    return method === 'GET' || method === 'HEAD' || method === 'OPTIONS'
      ? { access: 'read', rule: 'generic: GET/HEAD/OPTIONS is a read' }
      : { access: 'write', rule: `generic: ${method} is a write` }
  },
  // No method list to go by: every RPC but the health check needs the write role.
  classifyGrpc: grpcClassifier('generic', new Set()),
}

// Weaviate's POST reads (W23; usecases/auth/authorization/docs/auth_calls.md).
const WEAVIATE_POST_READS: readonly ((s: readonly string[]) => boolean)[] = [
  (s) => s.length === 3 && s[2] === 'graphql',
  (s) => s.length === 4 && s[2] === 'graphql' && s[3] === 'batch',
  (s) => s.length === 4 && s[2] === 'objects' && s[3] === 'validate',
  (s) => s.length === 7 && s[2] === 'schema' && s[4] === 'properties' && s[6] === 'tokenize' && nonEmpty(s[3]) && nonEmpty(s[5]),
  (s) => s.length === 3 && s[2] === 'tokenize',
  (s) => s.length === 4 && s[2] === 'aggregate' && nonEmpty(s[3]),
  (s) => s.length >= 5 && s[2] === 'search' && nonEmpty(s[3]) && s.slice(4).every(nonEmpty),
  (s) => s.length === 6 && s[2] === 'authz' && s[3] === 'roles' && s[5] === 'has-permission' && nonEmpty(s[4]),
]

function nonEmpty(s: string | undefined): boolean {
  return s !== undefined && s !== ''
}

const WEAVIATE: Profile = {
  name: 'weaviate',
  classify(method, path) {
    // SPEC §6: an OPTIONS that is not a CORS preflight is a read under every profile.
    if (method === 'OPTIONS') return { access: 'read', rule: 'weaviate: OPTIONS is a read' }
    if (isGetHead(method)) {
      if (path === '/' || path === '/v1' || path === '/v1/.well-known/live' || path === '/v1/.well-known/ready') {
        return { access: 'public', rule: `weaviate: ${path} is public` }
      }
      if (path === '/v1/meta') return { access: 'authenticated', rule: 'weaviate: /v1/meta needs authentication but no role' }
      return { access: 'read', rule: 'weaviate: GET/HEAD is a read' }
    }
    if (method === 'POST') {
      const s = path.split('/')
      if (s[1] === 'v1' && WEAVIATE_POST_READS.some((f) => f(s))) return { access: 'read', rule: `weaviate: POST ${path} is a read` }
    }
    return { access: 'write', rule: `weaviate: ${method} ${path} is a write` }
  },
  classifyGrpc: grpcClassifier('weaviate', WEAVIATE_GRPC_READS),
}

// Qdrant's read-only POST endpoints under /collections/{c}/points (SPEC §6).
const QDRANT_POINT_READS = new Set([
  '',
  '/count',
  '/scroll',
  '/search',
  '/search/batch',
  '/search/groups',
  '/recommend',
  '/recommend/batch',
  '/recommend/groups',
  '/discover',
  '/discover/batch',
  '/query',
  '/query/batch',
  '/query/groups',
])

const QDRANT: Profile = {
  name: 'qdrant',
  classify(method, path) {
    if (method === 'OPTIONS') return { access: 'read', rule: 'qdrant: OPTIONS is a read' }
    if (isGetHead(method)) {
      if (path === '/' || path === '/healthz' || path === '/readyz' || path === '/livez') return { access: 'public', rule: `qdrant: ${path} is public` }
      return { access: 'read', rule: 'qdrant: GET/HEAD is a read' }
    }
    if (method === 'POST') {
      const m = /^\/collections\/([^/]+)\/points((?:\/[^/]+)*)$/.exec(path)
      if (m !== null && QDRANT_POINT_READS.has(m[2] ?? '')) return { access: 'read', rule: `qdrant: POST ${path} is a read` }
    }
    return { access: 'write', rule: `qdrant: ${method} ${path} is a write` }
  },
  classifyGrpc(path) {
    if (path === '/qdrant.Qdrant/HealthCheck') return { access: 'public', rule: `qdrant: gRPC ${path} is public` }
    return qdrantGrpc(path)
  },
}

/** The profile of a name. */
export function profileFor(name: ProfileName): Profile {
  switch (name) {
    case 'generic':
      return GENERIC
    case 'weaviate':
      return WEAVIATE
    case 'qdrant':
      return QDRANT
  }
}
