/**
 * Throttling of failed credentials per client address, so that API keys cannot be guessed at
 * line rate (what fail2ban does for sshd, and what Weka's lockout does per account).
 *
 * Counted: a presented credential that fails (401) and could be a guess. Not counted: requests
 * without a credential, issuer outages (503), and a JWT whose signature verified but which is
 * refused for a claim (expired, not yet valid, wrong audience): a signature cannot be guessed.
 *
 * Once an address has `maxFailures` failures within `window`, it is blocked for `blockDuration`.
 * A blocked address still serves its honest clients, because one address is often many clients
 * (a sidecar sees everyone as 127.0.0.1; an ingress without trustedProxies is every client):
 * - a JWT is checked offline (keys at hand, no fetch) as far as its signature; a good signature
 *   passes on to the full verification, anything else is 429 and counts;
 * - an API key whose digest already succeeded from this address (`prove`) is verified as usual;
 * - any other credential is 429 without being looked up, so a blocked guesser learns nothing,
 *   not even from a right guess. Refusals during a block count, so a guesser who keeps going
 *   stays blocked.
 *
 * Keyed per address, never globally: one address cannot lock out others. IPv6 addresses are
 * keyed by their /64 (one host usually owns a whole /64 and could rotate through it). Behind a
 * trusted proxy, the address is the right-most X-Forwarded-For entry that is not itself a
 * trusted proxy. Both tables are LRUs of a fixed size, so memory stays bounded.
 */
import { isIPv6, type BlockList } from 'node:net'
import { LruMap } from '../lruMap.ts'
import { GatehouseError } from '../errors.ts'
import type { BlockCounts } from '../metrics/metrics.ts'

export interface ThrottleOptions {
  readonly maxFailures: number
  readonly windowMs: number
  readonly blockMs: number
  /** Counts addresses that become blocked (metrics); undefined when metrics are off. */
  readonly counts?: BlockCounts | undefined
  readonly maxAddresses: number
  /** Proven API-key digests kept per address (oldest dropped first). Default 32. */
  readonly maxProvenPerAddress?: number
  /** Clock, for tests. */
  readonly now?: () => number
}

interface Entry {
  failures: number
  windowStart: number
  blockedUntil: number
}

const DEFAULT_PROVEN_PER_ADDRESS = 32

/** The per-address failure table, and the API keys each address has proven. */
export class FailureThrottle {
  readonly #o: ThrottleOptions
  readonly #now: () => number
  readonly #table: LruMap<string, Entry>
  /**
   * Address → digests of API keys that succeeded from it. Its own LRU, so that honest traffic
   * from many addresses can never evict a guesser's failure entry.
   */
  readonly #proven: LruMap<string, Set<string>>
  readonly #maxProven: number
  /** Address → attempts reserved (`reserve`) and not yet settled; an entry exists only while > 0. */
  readonly #inflight = new Map<string, number>()
  #forwardedWarned = false

  constructor(o: ThrottleOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
    this.#table = new LruMap(o.maxAddresses)
    this.#proven = new LruMap(o.maxAddresses)
    this.#maxProven = Math.max(1, o.maxProvenPerAddress ?? DEFAULT_PROVEN_PER_ADDRESS)
  }

  /** Throw 429 when `key` is blocked. Cheap when the address has no recent failures. */
  check(key: string): void {
    const e = this.blocked(key)
    if (e !== undefined) throw e
  }

  /**
   * The 429 error (with Retry-After) when `key` is blocked, else undefined. A block that has
   * ended is forgotten here, with the keys proven before it (they are proven again on use).
   */
  blocked(key: string): GatehouseError | undefined {
    const e = this.#table.get(key)
    if (e === undefined || e.blockedUntil === 0) return undefined
    const left = e.blockedUntil - this.#now()
    if (left > 0) {
      return new GatehouseError('ERR_TOO_MANY_FAILURES', { detail: `address ${key}`, headers: { 'retry-after': String(Math.ceil(left / 1000)) } })
    }
    this.#table.delete(key)
    this.#proven.delete(key)
    return undefined
  }

  /** Record one failed credential from `key`. During a block, failures keep (and may extend) it. */
  fail(key: string): void {
    const now = this.#now()
    let e = this.#table.get(key)
    if (e === undefined) {
      e = { failures: 0, windowStart: now, blockedUntil: 0 }
      this.#table.set(key, e)
    } else if (now - e.windowStart >= this.#o.windowMs) {
      // A new window; an active block is not lifted by it.
      e.failures = 0
      e.windowStart = now
      if (e.blockedUntil <= now) e.blockedUntil = 0
    }
    e.failures++
    if (e.failures >= this.#o.maxFailures) {
      if (e.blockedUntil <= now && this.#o.counts !== undefined) this.#o.counts.blocks++
      e.blockedUntil = Math.max(e.blockedUntil, now + this.#o.blockMs)
    }
  }

  /**
   * Reserve one attempt from `key` before its slow check (a login's password hash), so that
   * parallel attempts cannot outrun the count: 429 when `key` is blocked, or when its failures in
   * the current window plus its attempts in flight already reach `maxFailures`. So at most
   * `maxFailures` attempts are ever failed or in flight per window, however many arrive at once.
   * Every reservation is settled exactly once with `settle`.
   */
  reserve(key: string): void {
    this.check(key)
    const inflight = this.#inflight.get(key) ?? 0
    if (this.#failuresInWindow(key) + inflight >= this.#o.maxFailures) {
      // The attempts in flight decide within a hash or two: either they block the address or room is made.
      throw new GatehouseError('ERR_TOO_MANY_FAILURES', { detail: `address ${key}: ${inflight} attempts in flight`, headers: { 'retry-after': '1' } })
    }
    this.#inflight.set(key, inflight + 1)
  }

  /**
   * Settle a `reserve`d attempt: a failure counts (as `fail`), anything else releases the slot
   * uncounted. True when this failure blocked the address.
   */
  settle(key: string, failed: boolean): boolean {
    const left = (this.#inflight.get(key) ?? 1) - 1
    if (left > 0) this.#inflight.set(key, left)
    else this.#inflight.delete(key)
    if (!failed) return false
    const wasBlocked = this.blocked(key) !== undefined
    this.fail(key)
    return !wasBlocked && this.blocked(key) !== undefined
  }

  #failuresInWindow(key: string): number {
    const e = this.#table.get(key)
    return e === undefined || this.#now() - e.windowStart >= this.#o.windowMs ? 0 : e.failures
  }

  /** Remember that the API key with this digest succeeded from `key`. */
  prove(key: string, digest: string): void {
    let set = this.#proven.get(key)
    if (set === undefined) {
      set = new Set()
      this.#proven.set(key, set)
    } else if (set.has(digest)) return
    if (set.size >= this.#maxProven) set.delete(set.values().next().value as string)
    set.add(digest)
  }

  /** Whether the API key with this digest succeeded from `key` (since its last block ended). */
  isProven(key: string, digest: string): boolean {
    return this.#proven.get(key)?.has(digest) === true
  }

  /**
   * True the first time only: whether to warn that X-Forwarded-For arrives from a peer that is
   * not a trusted proxy (every client behind it shares one throttle address).
   */
  firstUntrustedForward(): boolean {
    if (this.#forwardedWarned) return false
    this.#forwardedWarned = true
    return true
  }

  /** Whether that warning was given (cheap check for the hot path). */
  get untrustedForwardWarned(): boolean {
    return this.#forwardedWarned
  }

  /** Number of addresses tracked (for tests and metrics). */
  get size(): number {
    return this.#table.size
  }
}

/** The throttling key of a request (see the module comment) from its peer and X-Forwarded-For. */
export function clientKey(remoteAddress: string | undefined, forwardedFor: unknown, trusted: BlockList | undefined): string {
  let addr = remoteAddress ?? ''
  if (trusted !== undefined && addr !== '' && isTrusted(trusted, addr) && typeof forwardedFor === 'string') {
    const hops = forwardedFor.split(',')
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] as string).trim()
      if (hop === '') continue
      addr = hop
      if (!isTrusted(trusted, hop)) break
    }
  }
  return addressKey(addr)
}

/** Whether `addr` is in the trusted-proxy list (false for anything that is not an IP address). */
export function isTrusted(list: BlockList, addr: string): boolean {
  try {
    return list.check(addr, isIPv6(addr) ? 'ipv6' : 'ipv4')
  } catch {
    return false // not an IP address at all (a forged X-Forwarded-For entry)
  }
}

/** IPv4 (also IPv4-mapped IPv6) as is; other IPv6 by its /64 prefix. */
export function addressKey(addr: string): string {
  if (!addr.includes(':')) return addr
  const lower = addr.toLowerCase()
  if (lower.startsWith('::ffff:') && lower.includes('.')) return lower.slice(7)
  const groups = expandIPv6(lower)
  return groups === undefined ? lower : `${groups.slice(0, 4).join(':')}::/64`
}

function expandIPv6(addr: string): string[] | undefined {
  const zone = addr.indexOf('%')
  const a = zone === -1 ? addr : addr.slice(0, zone)
  const halves = a.split('::')
  if (halves.length > 2) return undefined
  const head = halves[0] === '' ? [] : (halves[0] as string).split(':')
  const tail = halves.length === 2 && halves[1] !== '' ? (halves[1] as string).split(':') : []
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0
  const all = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail]
  if (all.length !== 8) return undefined
  return all.map((g) => g.replace(/^0+(?=.)/, ''))
}
