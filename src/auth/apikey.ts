/**
 * Static API keys, Weaviate style (W5, W6): key n maps to user n, or every key to the single
 * user. The presented key is hashed and compared with every stored hash in constant time, so
 * neither the match position nor a partial match shows in the timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { isSha256Key } from '../config/keys.ts'
import type { Principal } from './principal.ts'

interface Entry {
  readonly hash: Buffer
  readonly principal: Principal
}

/** Verifies API keys. Build once at start; `authenticate` is pure and synchronous. */
export class ApiKeyVerifier {
  readonly #entries: readonly Entry[]

  /**
   * @param keys plaintext keys or `sha256:<hex>` forms (validated beforehand)
   * @param users one user for all keys, or one per key
   */
  constructor(keys: readonly string[], users: readonly string[]) {
    if (users.length === 0) throw new TypeError('ApiKeyVerifier needs at least one user')
    this.#entries = keys.map((key, i) => ({
      hash: isSha256Key(key) ? Buffer.from(key.slice(7), 'hex') : createHash('sha256').update(key, 'utf8').digest(),
      principal: Object.freeze({ user: (users[i] ?? users[0]) as string, groups: Object.freeze([]) as readonly string[], method: 'apikey' as const }),
    }))
  }

  /** The number of configured keys. */
  get size(): number {
    return this.#entries.length
  }

  /** The principal for a key, or undefined when it is not one of ours. */
  authenticate(token: string): Principal | undefined {
    return this.authenticateDigest(createHash('sha256').update(token, 'utf8').digest())
  }

  /** Same, for a key's SHA-256 digest already computed by the caller. */
  authenticateDigest(h: Buffer): Principal | undefined {
    let found: Principal | undefined
    for (const e of this.#entries) {
      // No early exit: every key is compared.
      if (timingSafeEqual(h, e.hash) && found === undefined) found = e.principal
    }
    return found
  }
}
