/** `gatehouse serve`: load, validate (exit 2 on problems), start, and drain on SIGTERM/SIGINT. */
import path from 'node:path'
import { anonymousEnabled } from '../config/compile.ts'
import { createLogger, flushLogs } from '../log.ts'
import { startServer } from '../server/serve.ts'
import { loadOrReport } from './io.ts'

/** Run until a signal; returns the exit code. */
export async function serve(configPath: string | undefined): Promise<number> {
  const r = loadOrReport(configPath)
  if (!r.ok || r.config === undefined) return 2
  const c = r.config
  const logger = createLogger(c.log.level)
  for (const w of r.warnings) logger.warn(w)
  if (c.configFile === undefined) logger.info('no configuration file given (use --config proxy.yaml or GATEHOUSE_CONFIG); running on defaults and environment variables')
  let server
  try {
    server = await startServer(c, logger)
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') {
      process.stderr.write(`gatehouse serve: cannot listen (${err.code}: ${err.message}); choose another port with listen.port/GATEHOUSE_PORT or admin.port/GATEHOUSE_ADMIN_PORT\n`)
      return 1
    }
    throw e
  }
  const a = c.authentication
  logger.info(
    {
      data: server.dataUrl,
      admin: server.adminUrl,
      upstream: c.upstream.url,
      profile: c.upstream.profile,
      methods: [a.apikey.enabled && 'apikey', a.oidc.enabled && 'oidc'].filter(Boolean),
      anonymous: anonymousEnabled(c),
      adminlist: c.authorization.adminlist.enabled,
      config: c.configFile,
    },
    'gatehouse is ready',
  )
  if (server.cert?.selfSigned === true) {
    const cert = path.relative(process.cwd(), server.cert.certFile) || server.cert.certFile
    const keys = a.apikey.allowedKeysFile === undefined ? undefined : path.relative(process.cwd(), a.apikey.allowedKeysFile)
    logger.info(
      { try: `curl --cacert ${cert} ${server.dataUrl}/${keys === undefined ? '' : ` -H "Authorization: Bearer $(tail -n1 ${keys})"`}` },
      'try it',
    )
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      logger.info({ signal: sig }, 'shutting down')
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      server.stop().then(resolve, (e: unknown) => {
        logger.error({ error: String(e) }, 'error while stopping')
        resolve()
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
  flushLogs(logger)
  return 0
}
