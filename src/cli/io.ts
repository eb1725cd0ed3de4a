/** Small helpers shared by the CLI commands. */
import { loadConfig, formatProblem, type LoadResult } from '../config/load.ts'

import { UsageError } from './usage.ts'

export { UsageError }

/** Load the configuration; print every problem and return undefined on failure. */
export function loadOrReport(configPath: string | undefined): LoadResult & { ok: boolean } {
  const r = loadConfig({ configPath })
  if (r.problems.length > 0) {
    process.stderr.write(`gatehouse: the configuration has ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}:\n`)
    for (const p of r.problems) process.stderr.write(`  ${formatProblem(p)}\n`)
    process.stderr.write('Fix them and run `gatehouse config check` again.\n')
    return { ...r, ok: false }
  }
  return { ...r, ok: true }
}
