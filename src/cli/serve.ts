/**
 * `gatehouse serve`: load, validate (exit 2 on problems), start, and drain on SIGTERM/SIGINT.
 * With `workers: N` (N > 1) this process becomes the primary: it prepares the shared files
 * (state store, self-signed certificate, local issuer key), owns the state store, and forks N
 * workers that share the listeners (node:cluster) and reach the store over IPC — or, with a
 * shared store (`store.url: redis://…`), connect to it themselves like separate replicas.
 */
import cluster, { type Worker } from 'node:cluster'
import { existsSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { anonymousEnabled } from '../compose.ts'
import { writeNewKeysFile } from '../config/keys.ts'
import type { Config } from '../config/types.ts'
import { createLogger, flushLogs, type Logger } from '../log.ts'
import { startServer, type RunningServer } from '../server/serve.ts'
import { ensureSelfSignedCertificate } from '../tls/selfsigned.ts'
import { serveTicketKeys, TicketKeys } from '../tls/ticketKeys.ts'
import { FileStore } from '../store/fileStore.ts'
import { IpcStore, serveStore } from '../store/ipcStore.ts'
import { serveClusterMetrics } from '../metrics/cluster.ts'
import { openStore } from '../store/open.ts'
import { GatehouseError } from '../errors.ts'
import { loadOrReport } from './io.ts'

/** Run until a signal; returns the exit code. */
export async function serve(configPath: string | undefined): Promise<number> {
  const r = loadOrReport(configPath)
  if (!r.ok || r.config === undefined) return 2
  const c = r.config
  // SIGHUP's default action ends the process: until the server can reload, remember it instead.
  let hupDuringStart = false
  const earlyHup = (): void => {
    hupDuringStart = true
  }
  process.on('SIGHUP', earlyHup)
  const workers = c.workers === 0 ? os.availableParallelism() : c.workers
  // Workers share stdout: each write(2) is at most PIPE_BUF of whole lines, so lines never interleave.
  const logger = createLogger(c.log.level, undefined, { sharedStdout: cluster.isWorker })
  if (cluster.isPrimary) {
    for (const w of r.warnings) logger.warn(w)
    if (c.configFile === undefined) logger.info('no configuration file given (use --config proxy.yaml or GATEHOUSE_CONFIG); running on defaults and environment variables')
  }
  if (workers > 1 && cluster.isPrimary) return runPrimary(c, workers, logger, earlyHup)

  // With a shared store (Redis) every worker connects to it itself, exactly like another
  // replica; with the file store, workers reach the primary's store over IPC.
  const store = cluster.isWorker && c.store.url === 'file:' ? await IpcStore.connect() : undefined
  const ticketKeys = cluster.isWorker && c.tls.enabled ? await TicketKeys.fromPrimary() : undefined
  let server
  try {
    server = await startServer(c, logger, { store, clusterMetrics: cluster.isWorker, ticketKeys })
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') {
      process.stderr.write(`gatehouse serve: cannot listen (${err.code}: ${err.message}); choose another port with listen.port/GATEHOUSE_PORT or admin.port/GATEHOUSE_ADMIN_PORT\n`)
      return 1
    }
    if (err instanceof GatehouseError && err.code === 'ERR_STORE_UNAVAILABLE') {
      process.stderr.write(`gatehouse serve: ${err.detail ?? 'the state store is unreachable'}; check store.url, the store's address and credentials (docs/replicas.md)\n`)
      return 1
    }
    throw e
  }
  const a = c.authentication
  const facts = {
    data: server.dataUrl,
    admin: server.adminUrl,
    ...(server.grpcUrl === undefined ? {} : { grpc: server.grpcUrl }),
    upstream: c.upstream.url,
    profile: c.upstream.profile,
    methods: [a.apikey.enabled && 'apikey', a.oidc.enabled && 'oidc', a.local.enabled && 'local'].filter(Boolean),
    anonymous: anonymousEnabled(c),
    adminlist: c.authorization.adminlist.enabled,
    config: c.configFile,
    ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}),
  }
  // Bound is not ready: "ready" is logged only when /readyz answers 200 (an OIDC issuer's keys
  // may still be missing), so a log watcher and the probe never disagree.
  logger.info(facts, 'gatehouse is listening')
  const stopAnnouncing = announceReady(server, logger, facts)
  if (server.cert?.selfSigned === true && !cluster.isWorker) {
    const cert = path.relative(process.cwd(), server.cert.certFile) || server.cert.certFile
    const keys = a.apikey.allowedKeysFile === undefined ? undefined : path.relative(process.cwd(), a.apikey.allowedKeysFile)
    logger.info({ try: `curl --cacert ${cert} ${server.dataUrl}/${keys === undefined ? '' : ` -H "Authorization: Bearer $(tail -n1 ${keys})"`}` }, 'try it')
  }
  const running = server
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the configuration')
    void running.reload()
  })
  process.off('SIGHUP', earlyHup)
  if (hupDuringStart) void running.reload()
  await untilSignal(logger, cluster.isWorker)
  stopAnnouncing()
  await server.stop().catch((e: unknown) => logger.error({ error: String(e) }, 'error while stopping'))
  flushLogs(logger)
  return 0
}

/** How often the start-up log looks at readiness again while /readyz is 503. */
const READY_POLL_MS = 250

/**
 * Log "gatehouse is ready" (with `facts`) once `/readyz` would answer 200. While it would not,
 * warn once, naming what it waits for (an OIDC issuer, with its last error), and look again;
 * a changed list is warned again. Returns a function that stops looking (on shutdown).
 */
function announceReady(server: RunningServer, logger: Logger, facts: Record<string, unknown>): () => void {
  let timer: NodeJS.Timeout | undefined
  let warned = ''
  const look = (): void => {
    timer = undefined
    const missing = server.notReady()
    if (missing.length === 0) {
      logger.info(facts, 'gatehouse is ready')
      return
    }
    const key = missing.map((m) => `${m.check}:${m.issuer ?? ''}`).join('|')
    if (key !== warned) {
      warned = key
      const issuers = missing.filter((m) => m.check === 'oidc issuer')
      logger.warn(
        { waitingFor: missing, ...(facts.worker === undefined ? {} : { worker: facts.worker }) },
        issuers.length > 0
          ? `not ready yet: /readyz answers 503 until the keys of ${issuers.map((m) => m.issuer).join(', ')} are loaded (retrying with backoff; check that the issuer is reachable). API keys and local tokens work meanwhile; JWTs of that issuer get 503`
          : `not ready yet: /readyz answers 503 (waiting for ${missing.map((m) => m.check).join(', ')})`,
      )
    }
    timer = setTimeout(look, READY_POLL_MS)
    timer.unref()
  }
  look()
  return () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
  }
}

/** Resolve on the first SIGTERM/SIGINT (later ones are ignored: the drain is already running). */
function untilSignal(logger: Logger, worker: boolean): Promise<void> {
  return new Promise((resolve) => {
    let seen = false
    const onSignal = (sig: NodeJS.Signals | 'disconnect'): void => {
      if (seen) return
      seen = true
      logger.info({ signal: sig }, 'shutting down')
      resolve()
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    // A worker whose primary is gone stops too.
    if (worker) process.on('disconnect', () => onSignal('disconnect'))
  })
}

async function runPrimary(c: Config, n: number, logger: Logger, earlyHup: () => void): Promise<number> {
  // Shared files are prepared once, before any worker could race to create them.
  mkdirSync(c.stateDir, { recursive: true, mode: 0o700 })
  const k = c.authentication.apikey
  if (k.enabled && k.allowedKeysFile !== undefined && k.generateIfMissing && !existsSync(k.allowedKeysFile)) {
    writeNewKeysFile(k.allowedKeysFile)
    logger.info({ file: k.allowedKeysFile }, 'generated an API key (generateIfMissing); it is the last line of this file')
  }
  if (c.tls.enabled && c.tls.certFile === undefined) ensureSelfSignedCertificate(c.stateDir)
  const all = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
  let attach: (w: Worker) => void = () => {}
  if (c.store.url === 'file:') {
    const store = new FileStore(c.stateDir)
    if (c.authentication.local.enabled) await (await import('../issuer/localIssuer.ts')).LocalIssuer.open(c, store, logger)
    attach = serveStore(store, all)
  } else if (c.authentication.local.enabled) {
    // The shared signing key and the bootstrap rule, once, before the workers race to them
    // (they are atomic in the store anyway); each worker then connects to the store itself.
    const l = c.authentication.local
    let opened
    try {
      opened = await openStore(c.store, c.stateDir, logger, l.refreshTokenLifetime + l.accessTokenLifetime)
    } catch (e) {
      if (!(e instanceof GatehouseError)) throw e
      process.stderr.write(`gatehouse serve: ${e.detail ?? 'the state store is unreachable'}; check store.url, the store's address and credentials (docs/replicas.md)\n`)
      return 1
    }
    try {
      await (await import('../issuer/localIssuer.ts')).LocalIssuer.open(c, opened.store, logger)
    } finally {
      await opened.close()
    }
  }
  let stopping = false
  // /metrics on any worker answers the sum over all workers, gathered here (docs/metrics.md).
  const metrics = c.metrics.enabled ? serveClusterMetrics() : undefined
  // One session-ticket key for all workers, replaced for all at once (src/tls/ticketKeys.ts).
  const tickets = c.tls.enabled ? serveTicketKeys(c.tls.ticketKeyRotation, all) : undefined
  const fork = (): void => {
    const w = cluster.fork()
    attach(w)
    metrics?.(w)
    tickets?.attach(w)
  }
  cluster.on('exit', (w, code, signal) => {
    if (stopping) return
    logger.warn({ worker: w.id, code, signal }, 'a worker exited; starting another')
    fork()
  })
  for (let i = 0; i < n; i++) fork()
  // Each worker reloads (and validates) on its own; the primary only passes the signal on.
  process.off('SIGHUP', earlyHup)
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: asking every worker to reload the configuration')
    for (const w of all()) w.process.kill('SIGHUP')
  })
  logger.info({ workers: n }, 'gatehouse primary started its workers')
  await untilSignal(logger, false)
  stopping = true
  const exits = all().map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))))
  for (const w of all()) w.process.kill('SIGTERM')
  const hard = setTimeout(() => {
    for (const w of all()) w.process.kill('SIGKILL')
  }, c.shutdown.gracePeriod + 5000)
  await Promise.all(exits)
  clearTimeout(hard)
  tickets?.stop()
  logger.info('stopped')
  flushLogs(logger)
  return 0
}
