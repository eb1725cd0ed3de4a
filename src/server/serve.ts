/**
 * Start and stop gatehouse: both listeners, TLS and its rotation, and the graceful drain
 * (SIGTERM: stop accepting, finish in-flight requests within a grace period, then close).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import http, { STATUS_CODES } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { createAdminHandler } from '../admin/api.ts'
import type { Readiness } from '../admin/routes.ts'
import type { JwtVerifier } from '../auth/authenticate.ts'
import { createOidc, type OidcRuntime } from '../auth/oidc/setup.ts'
import { formatProblem, loadConfig, type LoadOptions } from '../config/load.ts'
import { openStore, type OpenedStore } from '../store/open.ts'
import type { IssuerStore } from '../store/store.ts'
import { OutboundTrust } from '../upstream/trust.ts'
import { CertManager } from '../tls/certs.ts'
import { TicketKeys } from '../tls/ticketKeys.ts'
import { compile, createForwarder } from '../compose.ts'
import { writeNewKeysFile } from '../config/keys.ts'
import type { Config } from '../config/types.ts'
import { errorBody, GatehouseError, type ErrorCode } from '../errors.ts'
import type { Logger } from '../log.ts'
import { createHandler, type Live, type ServeState } from '../pipeline/handler.ts'
import { planReload, touches } from './reload.ts'
import type { CertSource } from '../tls/tls.ts'
// HTTP/2, gRPC, WebSocket
import { createGrpcHandler } from '../pipeline/grpc.ts'
import { createUpgradeHandler } from '../pipeline/upgrade.ts'
import { createGrpcUpstream } from '../upstream/grpc.ts'
import { createDataH2, createGrpcListener, routeAlpn, routeH2c, type H2Sessions } from './h2.ts'
import { overflowInRequestLine, requestLineProblem, trackRequestLines } from './requestLine.ts'
// Metrics (docs/metrics.md)
import { observeAudit } from '../log.ts'
import { Metrics } from '../metrics/metrics.ts'
import { instrumentStore } from '../metrics/store.ts'
import { joinClusterMetrics } from '../metrics/cluster.ts'
import { STATE_STORE_OPERATIONS } from '../store/store.ts'
import { resolveSecret } from '../compose.ts'
import type { MetricsEndpoint } from '../admin/api.ts'

/** A running gatehouse. */
export interface RunningServer {
  readonly dataUrl: string
  readonly adminUrl: string | undefined
  /** The gRPC-only listener (`grpcListener.enabled`), e.g. `https://127.0.0.1:50051`. */
  readonly grpcUrl?: string | undefined
  readonly state: ServeState
  /** The certificate in use (undefined when TLS is off). */
  readonly cert: CertSource | undefined
  /** Drain and stop: stop accepting, wait for in-flight requests up to `graceMs`, close. */
  stop(graceMs?: number): Promise<void>
  /** Reload the configuration file (SIGHUP); a bad one is rejected and the old one keeps serving. */
  reload(): Promise<ReloadResult>
  /** What the admin listener's `/readyz` is waiting for now (the same checks); empty when it answers 200. */
  notReady(): readonly NotReady[]
}

/** One unmet readiness check of `/readyz`. */
export interface NotReady {
  readonly check: 'listeners' | 'state' | 'draining' | 'oidc issuer'
  /** The issuer whose keys are missing (`oidc issuer`). */
  readonly issuer?: string
  /** Why its last fetch failed, when it did. */
  readonly lastError?: string
}

/** The outcome of a reload. */
export interface ReloadResult {
  readonly ok: boolean
  /** Every problem of a rejected configuration, formatted as `config check` prints them. */
  readonly problems: readonly string[]
  readonly changed: readonly string[]
  readonly restartRequired: readonly string[]
}

/**
 * Listener options from the config. Node's requestTimeout would cut a long upload after 300 s;
 * bodies may be large and slow, so the header phase is bounded (headersTimeout) and the body by
 * its idle time (handler). `maxHeadersCount` is one above the limit so the handler can see the
 * excess and answer 431 instead of Node silently dropping the extra headers.
 */
function serverOptions(c: Config): http.ServerOptions {
  const t = c.listen.timeouts
  return {
    requestTimeout: 0,
    headersTimeout: t.headers,
    keepAliveTimeout: t.keepAlive,
    // Node checks the header deadline only every connectionsCheckingInterval (default 30 s).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(t.headers / 4))),
    // The parser bounds the whole head (request line + fields); the handler then checks the
    // target (414) and the fields (431) against their own limits.
    maxHeaderSize: c.limits.maxHeaderBytes + c.limits.maxUrlBytes,
    // RFC 9112 §3.2: a request without Host is 400 (Node's default, kept explicit).
    requireHostHeader: true,
  }
}

export interface StartOptions {
  /** The state store (a worker's IPC store); default: the one `store.url` names (docs/replicas.md). */
  readonly store?: IssuerStore
  /** How a reload loads the configuration again (default: the same file, process.env). */
  readonly load?: LoadOptions
  /** A worker of `workers: N`: `/metrics` answers the primary's sum over every worker. */
  readonly clusterMetrics?: boolean
  /** A worker of `workers: N`: the primary's session-ticket key; default: this process rotates its own. */
  readonly ticketKeys?: TicketKeys
}

/** Start both listeners with a validated config. */
export async function startServer(config: Config, logger: Logger, opts: StartOptions = {}): Promise<RunningServer> {
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 })
  const k = config.authentication.apikey
  if (k.enabled && k.allowedKeysFile !== undefined && k.generateIfMissing && !existsSync(k.allowedKeysFile)) {
    writeNewKeysFile(k.allowedKeysFile)
    logger.info({ file: k.allowedKeysFile }, 'generated an API key (generateIfMissing); it is the last line of this file')
  }
  // Counted only when enabled: with metrics off, nothing on the request path counts anything.
  const metrics = config.metrics.enabled ? new Metrics({ storeBackend: config.store.url === 'file:' ? 'file' : 'redis', storeOps: STATE_STORE_OPERATIONS }) : undefined
  if (metrics !== undefined) observeAudit(logger, (f) => metrics.audit(f.event, f.outcome, f.reason, f.extra))
  // store.url picks the store (file: in stateDir, or a shared Redis); a worker's IPC store is given.
  const l = config.authentication.local
  const opened = opts.store === undefined ? await openStore(config.store, config.stateDir, logger, l.refreshTokenLifetime + l.accessTokenLifetime) : undefined
  const store: IssuerStore = withStoreMetrics(opts.store ?? (opened as OpenedStore).store, metrics)
  const trust = await OutboundTrust.open(store)
  // Loaded only with local users on: it brings jose and the directory client (docs/benchmarks.md, "Footprint").
  const local = config.authentication.local.enabled ? await import('../issuer/localIssuer.ts') : undefined
  const issuer = local === undefined ? undefined : await local.LocalIssuer.open(config, store, logger, { extraCa: () => trust.extraCa })
  const jwksCounts = metrics === undefined ? undefined : (issuer: string) => metrics.jwksCounts(issuer)
  let oidc = await createOidc(config, logger, { trust, counts: jwksCounts })
  oidc.start()
  const verifiersOf = (o: OidcRuntime): Map<string, JwtVerifier> => {
    const v = new Map<string, JwtVerifier>(o.verifiers)
    if (issuer !== undefined) v.set(issuer.iss, issuer)
    return v
  }
  const live: { current: Live } = { current: { runtime: compile(config, verifiersOf(oidc), undefined, metrics), forwarder: createForwarder(config, trust) } }
  const state: ServeState = { draining: false, inflight: 0 }
  const readiness: Readiness = { listeners: false, state: false, issuers: () => oidc.status(), ...(opened === undefined ? {} : { store: () => opened.health() }) }
  const handler = createHandler({ live, logger, state, store, issuer, metrics })
  const h1Handler = checkRequestLine(handler)
  const certs = config.tls.enabled ? await CertManager.open(config, store, logger) : undefined
  // One ticket key for every listener (and, through the primary, every worker): a session resumes anywhere.
  const tickets = certs === undefined ? undefined : (opts.ticketKeys ?? TicketKeys.rotating(config.tls.ticketKeyRotation))
  // Filled in once the listeners are bound (the web console's status page shows them).
  const urls: { data?: string; admin?: string; grpc?: string } = {}
  const adminHandler = createAdminHandler({
    state,
    readiness,
    logger,
    issuer,
    certs,
    trust,
    accessLog: config.log.access,
    tokenLifetimes: { accessMs: config.authentication.local.accessTokenLifetime, refreshMs: config.authentication.local.refreshTokenLifetime },
    live,
    store,
    urls,
    metrics: metricsEndpoint(config, metrics, opts.clusterMetrics === true),
  })

  let data: http.Server
  let admin: http.Server | undefined
  // ALPN offers h2 next to http/1.1 on the data listener (docs/http2.md)
  const alpn = config.http2.enabled ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}
  if (certs !== undefined) {
    const tlsOpts = { ...(await certs.options()), ...tickets?.options() }
    data = https.createServer({ ...tlsOpts, ...serverOptions(config), ...alpn }, h1Handler)
    if (config.admin.enabled) admin = https.createServer({ ...tlsOpts, ...serverOptions(config) }, adminHandler)
  } else {
    data = http.createServer(serverOptions(config), h1Handler)
    if (config.admin.enabled) admin = http.createServer(serverOptions(config), adminHandler)
  }
  data.maxHeadersCount = config.limits.maxHeaderCount + 1
  // No automatic "100 Continue": the handler sends it once the request is authorized.
  data.on('checkContinue', h1Handler)
  // After Node's own listener (the parser is attached then) and before the h2c/ALPN routers
  // collect the HTTP/1.1 listeners.
  data.on(certs !== undefined ? 'secureConnection' : 'connection', trackRequestLines)
  for (const s of [data, admin]) {
    s?.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Malformed HTTP never reaches the pipeline (llhttp rejects smuggling shapes, bad request
      // lines, oversized headers). Answer with the JSON error of SPEC §9 and close.
      logger.debug({ code: err.code }, 'client error')
      if (!socket.writable || socket.destroyed) {
        socket.destroy()
        return
      }
      let code = CLIENT_ERRORS[err.code ?? ''] ?? 'ERR_BAD_REQUEST'
      if (s === data && err.code === 'HPE_HEADER_OVERFLOW' && overflowInRequestLine(socket, (err as { rawPacket?: Buffer }).rawPacket, live.current.runtime.limits.maxUrlBytes)) code = 'ERR_URL_TOO_LONG'
      socket.end(rawError(new GatehouseError(code, { detail: err.code })))
    })
  }

  // --- HTTP/2 + gRPC on the data listener, WebSocket upgrades, the gRPC-only listener
  const grpcUpstream = config.upstream.grpcUrl === undefined || config.upstream.grpcUrl === '' ? undefined : createGrpcUpstream({ url: config.upstream.grpcUrl, caFile: config.upstream.caFile, trust, connectTimeout: config.upstream.timeouts.connect })
  // Read at request time: a reload swaps live.current (grpcUrl itself is bound at start).
  const h2Live = (): Live & { grpc: typeof grpcUpstream } => ({ ...live.current, grpc: grpcUpstream })
  const onGrpc = createGrpcHandler({ live: h2Live, logger, state, metrics })
  const h2Servers: H2Sessions[] = []
  if (config.http2.enabled) {
    const h2 = createDataH2(certs !== undefined, config.http2, handler, onGrpc, logger)
    h2Servers.push(h2)
    if (certs !== undefined) routeAlpn(data as https.Server, h2)
    else routeH2c(data, h2, config.listen.timeouts.headers)
  }
  const upgrades = createUpgradeHandler({ live: h2Live, logger, state, handler, trust, metrics })
  data.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const problem = requestLineProblem(req)
    if (problem === undefined) return upgrades.onUpgrade(req, socket, head)
    logger.debug({ detail: problem }, 'client error')
    socket.on('error', () => {})
    socket.end(rawError(new GatehouseError('ERR_BAD_REQUEST', { detail: problem })))
  })
  let grpcServer: H2Sessions | undefined
  if (config.grpcListener.enabled) {
    grpcServer = createGrpcListener(certs === undefined ? undefined : { ...(await certs.options()), ...tickets?.options() }, config.http2, onGrpc, logger)
    h2Servers.push(grpcServer)
  }
  // --- end HTTP/2, gRPC, WebSocket

  await listen(data, config.listen.port, config.listen.address)
  if (grpcServer !== undefined) {
    try {
      await listen(grpcServer.server as unknown as http.Server, config.grpcListener.port, config.grpcListener.address)
    } catch (e) {
      data.close()
      oidc.stop()
      throw e
    }
  }
  if (admin !== undefined) {
    try {
      await listen(admin, config.admin.port, config.admin.address)
    } catch (e) {
      data.close()
      oidc.stop()
      throw e
    }
  }
  const scheme = config.tls.enabled ? 'https' : 'http'
  const url = (s: http.Server, addr: string): string => {
    const a = s.address() as AddressInfo
    const host = addr === '0.0.0.0' || addr === '::' ? 'localhost' : addr.includes(':') ? `[${addr}]` : addr
    return `${scheme}://${host}:${a.port}`
  }
  const dataUrl = url(data, config.listen.address)
  const adminUrl = admin === undefined ? undefined : url(admin, config.admin.address)
  const tlsServers = [data as https.Server, ...(admin === undefined ? [] : [admin as https.Server]), ...(grpcServer === undefined ? [] : [grpcServer.server as unknown as https.Server])]
  tickets?.attach(tlsServers)
  certs?.attach(tickets === undefined ? tlsServers : tlsServers.map((s) => tickets.keepKeyOn(s)))
  const grpcListenerUrl = grpcServer === undefined ? undefined : url(grpcServer.server as unknown as http.Server, config.grpcListener.address)
  Object.assign(urls, { data: dataUrl, admin: adminUrl, grpc: grpcListenerUrl })
  // Gauges read at scrape time: nothing on the request path keeps them.
  if (metrics !== undefined) {
    metrics.sources = {
      connections: async () => ({
        data: await openConnections(data),
        ...(grpcServer === undefined ? {} : { grpc: await openConnections(grpcServer.server as unknown as http.Server) }),
        ...(admin === undefined ? {} : { admin: await openConnections(admin) }),
      }),
      h2Streams: () => h2Servers.reduce((n, h) => n + h.streams.open, 0),
      jwks: () => oidc.status().map((s) => ({ issuer: s.issuer, fetchedAt: s.fetchedAt })),
    }
  }
  // Another worker changed a runtime setting: apply it here too.
  store.onSettingChange?.((key) => {
    if (key === 'tls') void certs?.reload()
    if (key === 'caCert') void trust.reload()
    // Another replica or worker rotated the local issuer's signing key (docs/security.md, "Signing keys").
    if (local !== undefined && (key === local.SIGNING_KEY_RING || key === local.SIGNING_KEY_NOTICE)) issuer?.reloadSigningKeys().catch((e: unknown) => logger.warn({ error: (e as Error).message }, 'could not load the rotated signing keys; an unknown kid loads them again'))
  })
  // Reload (SIGHUP, or a watched file changed): load and validate anew; apply only a valid
  // config, swapping runtime and forwarder as one unit between two requests. In-flight requests
  // finish on what they started with; the old forwarder closes once they are done.
  let reloading: Promise<ReloadResult> | undefined
  const reload = (): Promise<ReloadResult> => {
    // Reloads never overlap; one asked for during a reload runs after it (it may see a newer file).
    const run = async (): Promise<ReloadResult> => {
      const r = loadConfig(opts.load ?? { configPath: config.configFile })
      if (r.config === undefined || r.problems.length > 0) {
        logger.error({ problems: r.problems.map(formatProblem) }, `reload rejected: the configuration has ${r.problems.length} problem(s); still serving the previous configuration`)
        return { ok: false, problems: r.problems.map(formatProblem), changed: [], restartRequired: [] }
      }
      const running = live.current.runtime.config
      const plan = planReload(running, r.config)
      const next = plan.config
      try {
        let nextOidc = oidc
        if (touches(plan.changed, 'authentication.oidc', 'authentication.tokenCache')) {
          nextOidc = await createOidc(next, logger, { trust, counts: jwksCounts })
          nextOidc.start()
        }
        const k = next.authentication.apikey
        if (k.enabled && k.allowedKeysFile !== undefined && k.generateIfMissing && !existsSync(k.allowedKeysFile)) writeNewKeysFile(k.allowedKeysFile)
        const runtime = compile(next, verifiersOf(nextOidc), live.current.runtime, metrics)
        const forwarderChanged = touches(plan.changed, 'upstream', 'limits')
        const forwarder = forwarderChanged ? createForwarder(next, trust) : live.current.forwarder
        const old = live.current
        live.current = { runtime, forwarder }
        if (nextOidc !== oidc) {
          oidc.stop()
          oidc = nextOidc
        }
        logger.level = next.log.level
        if (forwarderChanged) void old.forwarder.close().catch(() => {})
      } catch (e) {
        const problem = e instanceof Error ? e.message : String(e)
        logger.error({ error: problem }, 'reload rejected: the new configuration could not be applied; still serving the previous configuration')
        return { ok: false, problems: [problem], changed: [], restartRequired: [] }
      }
      if (plan.restartRequired.length > 0) logger.warn({ keys: plan.restartRequired }, 'these changes take effect only after a restart; their running values are kept')
      logger.info({ changed: plan.changed }, plan.changed.length === 0 ? 'reloaded: nothing changed' : 'reloaded the configuration')
      return { ok: true, problems: [], changed: plan.changed, restartRequired: plan.restartRequired }
    }
    const p = (reloading ?? Promise.resolve()).then(run, run)
    reloading = p
    return p
  }
  const stopConfigWatch = config.reload.watch ? watchFiles(() => watchedFiles(live.current.runtime.config), config.reload.watchInterval, () => void reload()) : () => {}
  const stopWatching = (): void => {
    certs?.stop()
    tickets?.stop()
    stopConfigWatch()
  }
  readiness.listeners = true
  readiness.state = true

  let stopping: Promise<void> | undefined
  const stop = (graceMs = config.shutdown.gracePeriod): Promise<void> => {
    stopping ??= (async () => {
      state.draining = true
      logger.info({ inflight: state.inflight, graceMs }, 'draining: no new connections; waiting for in-flight requests')
      const closed = new Promise<void>((resolve) => data.close(() => resolve()))
      data.closeIdleConnections()
      // HTTP/2 sessions get GOAWAY (streams in flight finish); the gRPC listener stops accepting.
      const grpcClosed = grpcServer === undefined ? Promise.resolve() : new Promise<void>((resolve) => (grpcServer as H2Sessions).server.close(() => resolve()))
      for (const h of h2Servers) h.drain()
      const deadline = Date.now() + graceMs
      while (state.inflight > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25))
        data.closeIdleConnections()
      }
      if (state.inflight > 0) logger.warn({ inflight: state.inflight }, 'grace period over; closing the remaining connections')
      data.closeAllConnections()
      for (const h of h2Servers) h.destroyAll()
      upgrades.closeAll()
      await closed
      await grpcClosed
      await grpcUpstream?.close()
      stopWatching()
      oidc.stop()
      if (admin !== undefined) {
        const a = admin
        await new Promise<void>((resolve) => {
          a.close(() => resolve())
          a.closeAllConnections()
        })
      }
      await live.current.forwarder.close()
      await opened?.close()
      logger.info('stopped')
    })()
    return stopping
  }

  // The checks of /readyz (admin/api.ts), for the start-up log: "ready" only once they all pass.
  const notReady = (): NotReady[] => {
    const out: NotReady[] = []
    if (!readiness.listeners) out.push({ check: 'listeners' })
    if (!readiness.state) out.push({ check: 'state' })
    if (state.draining) out.push({ check: 'draining' })
    for (const i of readiness.issuers()) if (!i.ready) out.push({ check: 'oidc issuer', issuer: i.issuer, ...(i.lastError === undefined ? {} : { lastError: i.lastError }) })
    return out
  }

  return { dataUrl, adminUrl, grpcUrl: grpcListenerUrl, state, cert: certs?.fileSource, stop, reload, notReady }
}

/** Files whose change triggers a reload when `reload.watch` is on. */
function watchedFiles(c: Config): string[] {
  const files: string[] = []
  if (c.configFile !== undefined) files.push(c.configFile)
  const keys = c.authentication.apikey.allowedKeysFile
  if (c.authentication.apikey.enabled && keys !== undefined) files.push(keys)
  return files
}

/**
 * Poll files (stat, not fs.watch: a Kubernetes ConfigMap or Secret is replaced through a symlink
 * swap that inotify on the old target does not report) and call `onChange` when one differs.
 */
function watchFiles(files: () => string[], intervalMs: number, onChange: () => void): () => void {
  const sig = (): string =>
    files()
      .map((f) => {
        try {
          const st = statSync(f)
          return `${f}:${st.mtimeMs}:${st.size}:${st.ino}`
        } catch {
          return `${f}:missing`
        }
      })
      .join('|')
  let last = sig()
  const timer = setInterval(() => {
    const now = sig()
    if (now === last) return
    last = now
    onChange()
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** Node's client errors with their own status; every other parse error is 400. */
const CLIENT_ERRORS: Readonly<Record<string, ErrorCode>> = {
  HPE_HEADER_OVERFLOW: 'ERR_HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'ERR_REQUEST_TIMEOUT',
}

/** A complete HTTP/1.1 error response (SPEC §9 JSON) that closes the connection, for a raw socket. */
function rawError(e: GatehouseError): string {
  const body = JSON.stringify(errorBody(e, randomUUID()))
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
}

/**
 * The HTTP/1.x data handler behind the request-line checks llhttp leaves out (repeated spaces,
 * versions other than 1.0/1.1): 400 and the connection closed, before any stage runs. Requests
 * already pipelined behind a refused one on the same connection are refused too, never forwarded.
 */
function checkRequestLine(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const refused = new WeakSet<object>()
  return (req, res) => {
    const problem = refused.has(req.socket) ? 'a request pipelined behind a refused one' : requestLineProblem(req)
    if (problem === undefined) {
      handler(req, res)
      return
    }
    refused.add(req.socket)
    const e = new GatehouseError('ERR_BAD_REQUEST', { detail: problem })
    const body = JSON.stringify(errorBody(e, randomUUID()))
    res.shouldKeepAlive = false
    res.writeHead(e.status, { 'content-type': 'application/json', 'cache-control': 'no-store', connection: 'close', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
}

/** The store, timed and counted per operation when metrics are on (metrics/store.ts). */
function withStoreMetrics(store: IssuerStore, metrics: Metrics | undefined): IssuerStore {
  return metrics === undefined ? store : instrumentStore(store, STATE_STORE_OPERATIONS, metrics)
}

/** `/metrics` for the admin listener: this process's registry, or the workers' sum. */
function metricsEndpoint(c: Config, metrics: Metrics | undefined, cluster: boolean): MetricsEndpoint | undefined {
  if (metrics === undefined) return undefined
  const m = c.metrics
  const bearerToken = m.bearerToken ?? (m.bearerTokenFile === undefined ? undefined : resolveSecret({ file: m.bearerTokenFile }))
  // An empty token file never means "open": config validation refuses it, and so does this.
  if (bearerToken === '') throw new Error('metrics.bearerTokenFile is empty: put the scrape token in it')
  return { bearerToken, contentType: metrics.contentType, text: cluster ? joinClusterMetrics(metrics) : () => metrics.text() }
}

function openConnections(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((e, n) => resolve(e === null ? n : 0)))
}

function listen(server: http.Server, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e)
    server.once('error', onError)
    server.listen(port, address, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
