/** Statistics and the Markdown tables of the peer benchmark. */

/** Everything measured for one candidate in one protocol. */
export interface Row {
  id: string
  name: string
  /** 'ok (refused N bad)', 'n/a (no auth)', 'FAILED: …', 'not run: …'. */
  proof: string
  measured: boolean
  /** The direct-to-upstream row: only latency at 1 connection (the machine's floor). */
  floorOnly?: boolean
  rps: number[]
  cpuUs: number[]
  /** Latency percentiles (µs) per round, at 1 and at 50 connections. */
  p50c1: number[]
  p99c1: number[]
  p50c50: number[]
  p99c50: number[]
  /** Peak RSS of the process tree (bytes), per round. */
  rss: number[]
  /** Share of the proxy core used by other processes during each 50-connection run. */
  foreign: number[]
  /** Non-2xx responses and socket errors over all measured runs. */
  errors: number
  requests: number
}

export function newRow(id: string, name: string): Row {
  return { id, name, proof: '', measured: false, rps: [], cpuUs: [], p50c1: [], p99c1: [], p50c50: [], p99c50: [], rss: [], foreign: [], errors: 0, requests: 0 }
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

const ms = (us: number): string => (Number.isFinite(us) ? (us / 1000).toFixed(2) : '–')

/** Ratio columns: CPU µs/request of a row ÷ that of these references. */
export const REFERENCES: { id: string; label: string }[] = [
  { id: 'nginx', label: '× nginx' },
  { id: 'haproxy-jwt', label: '× HAProxy-JWT' },
  { id: 'apache-oidc', label: '× mod_auth_openidc' },
  { id: 'gh-anon', label: '× gatehouse pass-through' },
]

export function table(rows: Row[]): string {
  const cpuOf = new Map(rows.filter((r) => r.measured && r.floorOnly !== true).map((r) => [r.id, median(r.cpuUs)]))
  const head = [
    'candidate',
    'proof',
    'req/s (median)',
    'req/s range',
    'CPU µs/req (median)',
    'CPU µs/req (min)',
    'p50 / p99 ms @1 conn',
    'p50 / p99 ms @50 conn',
    'RSS peak MiB',
    ...REFERENCES.map((r) => `CPU ${r.label}`),
  ]
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`]
  for (const r of rows) {
    if (r.floorOnly === true) {
      const cells = head.slice(2).map(() => '–')
      cells[4] = r.p50c1.length > 0 ? `${ms(median(r.p50c1))} / ${ms(median(r.p99c1))}` : '–'
      lines.push(`| ${r.name} | ${r.proof} | ${cells.join(' | ')} |`)
      continue
    }
    if (!r.measured) {
      lines.push(`| ${r.name} | ${r.proof} | ${head.slice(2).map(() => '–').join(' | ')} |`)
      continue
    }
    const cpu = median(r.cpuUs)
    const ratios = REFERENCES.map((ref) => {
      const base = cpuOf.get(ref.id)
      return base === undefined || !Number.isFinite(base) ? '–' : `${(cpu / base).toFixed(2)}×`
    })
    const err = r.errors > 0 ? ` (${r.errors} errors)` : ''
    lines.push(
      `| ${r.name} | ${r.proof} | ${median(r.rps).toFixed(0)}${err} | ${Math.min(...r.rps).toFixed(0)}–${Math.max(...r.rps).toFixed(0)} | ${cpu.toFixed(1)} | ${Math.min(...r.cpuUs).toFixed(1)} | ${ms(median(r.p50c1))} / ${ms(median(r.p99c1))} | ${ms(median(r.p50c50))} / ${ms(median(r.p99c50))} | ${(Math.max(...r.rss) / 1048576).toFixed(1)} | ${ratios.join(' | ')} |`,
    )
  }
  return lines.join('\n')
}
