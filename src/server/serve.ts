/**
 * Start and stop gatehouse: both listeners, TLS and its rotation, and the graceful drain
 * (SIGTERM: stop accepting, finish in-flight requests within a grace period, then close).
 */
import { existsSync, mkdirSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import http, { STATUS_CODES } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { createAdminHandler } from '../admin/api.ts'
import type { Readiness } from '../admin/routes.ts'
import type { JwtVerifier } from '../auth/authenticate.ts'
import { createOidc } from '../auth/oidc/setup.ts'
import { LocalIssuer } from '../issuer/localIssuer.ts'
import { FileStore } from '../store/fileStore.ts'
import type { IssuerStore } from '../store/store.ts'
import { OutboundTrust } from '../upstream/trust.ts'
import { CertManager } from './certs.ts'
import { compile, createForwarder } from '../config/compile.ts'
import { writeNewKeysFile } from '../config/keys.ts'
import type { Config } from '../config/types.ts'
import { errorBody, GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { createHandler, type ServeState } from '../pipeline/handler.ts'
import type { CertSource } from './tls.ts'
// issue 7: HTTP/2, gRPC, WebSocket
import { createGrpcHandler } from '../pipeline/grpc.ts'
import { createUpgradeHandler } from '../pipeline/upgrade.ts'
import { createGrpcUpstream } from '../upstream/grpc.ts'
import { createDataH2, createGrpcListener, routeAlpn, routeH2c, type H2Sessions } from './h2.ts'

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
}

// Node's defaults would cut a long upload after 300 s (requestTimeout); bodies may be large and
// slow, so only the header phase is bounded here (slow-client limits are hardened separately).
const SERVER_OPTIONS = { requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 5_000 } as const

export interface StartOptions {
  /** The state store (a worker's IPC store); default: the embedded file store in stateDir. */
  readonly store?: IssuerStore
}

/** Start both listeners with a validated config. */
export async function startServer(config: Config, logger: Logger, opts: StartOptions = {}): Promise<RunningServer> {
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 })
  const k = config.authentication.apikey
  if (k.enabled && k.allowedKeysFile !== undefined && k.generateIfMissing && !existsSync(k.allowedKeysFile)) {
    writeNewKeysFile(k.allowedKeysFile)
    logger.info({ file: k.allowedKeysFile }, 'generated an API key (generateIfMissing); it is the last line of this file')
  }
  const store: IssuerStore = opts.store ?? new FileStore(config.stateDir)
  const trust = await OutboundTrust.open(store)
  const issuer = config.authentication.local.enabled ? await LocalIssuer.open(config, store, logger) : undefined
  const oidc = await createOidc(config, logger, { trust })
  oidc.start()
  const verifiers = new Map<string, JwtVerifier>(oidc.verifiers)
  if (issuer !== undefined) verifiers.set(issuer.iss, issuer)
  const runtime = compile(config, verifiers)
  const forwarder = createForwarder(config, trust)
  const state: ServeState = { draining: false, inflight: 0 }
  const readiness: Readiness = { listeners: false, state: false, issuers: () => oidc.status() }
  const handler = createHandler({ runtime, forwarder, logger, state })
  const certs = config.tls.enabled ? await CertManager.open(config, store, logger) : undefined
  const adminHandler = createAdminHandler({
    state,
    readiness,
    logger,
    issuer,
    certs,
    trust,
    accessLog: config.log.access,
    tokenLifetimes: { accessMs: config.authentication.local.accessTokenLifetime, refreshMs: config.authentication.local.refreshTokenLifetime },
  })

  let data: http.Server
  let admin: http.Server | undefined
  // issue 7: ALPN offers h2 next to http/1.1 on the data listener (docs/http2.md)
  const alpn = config.http2.enabled ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}
  if (certs !== undefined) {
    const opts = await certs.options()
    data = https.createServer({ ...opts, ...SERVER_OPTIONS, ...alpn }, handler)
    if (config.admin.enabled) admin = https.createServer({ ...opts, ...SERVER_OPTIONS }, adminHandler)
  } else {
    data = http.createServer(SERVER_OPTIONS, handler)
    if (config.admin.enabled) admin = http.createServer(SERVER_OPTIONS, adminHandler)
  }
  for (const s of [data, admin]) {
    s?.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Malformed HTTP never reaches the pipeline (llhttp rejects smuggling shapes, bad request
      // lines, oversized headers). Answer with the JSON error of SPEC §9 and close.
      logger.debug({ code: err.code }, 'client error')
      if (!socket.writable || socket.destroyed) {
        socket.destroy()
        return
      }
      const e = new GatehouseError(err.code === 'HPE_HEADER_OVERFLOW' ? 'ERR_HEADERS_TOO_LARGE' : 'ERR_BAD_REQUEST', { detail: err.code })
      const body = JSON.stringify(errorBody(e, randomUUID()))
      socket.end(
        `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
    })
  }

  // --- issue 7: HTTP/2 + gRPC on the data listener, WebSocket upgrades, the gRPC-only listener
  const grpcUpstream = config.upstream.grpcUrl === undefined || config.upstream.grpcUrl === '' ? undefined : createGrpcUpstream({ url: config.upstream.grpcUrl, caFile: config.upstream.caFile, trust, connectTimeout: config.upstream.timeouts.connect })
  const live = (): { runtime: typeof runtime; forwarder: typeof forwarder; grpc: typeof grpcUpstream } => ({ runtime, forwarder, grpc: grpcUpstream })
  const onGrpc = createGrpcHandler({ live, logger, state })
  const h2Servers: H2Sessions[] = []
  if (config.http2.enabled) {
    const h2 = createDataH2(certs !== undefined, config.http2, handler, onGrpc, logger)
    h2Servers.push(h2)
    if (certs !== undefined) routeAlpn(data as https.Server, h2)
    else routeH2c(data, h2, SERVER_OPTIONS.headersTimeout)
  }
  const upgrades = createUpgradeHandler({ live, logger, state, handler, trust })
  data.on('upgrade', upgrades.onUpgrade)
  let grpcServer: H2Sessions | undefined
  if (config.grpcListener.enabled) {
    grpcServer = createGrpcListener(certs === undefined ? undefined : await certs.options(), config.http2, onGrpc, logger)
    h2Servers.push(grpcServer)
  }
  // --- end issue 7

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
  certs?.attach([data as https.Server, ...(admin === undefined ? [] : [admin as https.Server]), ...(grpcServer === undefined ? [] : [grpcServer.server as unknown as https.Server])])
  const grpcListenerUrl = grpcServer === undefined ? undefined : url(grpcServer.server as unknown as http.Server, config.grpcListener.address)
  // Another worker changed a runtime setting: apply it here too.
  store.onSettingChange?.((key) => {
    if (key === 'tls') void certs?.reload()
    if (key === 'caCert') void trust.reload()
  })
  const stopWatching = (): void => certs?.stop()
  readiness.listeners = true
  readiness.state = true

  let stopping: Promise<void> | undefined
  const stop = (graceMs = config.shutdown.gracePeriod): Promise<void> => {
    stopping ??= (async () => {
      state.draining = true
      logger.info({ inflight: state.inflight, graceMs }, 'draining: no new connections; waiting for in-flight requests')
      const closed = new Promise<void>((resolve) => data.close(() => resolve()))
      data.closeIdleConnections()
      // issue 7: HTTP/2 sessions get GOAWAY (streams in flight finish); the gRPC listener stops accepting.
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
      await forwarder.close()
      logger.info('stopped')
    })()
    return stopping
  }

  return { dataUrl, adminUrl, grpcUrl: grpcListenerUrl, state, cert: certs?.fileSource, stop }
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
