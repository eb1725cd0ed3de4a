/**
 * Logging: pino JSON lines. Callers log explicit, allow-listed fields (never a request or
 * headers object); `redact` is the backstop for a secret that slips into a field anyway
 * (STYLE habit 10).
 *
 * The per-request access line goes through a sibling logger without the redaction pass: its
 * fields are a fixed allow-list built in one place (pipeline/handler.ts), and redaction was a
 * measurable share of the per-request cost. Access records are serialised and written in
 * batches (logWriter.ts), at least every 100 ms and at exit; other lines at once.
 */
import { pino, type DestinationStream, type Logger } from 'pino'
import { LineWriter, PIPE_BUF } from './logWriter.ts'

/** pino's levels, plus `silent`. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

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
const RECORD = Symbol('gatehouse.record')
const AUDIT = Symbol('gatehouse.auditObserver')

type Tagged = Logger & { [ACCESS]?: Logger; [FLUSH]?: () => void; [RECORD]?: (f: AccessFields) => void; [AUDIT]?: (f: AuditFields) => void }

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
  /**
   * The client address the failure throttles key on (auth/throttle.ts `clientKey`: the peer, or
   * behind `trustedProxies` the right-most untrusted X-Forwarded-For hop; IPv6 as its /64). On
   * the admin listener always the peer: `trustedProxies` is the data listener's.
   */
  client?: string | undefined
  /** Set by writeAccess: when the line was logged (ms since epoch). */
  time?: number
}

/** Create the process logger. `destination` is for tests (captures every line). */
export function createLogger(level: LogLevel, destination?: DestinationStream, opts: { sharedStdout?: boolean } = {}): Logger {
  const base = {
    level,
    base: { service: 'gatehouse' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  let dest: DestinationStream
  let flush: () => void = () => {}
  let record: (f: AccessFields) => void
  if (destination !== undefined) {
    dest = destination
    record = (f) => dest.write(accessLine(f))
  } else {
    // sharedStdout (cluster workers): batches of at most PIPE_BUF, so a write(2) on a pipe shared
    // with the other workers is atomic and lines never interleave.
    const out = new LineWriter<AccessFields>(1, { batchBytes: opts.sharedStdout === true ? PIPE_BUF : 64 * 1024, maxPendingBytes: 64 * 1024 * 1024, flushMs: 100 }, { serialize: accessLine })
    dest = { write: (line: string) => out.writeNow(line) }
    record = (f) => out.defer(f)
    flush = () => out.flush()
    process.once('exit', flush)
  }
  const main = pino({ ...base, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest) as Tagged
  main[ACCESS] = pino(base, dest)
  main[FLUSH] = flush
  main[RECORD] = record
  return main
}

let lastMs = 0
let lastIso = ''

/** Printable ASCII without `"` and `\\`: quoted as is; anything else goes through JSON.stringify. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** A JSON string literal (JSON.stringify's output, cheaper for the common plain strings). */
function str(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s)
}

/**
 * Log one request: the access line in pino's format, serialised directly — the fields are a
 * fixed allow-list, so the generic serializer and the redaction pass are skipped (they were a
 * measurable share of the per-request cost). On stdout the record is kept and serialised with
 * its batch (logWriter.ts); `f` must not be changed afterwards.
 */
export function writeAccess(logger: Logger, f: AccessFields): void {
  if (!logger.isLevelEnabled('info')) return
  const record = (logger as Tagged)[RECORD]
  if (record === undefined) {
    accessLogger(logger).info(f, 'request')
    return
  }
  f.time = Date.now()
  record(f)
}

/** The access line of a record, with its newline. Strings are escaped as JSON.stringify does. */
function accessLine(f: AccessFields): string {
  const now = f.time ?? Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastIso = new Date(now).toISOString()
  }
  let line = `{"level":"info","time":"${lastIso}","service":"gatehouse","requestId":${str(f.requestId)}`
  if (f.listener !== undefined) line += `,"listener":${str(f.listener)}`
  line += `,"method":${str(f.method ?? '')},"path":${str(f.path)},"status":${f.status},"durationMs":${f.durationMs}`
  if (f.authMethod !== undefined) line += `,"authMethod":${str(f.authMethod)}`
  if (f.user !== undefined) line += `,"user":${str(f.user)}`
  if (f.reason !== undefined) line += `,"reason":${str(f.reason)}`
  if (f.detail !== undefined) line += `,"detail":${str(f.detail)}`
  if (f.upstreamStatus !== undefined) line += `,"upstreamStatus":${f.upstreamStatus}`
  if (f.aborted === true) line += ',"aborted":true'
  if (f.client !== undefined) line += `,"client":${str(f.client)}`
  return `${line},"msg":"request"}\n`
}

/** The logger for access lines (allow-listed fields only; no redaction pass). */
export function accessLogger(logger: Logger): Logger {
  return (logger as Tagged)[ACCESS] ?? logger
}

/** Write out buffered lines now (before exit). */
export function flushLogs(logger: Logger): void {
  ;(logger as Tagged)[FLUSH]?.()
}

/**
 * Security events (docs/security.md, "Audit trail"). Names are stable: alerting keys on them.
 */
export type AuditEvent =
  | 'login'
  | 'login.address_blocked'
  | 'browser.sign_in'
  | 'browser.sign_out'
  | 'account.locked'
  | 'locks.cleared'
  | 'refresh_token.reused'
  | 'tokens.revoked'
  | 'token.generated'
  | 'user.created'
  | 'user.deleted'
  | 'user.role_changed'
  | 'password.changed'
  | 'banner.changed'
  | 'lockout_policy.changed'
  | 'lockout_policy.reset'
  | 'tls.changed'
  | 'ca_cert.changed'
  | 'signing_key.rotated'
  | 'ldap.changed'
  | 'refresh.directory_refused'

/** One audit line: who did what to whom, from where, and how it ended. Never a secret. */
export interface AuditFields {
  readonly event: AuditEvent
  /** The authenticated user who acted; undefined (logged as "-") when nobody was authenticated. */
  readonly actor: string | undefined
  /** What the event is about: a user name, a setting; undefined → "-". */
  readonly target: string | undefined
  /** The client address as the throttles key it (see {@link AccessFields.client}). */
  readonly client: string | undefined
  readonly requestId: string | undefined
  readonly outcome: 'success' | 'failure'
  /** The reason code of a failure (errors.ts). */
  readonly reason?: string | undefined
  /** Event-specific, non-secret extras (a role, a lock duration, a setting's new value). */
  readonly extra?: Readonly<Record<string, string | number | boolean>>
}

/** Longest attacker-chosen string (a login name) written into an audit line. */
const AUDIT_MAX = 128

/**
 * Write one audit line (msg `audit`). It goes through the redacting logger, so a secret that
 * slipped into `extra` would still be censored; failures are `warn`, the rest `info`.
 */
export function audit(logger: Logger, f: AuditFields): void {
  ;(logger as Tagged)[AUDIT]?.(f)
  const line = {
    audit: true,
    event: f.event,
    actor: clip(f.actor),
    target: clip(f.target),
    client: f.client ?? '-',
    requestId: f.requestId ?? '-',
    outcome: f.outcome,
    ...(f.reason === undefined ? {} : { reason: f.reason }),
    ...f.extra,
  }
  if (f.outcome === 'failure' || f.event === 'account.locked' || f.event === 'refresh_token.reused' || f.event === 'login.address_blocked') logger.warn(line, 'audit')
  else logger.info(line, 'audit')
}

/**
 * Call `fn` with every audit line written through `logger` (and its children, which inherit
 * from it): the metrics count logins, lockouts and revocations here, in the one place every
 * security event is recorded, whatever the log level.
 */
export function observeAudit(logger: Logger, fn: (f: AuditFields) => void): void {
  ;(logger as Tagged)[AUDIT] = fn
}

function clip(s: string | undefined): string {
  if (s === undefined || s === '') return '-'
  return s.length > AUDIT_MAX ? `${s.slice(0, AUDIT_MAX)}…` : s
}
