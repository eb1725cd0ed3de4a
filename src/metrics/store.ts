/**
 * Store metrics without touching either store: the server wraps its state store once, and every
 * named operation is counted and timed where it is called (file, Redis, or a worker's hop to
 * the primary). Other members pass through, bound to the store (they may use private fields).
 */
import type { Metrics } from './metrics.ts'

/** Wrap `store` so that each operation in `ops` reports to `metrics` (name, latency, failure). */
export function instrumentStore<T extends object>(store: T, ops: readonly string[], metrics: Metrics): T {
  const timed = new Set(ops)
  const cache = new Map<PropertyKey, unknown>()
  return new Proxy(store, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target)
      if (typeof v !== 'function') return v
      let f = cache.get(prop)
      if (f === undefined) {
        const fn = v as (...a: unknown[]) => unknown
        f = typeof prop === 'string' && timed.has(prop) ? timedOp(prop, fn, target, metrics) : fn.bind(target)
        cache.set(prop, f)
      }
      return f
    },
  })
}

function timedOp(op: string, fn: (...a: unknown[]) => unknown, target: object, metrics: Metrics): (...a: unknown[]) => unknown {
  return (...args: unknown[]) => {
    const t0 = performance.now()
    let r: unknown
    try {
      r = fn.apply(target, args)
    } catch (e) {
      metrics.storeOp(op, (performance.now() - t0) / 1000, true)
      throw e
    }
    if (!(r instanceof Promise)) {
      metrics.storeOp(op, (performance.now() - t0) / 1000, false)
      return r
    }
    return r.then(
      (v: unknown) => {
        metrics.storeOp(op, (performance.now() - t0) / 1000, false)
        return v
      },
      (e: unknown) => {
        metrics.storeOp(op, (performance.now() - t0) / 1000, true)
        throw e
      },
    )
  }
}
