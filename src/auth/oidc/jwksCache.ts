/**
 * The JWKS cache of one OIDC issuer, a unit of its own (like Envoy's jwks cache, and unlike
 * go-oidc's, which refetches on every unknown `kid` without a limit).
 *
 * - Keys are fetched by discovery (`<issuer>/.well-known/openid-configuration`, whose `issuer`
 *   must match exactly) or from a fixed `jwksUrl`.
 * - An unknown `kid` refetches at most once per cooldown; concurrent misses share one fetch.
 * - Keys are refreshed in the background every `refreshMs`.
 * - While the issuer is down, the last good keys keep working for `staleIfErrorMs` after the
 *   last successful fetch; with no usable keys, requests get 503 `ERR_IDP_UNAVAILABLE`.
 * - The last good discovery document and JWKS are persisted (atomically) and loaded at start,
 *   so a restart during an outage still validates tokens.
 * - Failed fetches are retried with exponential backoff.
 * - A JWKS with no usable key (empty, only encryption keys, nothing importable) counts as a
 *   failed fetch: it never evicts keys that still verify, and its summary is logged (bounded,
 *   no key material). Private members an issuer publishes by mistake are dropped, with one
 *   warning per issuer (jwkSet.ts).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { KeyObject } from 'node:crypto'
import type { JWK } from 'jose'
import type { Dispatcher } from 'undici'
import { GatehouseError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import type { FetchCounts } from '../../metrics/metrics.ts'
import { writeFileAtomic } from '../../store/atomic.ts'
import { fetchJson, FetchError, type FetchLimits } from './fetch.ts'
import { keyForAlg } from './jws.ts'
import { sortJwks } from './jwkSet.ts'
import { logValue } from './logValue.ts'

/** A key as jose's verify functions take it. */
export type VerifyKey = KeyObject

export interface JwksCacheOptions {
  readonly issuer: string
  /** Fixed JWKS URL; when empty, discovery is used. */
  readonly jwksUrl: string
  readonly dispatcher: Dispatcher
  readonly limits: FetchLimits
  readonly cooldownMs: number
  readonly refreshMs: number
  readonly staleIfErrorMs: number
  /** Where the last good documents are kept; undefined disables persistence. */
  readonly stateDir: string | undefined
  readonly logger: Logger
  /** The clock (tests replace it). */
  readonly now?: () => number
  /** Fetch and failure counters of this issuer (metrics); undefined when metrics are off. */
  readonly counts?: FetchCounts | undefined
}

/** What `/readyz` and the logs show about an issuer. */
export interface JwksStatus {
  readonly issuer: string
  readonly ready: boolean
  readonly keys: number
  readonly lastSuccess: string | undefined
  readonly lastError: string | undefined
  readonly fetches: number
  /** When the keys in use were fetched (ms since epoch); undefined before the first success. */
  readonly fetchedAt?: number | undefined
}

interface Snapshot {
  readonly jwks: readonly JWK[]
  /** Algorithms the discovery document advertises (id_token_signing_alg_values_supported). */
  readonly advertisedAlgs: readonly string[] | undefined
  readonly jwksUri: string
  readonly fetchedAt: number
}

const MAX_BACKOFF_MS = 60_000

export class JwksCache {
  readonly #o: JwksCacheOptions
  readonly #now: () => number
  #snap: Snapshot | undefined
  #imported = new Map<string, VerifyKey>()
  /** keyNow's memo: kid|alg → key, for the snapshot it was found in (only kids that exist). */
  #known = new Map<string, { readonly snap: Snapshot; readonly key: VerifyKey }>()
  #inflight: Promise<void> | undefined
  #lastAttempt = -Infinity
  #lastError: string | undefined
  #failures = 0
  #fetches = 0
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #dispatcher: Dispatcher
  #warnedPrivate = false

  constructor(o: JwksCacheOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
    this.#dispatcher = o.dispatcher
  }

  /** Use a new HTTP client for later fetches (new outbound trust); the old one is closed. */
  setDispatcher(d: Dispatcher): void {
    const old = this.#dispatcher
    this.#dispatcher = d
    void old.close()
  }

  /**
   * The HTTP client of this issuer and its limits (time, bytes): the browser sign-in talks to
   * the issuer's other endpoints (discovery, token) with the same trust and bounds.
   */
  get http(): { readonly dispatcher: Dispatcher; readonly limits: FetchLimits } {
    return { dispatcher: this.#dispatcher, limits: this.#o.limits }
  }

  /** The file the last good documents are kept in. */
  get persistFile(): string | undefined {
    if (this.#o.stateDir === undefined) return undefined
    const id = createHash('sha256').update(this.#o.issuer).digest('hex').slice(0, 16)
    return path.join(this.#o.stateDir, 'oidc', `${id}.json`)
  }

  /** Load persisted keys and start fetching (does not wait for the network). */
  start(): void {
    this.#loadPersisted()
    void this.refresh()
  }

  /** Stop background work. */
  stop(): void {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
  }

  /** True once keys are usable (fetched, or loaded from disk and not beyond stale-if-error). */
  get ready(): boolean {
    return this.#usable()
  }

  status(): JwksStatus {
    return {
      issuer: this.#o.issuer,
      ready: this.#usable(),
      keys: this.#snap?.jwks.length ?? 0,
      lastSuccess: this.#snap === undefined ? undefined : new Date(this.#snap.fetchedAt).toISOString(),
      lastError: this.#lastError,
      fetches: this.#fetches,
      fetchedAt: this.#snap?.fetchedAt,
    }
  }

  /** The algorithms the issuer advertises, or the `alg`s its keys declare. */
  advertisedAlgorithms(): readonly string[] | undefined {
    const s = this.#snap
    if (s === undefined) return undefined
    if (s.advertisedAlgs !== undefined) return s.advertisedAlgs
    const fromKeys = s.jwks.map((k) => k.alg).filter((a): a is string => typeof a === 'string')
    return fromKeys.length > 0 ? [...new Set(fromKeys)] : undefined
  }

  /**
   * The verification key for a token header when it is at hand: keys loaded and fresh, the kid
   * known, the key usable. Undefined otherwise — then `getKey` fetches, waits or explains. The
   * synchronous path of a first-sight token (no promise, no look-up by the key's modulus).
   */
  keyNow(kid: string | undefined, alg: string): VerifyKey | undefined {
    if (!this.#usable()) return undefined
    const snap = this.#snap as Snapshot
    const memoKey = `${kid ?? ''}|${alg}`
    const memo = this.#known.get(memoKey)
    if (memo !== undefined && memo.snap === snap) return memo.key
    const jwk = this.#find(kid, alg)
    if (jwk === undefined) return undefined
    const key = keyForAlg(jwk, alg)
    if (typeof key === 'string') return undefined
    this.#known.set(memoKey, { snap, key })
    return key
  }

  /**
   * The verification key for a token header.
   *
   * @throws GatehouseError ERR_IDP_UNAVAILABLE (no usable keys), ERR_INVALID_TOKEN (no such key)
   */
  async getKey(kid: string | undefined, alg: string): Promise<VerifyKey> {
    if (!this.#usable()) {
      // Join a fetch in flight (bounded by the fetch timeout), or start one after the cooldown.
      if (this.#mayFetch()) await this.#awaitRefresh()
      if (!this.#usable()) throw this.#unavailable()
    }
    let jwk = this.#find(kid, alg)
    if (jwk === undefined && this.#mayFetch()) {
      // Unknown kid: maybe the issuer rotated. One shared refetch per cooldown.
      await this.#awaitRefresh()
      if (!this.#usable()) throw this.#unavailable()
      jwk = this.#find(kid, alg)
    }
    if (jwk === undefined) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: `no key for kid ${logValue(kid ?? null)} and alg ${alg}` })
    const cacheKey = `${jwk.kid ?? ''}|${alg}|${jwk.x ?? jwk.n ?? ''}`
    let key = this.#imported.get(cacheKey)
    if (key === undefined) {
      const k = keyForAlg(jwk, alg)
      if (typeof k === 'string') throw new GatehouseError('ERR_INVALID_TOKEN', { detail: `key ${jwk.kid ?? ''}: ${k}` })
      key = k
      this.#imported.set(cacheKey, key)
    }
    return key
  }

  /** Fetch now (shared with any fetch in flight). Never throws; failures are recorded. */
  refresh(): Promise<void> {
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  /**
   * Wait for the shared refetch, but never longer than one fetch timeout: a refetch is discovery
   * then JWKS, and a slow issuer must not hold a request for twice the configured time. The fetch
   * itself goes on and serves later requests.
   */
  #awaitRefresh(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, this.#o.limits.timeoutMs)
      void this.refresh().then(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  #find(kid: string | undefined, alg: string): JWK | undefined {
    // The snapshot holds only keys that may verify (jwkSet.ts); use is checked again as a backstop.
    const keys = (this.#snap?.jwks ?? []).filter((k) => (k.use === undefined || k.use === 'sig') && (k.alg === undefined || k.alg === alg) && ktyFits(k.kty, alg))
    if (kid !== undefined) return keys.find((k) => k.kid === kid)
    // No kid in the token: acceptable only when exactly one key could have signed it.
    return keys.length === 1 ? keys[0] : undefined
  }

  #mayFetch(): boolean {
    return this.#inflight !== undefined || this.#now() - this.#lastAttempt >= this.#o.cooldownMs
  }

  #usable(): boolean {
    return this.#snap !== undefined && this.#now() - this.#snap.fetchedAt <= this.#o.staleIfErrorMs
  }

  #unavailable(): GatehouseError {
    const retry = Math.max(1, Math.ceil(Math.max(this.#o.cooldownMs - (this.#now() - this.#lastAttempt), 1000) / 1000))
    return new GatehouseError('ERR_IDP_UNAVAILABLE', { headers: { 'retry-after': String(retry) }, detail: this.#lastError ?? 'keys not loaded yet' })
  }

  async #fetch(): Promise<void> {
    this.#lastAttempt = this.#now()
    this.#fetches++
    const o = this.#o
    if (o.counts !== undefined) o.counts.fetches++
    try {
      let jwksUri = o.jwksUrl
      let advertisedAlgs: string[] | undefined
      if (jwksUri === '') {
        const url = `${o.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
        const doc = await fetchJson(url, this.#dispatcher, o.limits)
        // OpenID Connect Discovery §4.3: the issuer must be identical to the one configured.
        if (doc.issuer !== o.issuer) throw new FetchError('not-json', `discovery issuer ${JSON.stringify(doc.issuer)} does not equal the configured issuer ${JSON.stringify(o.issuer)}`)
        if (typeof doc.jwks_uri !== 'string') throw new FetchError('not-json', 'discovery document has no jwks_uri')
        jwksUri = doc.jwks_uri
        const algs = doc.id_token_signing_alg_values_supported
        if (Array.isArray(algs)) advertisedAlgs = algs.filter((a): a is string => typeof a === 'string')
      }
      const set = await fetchJson(jwksUri, this.#dispatcher, o.limits)
      if (!Array.isArray(set.keys)) throw new FetchError('not-json', `${jwksUri} is not a JWK set (no keys array)`)
      // Never keep private key material, even if an issuer publishes it by mistake.
      const sorted = sortJwks(set.keys as unknown[])
      if (sorted.privateMembers.length > 0 && !this.#warnedPrivate) {
        this.#warnedPrivate = true
        o.logger.warn(
          { issuer: o.issuer, members: sorted.privateMembers, kids: sorted.privateKids },
          `the JWKS of ${o.issuer} publishes private key members (${sorted.privateMembers.join(', ')}): they were dropped and only the public parts are used, but those keys must be considered compromised; ask the issuer's operator to rotate them and to publish public keys only. Logged once per issuer.`,
        )
      }
      if (sorted.strong === 0) {
        // An empty or unusable set is a broken answer, not a rotation: keep the last good keys.
        o.logger.warn({ issuer: o.issuer, jwksUri, document: sorted.summary, keptKeys: this.#snap?.jwks.length ?? 0 }, 'the issuer answered a JWKS without a usable signing key; the last good keys stay in use')
        throw new FetchError('no-keys', `${jwksUri} has no usable signing key (use sig, key_ops verify, RSA ≥ 2048 bits, EC or OKP)`)
      }
      const publicOnly = sorted.usable
      this.#setSnapshot({ jwks: publicOnly, advertisedAlgs, jwksUri, fetchedAt: this.#now() })
      this.#persist()
      if (this.#lastError !== undefined || this.#failures > 0) o.logger.info({ issuer: o.issuer, keys: publicOnly.length }, 'issuer keys loaded again')
      this.#lastError = undefined
      this.#failures = 0
      this.#schedule(o.refreshMs)
    } catch (e) {
      this.#failures++
      if (o.counts !== undefined) o.counts.failures++
      this.#lastError = e instanceof FetchError ? e.message : (e as Error).message
      o.logger.warn({ issuer: o.issuer, error: this.#lastError, failures: this.#failures, usableKeys: this.#usable() }, 'fetching issuer keys failed')
      this.#schedule(Math.min(1000 * 2 ** (this.#failures - 1), MAX_BACKOFF_MS, o.refreshMs))
    }
  }

  #setSnapshot(s: Snapshot): void {
    this.#snap = s
    this.#imported = new Map()
    this.#known = new Map()
  }

  #schedule(ms: number): void {
    if (this.#stopped) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.refresh(), ms)
    this.#timer.unref()
  }

  #persist(): void {
    const file = this.persistFile
    if (file === undefined || this.#snap === undefined) return
    try {
      writeFileAtomic(file, JSON.stringify({ version: 1, issuer: this.#o.issuer, ...this.#snap }), 0o600)
    } catch (e) {
      this.#o.logger.warn({ issuer: this.#o.issuer, error: (e as Error).message }, 'could not persist issuer keys')
    }
  }

  #loadPersisted(): void {
    const file = this.persistFile
    if (file === undefined) return
    try {
      const j = JSON.parse(readFileSync(file, 'utf8')) as { version?: number; issuer?: string } & Partial<Snapshot>
      if (j.version !== 1 || j.issuer !== this.#o.issuer || !Array.isArray(j.jwks) || typeof j.fetchedAt !== 'number' || typeof j.jwksUri !== 'string') return
      // A fixed jwksUrl that changed in the config invalidates what was kept.
      if (this.#o.jwksUrl !== '' && j.jwksUri !== this.#o.jwksUrl) return
      // Kept by an earlier version, or edited by hand: sort it like a fetched set.
      this.#setSnapshot({ jwks: sortJwks(j.jwks).usable, advertisedAlgs: j.advertisedAlgs, jwksUri: j.jwksUri, fetchedAt: j.fetchedAt })
      this.#o.logger.info({ issuer: this.#o.issuer, keys: j.jwks.length, fetchedAt: new Date(j.fetchedAt).toISOString() }, 'loaded persisted issuer keys')
    } catch {
      // No or unreadable file: start empty.
    }
  }
}

/** Whether a JWK key type can carry a JWS algorithm. */
function ktyFits(kty: string | undefined, alg: string): boolean {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return kty === 'RSA'
  if (alg.startsWith('ES')) return kty === 'EC'
  if (alg === 'EdDSA' || alg === 'Ed25519') return kty === 'OKP'
  return false
}
