/**
 * Static API keys, Weaviate style (W5, W6): key n maps to user n, or every key to the single
 * user. Only SHA-256 digests are compared: the presented key is hashed and looked up by its
 * digest, so whatever a look-up's timing could reveal is about the digest of the attacker's own
 * guess, never about a stored key (the digest cannot be steered towards a stored one).
 */
import { isSha256Key } from '../config/keys.ts'
import type { Principal } from '../http/principal.ts'
import { tokenDigest } from './tokenCache.ts'

/** Verifies API keys. Build once at start; `authenticate` is pure and synchronous. */
export class ApiKeyVerifier {
  /** Principal by the key's SHA-256, base64url. */
  readonly #byDigest = new Map<string, Principal>()
  readonly #size: number

  /**
   * @param keys plaintext keys or `sha256:<hex>` forms (validated beforehand)
   * @param users one user for all keys, or one per key
   */
  constructor(keys: readonly string[], users: readonly string[]) {
    if (users.length === 0) throw new TypeError('ApiKeyVerifier needs at least one user')
    keys.forEach((key, i) => {
      const digest = isSha256Key(key) ? Buffer.from(key.slice(7), 'hex').toString('base64url') : tokenDigest(key)
      // Config validation refuses equal keys; should two reach here, the first one's user wins.
      if (!this.#byDigest.has(digest)) this.#byDigest.set(digest, Object.freeze({ user: (users[i] ?? users[0]) as string, groups: Object.freeze([]) as readonly string[], method: 'apikey' as const }))
    })
    this.#size = keys.length
  }

  /** The number of configured keys. */
  get size(): number {
    return this.#size
  }

  /** The principal for a key, or undefined when it is not one of ours. */
  authenticate(token: string): Principal | undefined {
    return this.authenticateDigest(tokenDigest(token))
  }

  /** Same, for a key's `tokenDigest` already computed by the caller. */
  authenticateDigest(digest: string): Principal | undefined {
    return this.#byDigest.get(digest)
  }
}
