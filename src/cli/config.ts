/** `gatehouse config check` and `gatehouse config print`. */
import path from 'node:path'
import { anonymousEnabled } from '../config/anonymous.ts'
import { leaves } from '../config/schema.ts'
import type { Source } from '../config/types.ts'
import { formatDuration } from '../config/units.ts'
import { loadOrReport } from './io.ts'

/** Said whenever no file was read: gatehouse never picks up ./proxy.yaml on its own (config/load.ts). */
export const NO_FILE_NOTE = 'no configuration file was read (only the defaults and the environment); name one with --config FILE or GATEHOUSE_CONFIG'

/** Validate; exit 0 or 2 (every problem listed by loadOrReport). */
export function configCheck(configPath: string | undefined): number {
  const r = loadOrReport(configPath)
  if (!r.ok) return 2
  for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`)
  const file = r.config?.configFile
  process.stdout.write(file === undefined ? `configuration OK, but ${NO_FILE_NOTE}\n` : `configuration OK (${path.relative(process.cwd(), file) || file})\n`)
  return 0
}

/** Print every effective value with its source; secrets redacted. */
export function configPrint(configPath: string | undefined, json: boolean): number {
  const r = loadOrReport(configPath)
  if (!r.ok || r.config === undefined) return 2
  const rows: { key: string; value: unknown; source: string }[] = []
  for (const [p, l] of leaves()) {
    let v = r.values.get(p)
    if (l.secret === true) v = redact(v)
    else if (l.type === 'duration' && typeof v === 'number') v = formatDuration(v)
    rows.push({ key: p, value: v, source: describe(r.sources.get(p)) })
  }
  if (r.config.configFile === undefined) process.stderr.write(`note: ${NO_FILE_NOTE}\n`)
  rows.push({ key: 'authentication.anonymous.enabled (effective)', value: anonymousEnabled(r.config), source: 'derived: on when no method is enabled, else only when explicitly enabled' })
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return 0
  }
  const width = Math.max(...rows.map((x) => x.key.length))
  for (const x of rows) process.stdout.write(`${x.key.padEnd(width)}  ${display(x.value)}  # ${x.source}\n`)
  for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`)
  return 0
}

/** A redacted value for the text listing: printed bare, never quoted like a real value. */
class Redacted {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
  toJSON(): string {
    return this.text
  }
}

/**
 * A secret for printing. Empty values stay as they are ([], {}, "", unset), so they print
 * exactly like the same empty value of any other key; anything else becomes a bare marker.
 */
function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 0 ? v : new Redacted(`<redacted: ${v.length} item${v.length === 1 ? '' : 's'}>`)
  if (typeof v === 'object' && v !== null) {
    const refs = Object.entries(v as Record<string, Record<string, string>>).map(([k, ref]) => `${k}=${'env' in ref ? `env:${ref.env}` : 'file' in ref ? `file:${ref.file}` : '<redacted>'}`)
    return refs.length === 0 ? v : new Redacted(refs.join(', '))
  }
  return v === undefined || v === '' ? v : new Redacted('<redacted>')
}

/** One value of the text listing: JSON for values (so "" [] {} read alike for every key), bare markers for unset and redacted ones. */
function display(v: unknown): string {
  if (v === undefined) return '(unset)'
  if (v instanceof Redacted) return v.text
  return JSON.stringify(v) ?? String(v)
}

function describe(s: Source | undefined): string {
  if (s === undefined || s.kind === 'default') return 'default'
  if (s.kind === 'file') return `${path.relative(process.cwd(), s.file) || s.file}:${s.line}`
  if (s.kind === 'env') return `env ${s.name}`
  return s.why
}
