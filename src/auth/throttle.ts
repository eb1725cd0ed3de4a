/**
 * Throttling of failed credentials per client address, so that API keys cannot be guessed at
 * line rate (what fail2ban does for sshd, and what Weka's lockout does per account).
 *
 * Counted: a presented credential that fails (401). Not counted: requests without a credential,
 * issuer outages (503). Once an address has `maxFailures` failures within `window`, every request
 * from it that presents a credential is answered 429 with `Retry-After` for `blockDuration`,
 * before any verification — so a blocked guesser learns nothing, not even from a right guess.
 *
 * Keyed per address, never globally: one address cannot lock out others. IPv6 addresses are
 * keyed by their /64 (one host usually owns a whole /64 and could rotate through it). Behind a
 * trusted proxy, the address is the right-most X-Forwarded-For entry that is not itself a
 * trusted proxy. The table is an LRU with a fixed size, so memory stays bounded.
 */
import { isIPv6, type BlockList } from 'node:net'
import { LRUCache } from 'lru-cache'
import { GatehouseError } from '../errors.ts'

export interface ThrottleOptions {
  readonly maxFailures: number
  readonly windowMs: number
  readonly blockMs: number
  readonly maxAddresses: number
  /** Clock, for tests. */
  readonly now?: () => number
}

interface Entry {
  failures: number
  windowStart: number
  blockedUntil: number
}

/** The per-address failure table. */
export class FailureThrottle {
  readonly #o: ThrottleOptions
  readonly #now: () => number
  readonly #table: LRUCache<string, Entry>

  constructor(o: ThrottleOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
    this.#table = new LRUCache({ max: o.maxAddresses })
  }

  /** Throw 429 when `key` is blocked. Cheap when the address has no recent failures. */
  check(key: string): void {
    const e = this.#table.get(key)
    if (e === undefined || e.blockedUntil === 0) return
    const left = e.blockedUntil - this.#now()
    if (left > 0) {
      throw new GatehouseError('ERR_TOO_MANY_FAILURES', { detail: `address ${key}`, headers: { 'retry-after': String(Math.ceil(left / 1000)) } })
    }
    this.#table.delete(key)
  }

  /** Record one failed credential from `key`. */
  fail(key: string): void {
    const now = this.#now()
    let e = this.#table.get(key)
    if (e === undefined || now - e.windowStart >= this.#o.windowMs) {
      e = { failures: 0, windowStart: now, blockedUntil: 0 }
      this.#table.set(key, e)
    }
    e.failures++
    if (e.failures >= this.#o.maxFailures) e.blockedUntil = now + this.#o.blockMs
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

function isTrusted(list: BlockList, addr: string): boolean {
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
