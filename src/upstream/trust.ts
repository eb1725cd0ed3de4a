/**
 * Outbound trust added at runtime (`security ca-cert set`): one extra CA certificate trusted
 * for TLS to the upstream and to the OIDC issuers, in addition to what the configuration says.
 * Changes reach subscribers (the forwarder, the JWKS caches), which rebuild their connection
 * pools: new connections use the new trust, requests in flight finish on the old ones.
 */
import { X509Certificate } from 'node:crypto'
import { GatehouseError } from '../errors.ts'
import type { StateStore } from '../store/store.ts'

export class OutboundTrust {
  #ca: string | undefined
  readonly #store: StateStore | undefined
  readonly #subscribers = new Set<() => void>()

  private constructor(store: StateStore | undefined, ca: string | undefined) {
    this.#store = store
    this.#ca = ca
  }

  static async open(store: StateStore | undefined): Promise<OutboundTrust> {
    return new OutboundTrust(store, store === undefined ? undefined : await store.getSetting<string>('caCert'))
  }

  /** The extra CA (PEM), if any. */
  get extraCa(): string | undefined {
    return this.#ca
  }

  /** Call `fn` after every change; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.#subscribers.add(fn)
    return () => this.#subscribers.delete(fn)
  }

  status(): Record<string, unknown> {
    if (this.#ca === undefined) return { set: false }
    const x = new X509Certificate(this.#ca)
    return { set: true, subject: x.subject, not_after: new Date(x.validTo).toISOString(), fingerprint256: x.fingerprint256 }
  }

  /** Re-read the stored CA (another worker changed it). */
  async reload(): Promise<void> {
    const ca = this.#store === undefined ? undefined : await this.#store.getSetting<string>('caCert')
    if (ca === this.#ca) return
    this.#ca = ca
    this.#notify()
  }

  async set(pem: unknown): Promise<Record<string, unknown>> {
    if (typeof pem !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'certificate (PEM text) is required' })
    try {
      new X509Certificate(pem)
    } catch {
      throw new GatehouseError('ERR_BAD_CERTIFICATE', { message: 'not a PEM X.509 certificate' })
    }
    await this.#store?.putSetting('caCert', pem)
    this.#ca = pem
    this.#notify()
    return this.status()
  }

  async unset(): Promise<Record<string, unknown>> {
    await this.#store?.deleteSetting('caCert')
    this.#ca = undefined
    this.#notify()
    return this.status()
  }

  #notify(): void {
    for (const fn of this.#subscribers) fn()
  }
}
