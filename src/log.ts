/**
 * Logging: pino JSON lines. Callers log explicit, allow-listed fields (never a request or
 * headers object); `redact` is the backstop for a secret that slips into a field anyway
 * (STYLE habit 10).
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

/** Create the process logger. `destination` is for tests (captures every line). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'gatehouse' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  return destination === undefined ? pino(opts) : pino(opts, destination)
}
