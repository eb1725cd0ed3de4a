/**
 * Parsers for durations (Weka's grammar) and byte sizes. Each returns `undefined` for input it
 * cannot read, so the caller can report the problem with its location.
 */

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

// Weka: `30s`, `4m`, `2h`, `1d`, `1d5h`, `1w`, `infinite`/`unlimited`. `ms` is our extension for
// sub-second timeouts. Units must appear largest first, each at most once (as Weka prints them).
const DURATION_RE = /^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/

/**
 * Parse a duration into milliseconds; `Infinity` for `infinite`/`unlimited`.
 *
 * @returns the duration, or undefined when `text` is not in the grammar.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim().toLowerCase()
  if (t === 'infinite' || t === 'unlimited') return Infinity
  if (t === '') return undefined
  const m = DURATION_RE.exec(t)
  if (m === null) return undefined
  const units = ['w', 'd', 'h', 'm', 's', 'ms'] as const
  let total = 0
  let any = false
  units.forEach((u, i) => {
    const v = m[i + 1]
    if (v !== undefined) {
      any = true
      total += Number(v) * (DURATION_UNITS[u] ?? 0)
    }
  })
  return any && Number.isSafeInteger(total) ? total : undefined
}

/** Format milliseconds in the same grammar (`1d5h`, `30s`, `infinite`). */
export function formatDuration(ms: number): string {
  if (ms === Infinity) return 'infinite'
  if (ms === 0) return '0s'
  let rest = ms
  let out = ''
  for (const u of ['w', 'd', 'h', 'm', 's', 'ms'] as const) {
    const size = DURATION_UNITS[u] ?? 1
    const n = Math.floor(rest / size)
    if (n > 0) {
      out += `${n}${u}`
      rest -= n * size
    }
  }
  return out
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
}

/**
 * Parse a byte size: a non-negative integer, or a number with a unit (`512KiB`, `10MiB`, `1GB`).
 *
 * @returns the size in bytes, or undefined when unreadable.
 */
export function parseSize(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : undefined
  if (typeof input !== 'string') return undefined
  const m = /^(\d+)\s*([a-z]*)$/i.exec(input.trim())
  if (m === null) return undefined
  const unit = (m[2] ?? '').toLowerCase() || 'b'
  const mult = SIZE_UNITS[unit]
  if (mult === undefined) return undefined
  const n = Number(m[1]) * mult
  return Number.isSafeInteger(n) ? n : undefined
}
