/**
 * Keep V8's young generation small in the serving process.
 *
 * Node 20 lets each semi-space of the young generation grow to 16 MiB, and both halves stay
 * resident: start-up alone grows it to the maximum, so a worker held 32 MiB of mostly empty
 * young generation (docs/benchmarks.md, "Footprint"). `--max-semi-space-size` is read only when
 * the isolate is created, too late for a process that is already running; the growth factor is
 * read at every growth, so after each garbage collection it is set to 1 (no growth) once the
 * semi-space has reached the cap, and back to 2 (V8's default) when V8 has shrunk it below.
 *
 * The cap is the one that keeps the CPU per request within the budget (same-noise pairs,
 * docs/benchmarks.md, "Footprint"): at 8 MiB a proxied request costs what it does at 16 MiB
 * (medians 0.94–1.03×); at 4 MiB it costs 5–15% more than at 8 and the peak under load is no
 * lower, because request objects still in flight are promoted and the old generation grows
 * instead (at 1 MiB the old generation doubled).
 *
 * A user who sets the young generation (`--max-semi-space-size`, `--semi-space-growth-factor`,
 * … in NODE_OPTIONS or on node's command line) keeps their setting: nothing is done.
 */
import { PerformanceObserver } from 'node:perf_hooks'
import v8 from 'node:v8'

/** Most MiB one semi-space may grow to in the serving process. */
export const SEMI_SPACE_CAP_MIB = 8

/** V8's own growth factor (flag default), restored when the semi-space is below the cap. */
const DEFAULT_GROWTH = 2

/** True when node's own flags or NODE_OPTIONS already size the young generation. */
export function youngGenerationSetByUser(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, nodeOptions].some((a) => /semi[-_]space/.test(a))
}

/** One semi-space's size in bytes (V8 reports both halves as the new space). */
function semiSpaceBytes(): number {
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')
  return s === undefined ? 0 : s.space_size / 2
}

/**
 * Cap the semi-space at `capMiB` from now on (a no-op when the user sized it). Returns a function
 * that stops watching (the process keeps whatever factor was set last).
 */
export function capYoungGeneration(capMiB: number = SEMI_SPACE_CAP_MIB): () => void {
  if (youngGenerationSetByUser()) return () => {}
  const cap = capMiB * 1024 * 1024
  let growth = DEFAULT_GROWTH
  const adjust = (): void => {
    const want = semiSpaceBytes() >= cap ? 1 : DEFAULT_GROWTH
    if (want === growth) return
    growth = want
    v8.setFlagsFromString(`--semi-space-growth-factor=${want}`)
  }
  adjust()
  // One entry per collection; a scavenge comes every few MiB of allocation (hundreds of requests).
  const obs = new PerformanceObserver(adjust)
  obs.observe({ entryTypes: ['gc'] })
  return () => obs.disconnect()
}
