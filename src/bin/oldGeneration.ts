/**
 * Let V8's old generation grow by 20% between major collections in the serving process, instead
 * of the up to 4× V8 picks for a fast-collecting small heap.
 *
 * Under load, request objects that outlive a scavenge are promoted and die soon after; with the
 * default factor the old generation filled with them to about twice its live size (≈ 9 MiB live,
 * 17–20 MiB resident) before it was collected. At 20% the peak RSS under wrk load was 3–11 MiB
 * lower at the same CPU per request (same-noise pairs, medians 0.96–1.02×; docs/benchmarks.md,
 * "Footprint"). V8 reads the flag whenever it computes the next limit, so setting it at run time
 * works. A user's own `--heap-growing-percent` (node flags or NODE_OPTIONS) is left alone.
 */
import v8 from 'node:v8'

/** Percent the old generation may grow past its live size before the next major collection. */
export const HEAP_GROWING_PERCENT = 20

/** True when node's own flags or NODE_OPTIONS already set the growing factor. */
export function heapGrowingSetByUser(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, nodeOptions].some((a) => /heap[-_]growing[-_]percent/.test(a))
}

/** Set the growing factor (a no-op when the user set it). */
export function growOldGenerationSlowly(percent: number = HEAP_GROWING_PERCENT): void {
  if (heapGrowingSetByUser()) return
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`)
}
