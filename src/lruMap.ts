/**
 * A least-recently-used map bounded in entries that takes memory only as it fills.
 *
 * lru-cache allocates its index arrays for `max` entries up front: the failure throttle's two
 * tables (100 000 addresses each by default) held 3.2 MiB of empty slots in every process from
 * the start (docs/benchmarks.md, "Footprint"). A Map keeps insertion order, so moving an entry
 * to the end on use and evicting the first one is an LRU, and an idle table costs nothing.
 */
export class LruMap<K, V> {
  readonly #max: number
  readonly #map = new Map<K, V>()

  /** @param max most entries kept (at least 1); the least recently used one is evicted. */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`LruMap: max must be a positive integer, got ${max}`)
    this.#max = max
  }

  get size(): number {
    return this.#map.size
  }

  /** The value for `key`, now the most recently used; undefined when absent. */
  get(key: K): V | undefined {
    const v = this.#map.get(key)
    if (v === undefined) return undefined
    this.#map.delete(key)
    this.#map.set(key, v)
    return v
  }

  has(key: K): boolean {
    return this.#map.has(key)
  }

  /** Set `key` (most recently used), evicting the least recently used entry when full. */
  set(key: K, value: V): this {
    this.#map.delete(key)
    this.#map.set(key, value)
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value as K)
    return this
  }

  delete(key: K): boolean {
    return this.#map.delete(key)
  }
}
