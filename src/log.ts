/**
 * Logging: pino JSON lines. Callers log explicit, allow-listed fields (never a request or
 * headers object); `redact` is the backstop for a secret that slips into a field anyway
 * (STYLE habit 10).
 *
 * The per-request access line goes through a sibling logger without the redaction pass: its
 * fields are a fixed allow-list built in one place (pipeline/handler.ts), and redaction was a
 * measurable share of the per-request cost. Lines are written asynchronously in batches and
 * flushed at least every 250 ms and at exit.
 */
import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogLevel } from './config/types.ts'

export type { Logger }

/** Field paths that must never be printed, whatever logs them. */
export const REDACT_PATHS = [
  'authorization',
  'token',
  'password',
  'apiKey',
  'key',
  'cookie',
  'secret',
  '*.authorization',
  '*.token',
  '*.password',
  '*.apiKey',
  '*.key',
  '*.cookie',
  '*.secret',
  'headers.authorization',
  'headers.cookie',
  'headers["api-key"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["api-key"]',
]

const ACCESS = Symbol('gatehouse.accessLogger')
const FLUSH = Symbol('gatehouse.flush')
const WRITE = Symbol('gatehouse.write')

type Tagged = Logger & { [ACCESS]?: Logger; [FLUSH]?: () => void; [WRITE]?: (line: string) => void }

/** The fields of one access line; only these are ever written for a request. */
export interface AccessFields {
  requestId: string
  listener?: string | undefined
  method: string | undefined
  path: string
  status: number
  durationMs: number
  authMethod: string | undefined
  user: string | undefined
  reason: string | undefined
  detail: string | undefined
  upstreamStatus: number | undefined
  aborted: true | undefined
}

/** Create the process logger. `destination` is for tests (captures every line). */
export function createLogger(level: LogLevel, destination?: DestinationStream, opts: { sync?: boolean } = {}): Logger {
  const base = {
    level,
    base: { service: 'gatehouse' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  let dest: DestinationStream
  let flush: () => void = () => {}
  if (destination !== undefined) dest = destination
  else if (opts.sync === true) dest = pino.destination({ dest: 1, sync: true })
  else {
    const boom = pino.destination({ dest: 1, sync: false, minLength: 4096 })
    dest = boom
    flush = () => {
      try {
        boom.flushSync()
      } catch {
        // not ready yet, or stdout closed: nothing to do
      }
    }
    const timer = setInterval(() => boom.flush(), 250)
    timer.unref()
    process.once('exit', flush)
  }
  const main = pino({ ...base, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest) as Tagged
  main[ACCESS] = pino(base, dest)
  main[FLUSH] = flush
  main[WRITE] = (line) => dest.write(line)
  return main
}

let lastMs = 0
let lastIso = ''

/**
 * Write one access line in pino's format, serialised directly: the fields are a fixed
 * allow-list, so the generic serializer and the redaction pass are skipped (they were a
 * measurable share of the per-request cost). Strings go through JSON.stringify for escaping.
 */
export function writeAccess(logger: Logger, f: AccessFields): void {
  const write = (logger as Tagged)[WRITE]
  if (write === undefined || !logger.isLevelEnabled('info')) {
    if (logger.isLevelEnabled('info')) accessLogger(logger).info(f, 'request')
    return
  }
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastIso = new Date(now).toISOString()
  }
  let line = `{"level":"info","time":"${lastIso}","service":"gatehouse","requestId":${JSON.stringify(f.requestId)}`
  if (f.listener !== undefined) line += `,"listener":${JSON.stringify(f.listener)}`
  line += `,"method":${JSON.stringify(f.method ?? '')},"path":${JSON.stringify(f.path)},"status":${f.status},"durationMs":${f.durationMs}`
  if (f.authMethod !== undefined) line += `,"authMethod":${JSON.stringify(f.authMethod)}`
  if (f.user !== undefined) line += `,"user":${JSON.stringify(f.user)}`
  if (f.reason !== undefined) line += `,"reason":${JSON.stringify(f.reason)}`
  if (f.detail !== undefined) line += `,"detail":${JSON.stringify(f.detail)}`
  if (f.upstreamStatus !== undefined) line += `,"upstreamStatus":${f.upstreamStatus}`
  if (f.aborted === true) line += ',"aborted":true'
  write(`${line},"msg":"request"}\n`)
}

/** The logger for access lines (allow-listed fields only; no redaction pass). */
export function accessLogger(logger: Logger): Logger {
  return (logger as Tagged)[ACCESS] ?? logger
}

/** Write out buffered lines now (before exit). */
export function flushLogs(logger: Logger): void {
  ;(logger as Tagged)[FLUSH]?.()
}
