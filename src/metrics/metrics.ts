/**
 * The metrics of one gatehouse (docs/metrics.md), read by `GET /metrics` on the admin listener.
 *
 * The hot path never calls prom-client: it adds to gatehouse's own pre-sized arrays, indexed by
 * label values from small fixed sets (protocol, status class, auth method, decision, profile,
 * reason code). prom-client reads them when a scrape asks (each metric's `get()`), formats the
 * Prometheus text, adds the process metrics and sums the workers' registries. So a request
 * costs a few array additions and no allocation, and label cardinality is bounded by
 * construction: no path, user name, token or client-sent value ever becomes a label value.
 */
import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'
import type { Metric, Registry } from 'prom-client'
import { ERRORS } from '../errors.ts'

/** What a request arrived as; the `protocol` label. */
export const PROTOCOLS = ['http1', 'h2', 'grpc', 'websocket'] as const
export type Protocol = (typeof PROTOCOLS)[number]
/** Index of each protocol in the arrays (the hot path passes the number). */
export const PROTOCOL = { http1: 0, h2: 1, grpc: 2, websocket: 3 } as const

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none'] as const
const AUTH_METHODS = ['apikey', 'oidc', 'local', 'anonymous', 'none', 'other'] as const
/** What gatehouse decided about a request; the `decision` label (docs/metrics.md). */
export const DECISIONS = ['allowed', 'unauthenticated', 'forbidden', 'throttled', 'invalid', 'error', 'own', 'none'] as const
const PROFILES = ['generic', 'weaviate', 'qdrant', 'other'] as const

const AUTH_INDEX: Readonly<Record<string, number>> = indexOf(AUTH_METHODS)
const PROFILE_INDEX: Readonly<Record<string, number>> = indexOf(PROFILES)

/** Reason codes counted as authentication failures: every code answered 401 (errors.ts). */
const AUTH_FAILURE_REASONS: readonly string[] = Object.entries(ERRORS)
  .filter(([, spec]) => spec.status === 401)
  .map(([code]) => code)
const AUTH_FAILURE_INDEX: Readonly<Record<string, number>> = indexOf(AUTH_FAILURE_REASONS)

/** Request and upstream duration buckets (seconds). */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** Store operation latency buckets (seconds). */
export const STORE_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Login outcomes; the `outcome` label of `gatehouse_logins_total`. */
const LOGIN_OUTCOMES = ['success', 'wrong_password', 'locked', 'throttled', 'invalid', 'error'] as const
/** Where a login came from; the `via` label. */
const LOGIN_VIA = ['api', 'console', 'browser_local', 'browser_oidc', 'other'] as const
/** What ended earlier tokens; the `cause` label of `gatehouse_revocations_total`. */
const REVOCATION_CAUSES = ['revoke', 'refresh_reuse', 'password_change', 'role_change', 'user_deleted'] as const

/** `a[i] += v` (the arrays are sized for every index used). */
function add(a: Float64Array, i: number, v: number): void {
  a[i] = (a[i] as number) + v
}

function indexOf(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = Object.create(null) as Record<string, number>
  values.forEach((v, i) => (out[v] = i))
  return out
}

/** Counters a token cache adds to (auth/tokenCache.ts); plain numbers, no call per look-up. */
export interface CacheCounts {
  hits: number
  misses: number
}

/** Counters a failure throttle adds to (auth/throttle.ts): an address became blocked. */
export interface BlockCounts {
  blocks: number
}

/** Counters one issuer's JWKS cache adds to (auth/oidc/jwksCache.ts). */
export interface FetchCounts {
  fetches: number
  failures: number
}

const require = createRequire(import.meta.url)

/** prom-client's `Registry.PROMETHEUS_CONTENT_TYPE` (text format 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * prom-client, loaded when a registry is first needed (a scrape, or a cluster worker joining the
 * sum), not by every process that imports the constants above: ~80 modules with its
 * OpenTelemetry dependency (docs/benchmarks.md, "Footprint"). A CommonJS require keeps it
 * synchronous.
 */
export function promClient(): typeof PromClient {
  return require('prom-client') as typeof PromClient
}

/** One labelled sample as prom-client's registry takes it. */
interface Sample {
  readonly value: number
  readonly labels: Record<string, string | number>
  readonly metricName?: string
}

/** A metric whose samples are computed at scrape time (prom-client reads `get()`). */
interface Collected {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram'
  readonly aggregator: 'sum' | 'max' | 'min' | 'first' | 'omit'
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }>
}

/** A histogram kept as plain arrays: `series` label sets × (buckets + 1) counts, sums. */
class Hist {
  readonly bounds: readonly number[]
  readonly counts: Float64Array
  readonly sums: Float64Array
  readonly totals: Float64Array
  constructor(bounds: readonly number[], series: number) {
    this.bounds = bounds
    this.counts = new Float64Array(series * (bounds.length + 1))
    this.sums = new Float64Array(series)
    this.totals = new Float64Array(series)
  }

  observe(series: number, seconds: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && seconds > (b[i] as number)) i++
    add(this.counts, series * (b.length + 1) + i, 1)
    add(this.sums, series, seconds)
    add(this.totals, series, 1)
  }

  samples(name: string, series: number, labels: Record<string, string>): Sample[] {
    const out: Sample[] = []
    const b = this.bounds
    const base = series * (b.length + 1)
    let cum = 0
    for (let i = 0; i <= b.length; i++) {
      cum += this.counts[base + i] as number
      out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < b.length ? (b[i] as number) : '+Inf' }, value: cum })
    }
    out.push({ metricName: `${name}_sum`, labels, value: this.sums[series] as number })
    out.push({ metricName: `${name}_count`, labels, value: this.totals[series] as number })
    return out
  }
}

/** Gauges read at scrape time from the running server (connections, streams, key age). */
export interface MetricsSources {
  /** Open TCP (or TLS) connections per listener. */
  connections?(): Promise<Readonly<Record<string, number>>>
  /** Open HTTP/2 streams (data listener and gRPC listener). */
  h2Streams?(): number
  /** Per configured OIDC issuer: when its keys were last fetched (ms since epoch), if ever. */
  jwks?(): readonly { readonly issuer: string; readonly fetchedAt: number | undefined }[]
}

/** The metrics of one gatehouse. Create one per server, only when `metrics.enabled`. */
export class Metrics {
  #registry: Registry | undefined
  readonly #defaultMetrics: boolean
  /** The verified-token cache's counters (compose.ts hands them to the cache). */
  readonly tokenCache: CacheCounts = { hits: 0, misses: 0 }
  /** The data listener's failed-credential throttle (auth/throttle.ts). */
  readonly credentialThrottle: BlockCounts = { blocks: 0 }
  /** Where gauges read from; set by the server once its listeners exist. */
  sources: MetricsSources = {}

  readonly #requests: Float64Array
  readonly #duration = new Hist(DURATION_BUCKETS, PROTOCOLS.length)
  readonly #upstream = new Hist(DURATION_BUCKETS, PROTOCOLS.length)
  readonly #authFailures = new Float64Array(AUTH_FAILURE_REASONS.length)
  /** Requests refused 429 by a throttle: [credentials, login]. */
  readonly #throttleRefusals = new Float64Array(2)
  /** Addresses the login throttle blocked (the credentials throttle's are in credentialThrottle). */
  #loginBlocks = 0
  readonly #logins = new Float64Array(LOGIN_VIA.length * LOGIN_OUTCOMES.length)
  #lockouts = 0
  readonly #revocations = new Float64Array(REVOCATION_CAUSES.length)
  readonly #audit = new Map<string, number>()
  readonly #jwks = new Map<string, FetchCounts>()
  readonly #storeBackend: string
  readonly #storeOps = new Map<string, { calls: number; errors: number; index: number }>()
  readonly #storeLatency: Hist
  readonly #storeNames: readonly string[]

  /**
   * @param storeBackend the `backend` label of the store metrics (`file` or `redis`)
   * @param storeOps the store operations timed (a fixed list from store/store.ts)
   */
  constructor(opts: { storeBackend: string; storeOps: readonly string[]; defaultMetrics?: boolean }) {
    this.#defaultMetrics = opts.defaultMetrics !== false
    this.#requests = new Float64Array(PROTOCOLS.length * STATUS_CLASSES.length * AUTH_METHODS.length * DECISIONS.length * PROFILES.length)
    this.#storeBackend = opts.storeBackend
    this.#storeNames = opts.storeOps
    opts.storeOps.forEach((op, index) => this.#storeOps.set(op, { calls: 0, errors: 0, index }))
    this.#storeLatency = new Hist(STORE_BUCKETS, opts.storeOps.length)
  }

  /**
   * prom-client's registry, built at the first scrape (or when the cluster's aggregation needs
   * it): a process nobody scrapes never loads prom-client (~3 MiB resident, docs/benchmarks.md,
   * "Footprint"). The counts live in the arrays above from the start; prom-client's process
   * metrics (GC durations, event-loop lag) are collected from the first scrape on.
   */
  get registry(): Registry {
    if (this.#registry !== undefined) return this.#registry
    const { collectDefaultMetrics, Registry } = promClient()
    const r = new Registry()
    if (this.#defaultMetrics) collectDefaultMetrics({ register: r })
    for (const m of this.#collected()) r.registerMetric(m as unknown as Metric)
    this.#registry = r
    return r
  }

  /**
   * One finished request on the data (or gRPC) listener: called once, where its access line is
   * written. `status` is the HTTP status (0: nothing was answered). `authenticated`: a
   * principal was established (the decision is `allowed` unless the reason says otherwise);
   * `own`: one of gatehouse's own routes answered it. Durations in seconds; `upstreamSeconds`
   * only when the upstream answered.
   */
  request(protocol: number, status: number, method: string | undefined, reason: string | undefined, authenticated: boolean, own: boolean, profile: string, seconds: number, upstreamSeconds: number | undefined): void {
    const sc = status >= 100 && status < 600 ? ((status / 100) | 0) - 1 : 5
    this.record(protocol, sc, method, reason, authenticated, own, profile, seconds, upstreamSeconds)
  }

  /** As `request`, with the status class index given (0 = 1xx … 4 = 5xx, 5 = none). */
  record(protocol: number, statusClass: number, method: string | undefined, reason: string | undefined, authenticated: boolean, own: boolean, profile: string, seconds: number, upstreamSeconds: number | undefined): void {
    const auth = method === undefined ? 4 : (AUTH_INDEX[method] ?? 5)
    let decision: number
    if (reason === undefined) decision = authenticated ? 0 : own ? 6 : 7
    else if (reason === 'ERR_FORBIDDEN' || reason === 'ERR_PASSWORD_CHANGE_REQUIRED') decision = 2
    else if (reason === 'ERR_TOO_MANY_FAILURES') {
      decision = 3
      add(this.#throttleRefusals, 0, 1)
    } else {
      const f = AUTH_FAILURE_INDEX[reason]
      if (f !== undefined) {
        decision = 1
        add(this.#authFailures, f, 1)
      } else if (authenticated) decision = 0
      else decision = ((ERRORS as Record<string, { status: number } | undefined>)[reason]?.status ?? 500) >= 500 ? 5 : 4
    }
    const p = PROFILE_INDEX[profile] ?? 3
    add(this.#requests, (((protocol * STATUS_CLASSES.length + statusClass) * AUTH_METHODS.length + auth) * DECISIONS.length + decision) * PROFILES.length + p, 1)
    this.#duration.observe(protocol, seconds)
    if (upstreamSeconds !== undefined) this.#upstream.observe(protocol, upstreamSeconds)
  }

  /**
   * One audit line (log.ts `audit`): logins by outcome, lockouts, revocations, login-throttle
   * blocks, and every event by name and outcome. Event names are gatehouse's own constants;
   * the reason is mapped onto a fixed set, never used as a label itself.
   */
  audit(event: string, outcome: 'success' | 'failure', reason: string | undefined, extra: Readonly<Record<string, unknown>> | undefined): void {
    const key = `${event}\u0000${outcome}`
    this.#audit.set(key, (this.#audit.get(key) ?? 0) + 1)
    switch (event) {
      case 'login':
      case 'browser.sign_in': {
        const via = event === 'login' ? (extra?.via === 'console' ? 1 : extra?.via === undefined ? 0 : 4) : extra?.method === 'local' ? 2 : extra?.method === 'oidc' ? 3 : 4
        add(this.#logins, via * LOGIN_OUTCOMES.length + loginOutcome(outcome, reason), 1)
        if (outcome === 'failure' && reason === 'ERR_TOO_MANY_FAILURES') add(this.#throttleRefusals, 1, 1)
        break
      }
      case 'account.locked':
        this.#lockouts++
        break
      case 'login.address_blocked':
        this.#loginBlocks++
        break
      case 'tokens.revoked':
        if (outcome === 'success') add(this.#revocations, 0, 1)
        break
      case 'refresh_token.reused':
        add(this.#revocations, 1, 1)
        break
      case 'password.changed':
        if (outcome === 'success') add(this.#revocations, 2, 1)
        break
      case 'user.role_changed':
        if (outcome === 'success') add(this.#revocations, 3, 1)
        break
      case 'user.deleted':
        if (outcome === 'success') add(this.#revocations, 4, 1)
        break
    }
  }

  /** The fetch counters of one configured OIDC issuer (created once per issuer at start). */
  jwksCounts(issuer: string): FetchCounts {
    let c = this.#jwks.get(issuer)
    if (c === undefined) {
      c = { fetches: 0, failures: 0 }
      this.#jwks.set(issuer, c)
    }
    return c
  }

  /** One store operation finished (store wrapper, metrics/store.ts). */
  storeOp(op: string, seconds: number, failed: boolean): void {
    const s = this.#storeOps.get(op)
    if (s === undefined) return
    s.calls++
    if (failed) s.errors++
    this.#storeLatency.observe(s.index, seconds)
  }

  /** The Prometheus text of this process. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  /** The Prometheus text format's type, prom-client's default (without loading it). */
  get contentType(): string {
    return PROMETHEUS_CONTENT_TYPE
  }

  #collected(): Collected[] {
    const counter = (name: string, help: string, values: () => Sample[] | Promise<Sample[]>, type: Collected['type'] = 'counter', aggregator: Collected['aggregator'] = 'sum'): Collected => ({
      name,
      help,
      type,
      aggregator,
      get: async () => ({ name, help, type, aggregator, values: await values() }),
    })
    return [
      counter('gatehouse_requests_total', 'Requests on the data and gRPC listeners, by protocol, status class, authentication method, decision and profile.', () => {
        const out: Sample[] = []
        const r = this.#requests
        for (let i = 0; i < r.length; i++) {
          const v = r[i] as number
          if (v === 0) continue
          let k = i
          const profile = PROFILES[k % PROFILES.length] as string
          k = (k / PROFILES.length) | 0
          const decision = DECISIONS[k % DECISIONS.length] as string
          k = (k / DECISIONS.length) | 0
          const auth = AUTH_METHODS[k % AUTH_METHODS.length] as string
          k = (k / AUTH_METHODS.length) | 0
          const status = STATUS_CLASSES[k % STATUS_CLASSES.length] as string
          k = (k / STATUS_CLASSES.length) | 0
          out.push({ labels: { protocol: PROTOCOLS[k] as string, status_class: status, auth_method: auth, decision, profile }, value: v })
        }
        return out
      }),
      counter('gatehouse_request_duration_seconds', 'Time from the request head to the end of the answer (a WebSocket: the tunnel’s lifetime), by protocol.', () => histSamples(this.#duration, 'gatehouse_request_duration_seconds'), 'histogram'),
      counter('gatehouse_upstream_duration_seconds', 'Time from forwarding a request to the end of the upstream’s answer (a WebSocket: to its 101), for requests the upstream answered, by protocol.', () => histSamples(this.#upstream, 'gatehouse_upstream_duration_seconds'), 'histogram'),
      counter('gatehouse_auth_failures_total', 'Requests refused 401 on the data and gRPC listeners, by reason code (docs/errors.md).', () =>
        AUTH_FAILURE_REASONS.map((reason, i) => ({ labels: { reason }, value: this.#authFailures[i] as number })),
      ),
      counter('gatehouse_token_cache_hits_total', 'JWTs answered from the verified-token cache.', () => [{ labels: {}, value: this.tokenCache.hits }]),
      counter('gatehouse_token_cache_misses_total', 'JWTs looked up in the verified-token cache and not found (then verified).', () => [{ labels: {}, value: this.tokenCache.misses }]),
      counter('gatehouse_throttle_blocks_total', 'Client addresses that became blocked: credentials (data listener failure throttle) or login (admin login throttle).', () => [
        { labels: { throttle: 'credentials' }, value: this.credentialThrottle.blocks },
        { labels: { throttle: 'login' }, value: this.#loginBlocks },
      ]),
      counter('gatehouse_throttle_refusals_total', 'Requests and logins refused 429 because their address is blocked.', () => [
        { labels: { throttle: 'credentials' }, value: this.#throttleRefusals[0] as number },
        { labels: { throttle: 'login' }, value: this.#throttleRefusals[1] as number },
      ]),
      counter('gatehouse_jwks_fetches_total', 'Key fetches (discovery and JWKS) per configured OIDC issuer.', () => [...this.#jwks].map(([issuer, c]) => ({ labels: { issuer }, value: c.fetches }))),
      counter('gatehouse_jwks_fetch_failures_total', 'Failed key fetches per configured OIDC issuer.', () => [...this.#jwks].map(([issuer, c]) => ({ labels: { issuer }, value: c.failures }))),
      counter(
        'gatehouse_jwks_key_age_seconds',
        'Seconds since the keys in use were fetched, per configured OIDC issuer (absent until the first success).',
        () => {
          const now = Date.now()
          return (this.sources.jwks?.() ?? []).filter((s) => s.fetchedAt !== undefined).map((s) => ({ labels: { issuer: s.issuer }, value: Math.max(0, (now - (s.fetchedAt as number)) / 1000) }))
        },
        'gauge',
        'max',
      ),
      counter('gatehouse_logins_total', 'Local-user logins by where they came from and outcome.', () => {
        const out: Sample[] = []
        LOGIN_VIA.forEach((via, v) => LOGIN_OUTCOMES.forEach((outcome, o) => {
          const value = this.#logins[v * LOGIN_OUTCOMES.length + o] as number
          if (value > 0 || via === 'api') out.push({ labels: { via, outcome }, value })
        }))
        return out
      }),
      counter('gatehouse_lockouts_total', 'Local accounts locked after too many failed logins.', () => [{ labels: {}, value: this.#lockouts }]),
      counter('gatehouse_revocations_total', 'Changes that ended earlier tokens, by cause.', () => REVOCATION_CAUSES.map((cause, i) => ({ labels: { cause }, value: this.#revocations[i] as number }))),
      counter('gatehouse_audit_events_total', 'Audit lines (docs/security.md) by event and outcome.', () =>
        [...this.#audit].map(([k, value]) => {
          const [event, outcome] = k.split('\u0000') as [string, string]
          return { labels: { event, outcome }, value }
        }),
      ),
      counter('gatehouse_store_operations_total', 'State store operations by name and backend.', () => this.#storeNames.map((op) => ({ labels: { operation: op, backend: this.#storeBackend }, value: this.#storeOps.get(op)?.calls ?? 0 })).filter((s) => s.value > 0)),
      counter('gatehouse_store_errors_total', 'State store operations that failed, by name and backend.', () => this.#storeNames.map((op) => ({ labels: { operation: op, backend: this.#storeBackend }, value: this.#storeOps.get(op)?.errors ?? 0 })).filter((s) => s.value > 0)),
      counter(
        'gatehouse_store_operation_duration_seconds',
        'State store operation latency by name and backend (workers on the file store: including the hop to the primary).',
        () => this.#storeNames.flatMap((op, i) => ((this.#storeOps.get(op)?.calls ?? 0) === 0 ? [] : this.#storeLatency.samples('gatehouse_store_operation_duration_seconds', i, { operation: op, backend: this.#storeBackend }))),
        'histogram',
      ),
      counter(
        'gatehouse_open_connections',
        'Open client connections per listener (data, grpc, admin).',
        async () => Object.entries((await this.sources.connections?.()) ?? {}).map(([listener, value]) => ({ labels: { listener }, value })),
        'gauge',
      ),
      counter('gatehouse_processes', 'Processes whose metrics this answer adds up: 1, or with workers: N the workers that answered the primary (fewer than N: a worker is missing from the sum).', () => [{ labels: {}, value: 1 }], 'gauge'),
      counter('gatehouse_open_h2_streams', 'Open HTTP/2 streams (data listener and gRPC listener).', () => [{ labels: {}, value: this.sources.h2Streams?.() ?? 0 }], 'gauge'),
    ]
  }
}

function histSamples(h: Hist, name: string): Sample[] {
  return PROTOCOLS.flatMap((protocol, i) => ((h.totals[i] as number) === 0 ? [] : h.samples(name, i, { protocol })))
}

function loginOutcome(outcome: 'success' | 'failure', reason: string | undefined): number {
  if (outcome === 'success') return 0
  switch (reason) {
    case 'ERR_LOGIN_FAILED':
      return 1
    case 'ERR_ACCOUNT_LOCKED':
      return 2
    case 'ERR_TOO_MANY_FAILURES':
      return 3
    case undefined:
      return 5
  }
  // Not a reason code (a CSRF refusal of the browser sign-in form): the request was invalid.
  const status = (ERRORS as Record<string, { status: number } | undefined>)[reason]?.status ?? 400
  return status < 500 ? 4 : 5
}

/** gRPC status → the status class of the equivalent HTTP answer (grpc-gateway's mapping). */
export function grpcStatusClass(grpcStatus: number | undefined): number {
  if (grpcStatus === undefined || grpcStatus < 0) return 5
  // OK → 2xx; CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
  // RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNAUTHENTICATED → 4xx; the rest 5xx.
  if (grpcStatus === 0) return 1
  return grpcStatus === 1 || grpcStatus === 3 || grpcStatus === 5 || grpcStatus === 6 || grpcStatus === 7 || grpcStatus === 8 || grpcStatus === 9 || grpcStatus === 10 || grpcStatus === 11 || grpcStatus === 16 ? 3 : 4
}
