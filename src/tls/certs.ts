/**
 * The listeners' certificate at runtime. Precedence: a certificate set through the admin API
 * (`security tls set`, kept in the state store) over the configured files over the self-signed
 * one in the state directory. Every change is applied to both listeners with
 * `setSecureContext`: the next handshake presents it, connections in flight keep theirs.
 *
 * Whatever is served is also written to `<stateDir>/tls/served.crt` (public certificates only),
 * so that the CLI on this host can trust exactly what the listeners present after
 * `security tls set` — the state directory is the one place it can learn that from.
 */
import { X509Certificate } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import type { SecureContextOptions } from 'node:tls'
import type { Config } from '../config/types.ts'
import { checkCertificatePem } from '../config/validate.ts'
import { GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { writeFileAtomic } from '../store/atomic.ts'
import type { StateStore } from '../store/store.ts'
import { certSource, tlsOptions, watchCertificates, type CertSource, type SecureContextTarget } from './tls.ts'

interface ApiCert {
  certificate: string
  private_key: string
}

export type CertOrigin = 'api' | 'files' | 'self-signed'

/** The certificate chain the listeners present now, published for the CLI's trust (see the module comment). */
export function servedCertFile(stateDir: string): string {
  return path.join(stateDir, 'tls', 'served.crt')
}

/** Only the CERTIFICATE blocks of a PEM text: never copy anything else out of what an admin uploaded. */
function certificateBlocks(pem: string): string {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => `${b}\n`).join('')
}

export class CertManager {
  readonly #c: Config
  readonly #store: StateStore | undefined
  readonly #logger: Logger
  readonly #targets: SecureContextTarget[] = []
  readonly #files: CertSource
  #origin: CertOrigin
  #certPem: string
  #stopWatch: () => void = () => {}
  #publishFailed = false

  private constructor(c: Config, store: StateStore | undefined, logger: Logger, files: CertSource, origin: CertOrigin, certPem: string) {
    this.#c = c
    this.#store = store
    this.#logger = logger
    this.#files = files
    this.#origin = origin
    this.#certPem = certPem
    this.#publish()
  }

  /** Write the served chain to {@link servedCertFile}; a failure only costs the CLI its automatic trust. */
  #publish(): void {
    const file = servedCertFile(this.#c.stateDir)
    try {
      const pem = certificateBlocks(this.#certPem)
      if (pem === '') return
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      writeFileAtomic(file, pem, 0o644)
      this.#publishFailed = false
    } catch (e) {
      if (!this.#publishFailed) this.#logger.warn({ file, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, 'cannot write the served certificate for the CLI; the CLI needs --ca FILE to verify this server')
      this.#publishFailed = true
    }
  }

  /** Pick the certificate to start with. */
  static async open(c: Config, store: StateStore | undefined, logger: Logger): Promise<CertManager> {
    const files = certSource(c, logger)
    const api = store === undefined ? undefined : await store.getSetting<ApiCert>('tls')
    if (api !== undefined && checkCertificatePem(api.certificate, api.private_key) === undefined) {
      return new CertManager(c, store, logger, files, 'api', api.certificate)
    }
    return new CertManager(c, store, logger, files, files.selfSigned ? 'self-signed' : 'files', readFileSync(files.certFile, 'utf8'))
  }

  /** The file-based source (configured or self-signed), e.g. for the CLI's trust. */
  get fileSource(): CertSource {
    return this.#files
  }

  get origin(): CertOrigin {
    return this.#origin
  }

  /** Options for creating a listener. */
  async options(): Promise<SecureContextOptions & { minVersion: 'TLSv1.2' | 'TLSv1.3' }> {
    if (this.#origin === 'api' && this.#store !== undefined) {
      const api = (await this.#store.getSetting<ApiCert>('tls')) as ApiCert
      return { ...tlsOptions(this.#c, this.#files), cert: api.certificate, key: api.private_key }
    }
    return tlsOptions(this.#c, this.#files)
  }

  /** Apply future changes to these servers, and watch the files while they are in use. */
  attach(targets: SecureContextTarget[]): void {
    this.#targets.push(...targets)
    const relay: SecureContextTarget = {
      setSecureContext: (opts) => {
        if (this.#origin === 'api') return // a certificate set through the API wins over the files
        this.#certPem = String(opts.cert)
        for (const t of this.#targets) t.setSecureContext(opts)
        this.#publish()
      },
    }
    this.#stopWatch = watchCertificates(this.#c, this.#files, [relay], this.#logger)
  }

  stop(): void {
    this.#stopWatch()
  }

  /** `GET /api/v2/tls`. */
  status(): Record<string, unknown> {
    const x = new X509Certificate(this.#certPem)
    const san = x.subjectAltName ?? ''
    return {
      source: this.#origin,
      subject: x.subject,
      issuer: x.issuer,
      not_before: new Date(x.validFrom).toISOString(),
      not_after: new Date(x.validTo).toISOString(),
      fingerprint256: x.fingerprint256,
      dns_names: [...san.matchAll(/DNS:([^,\s]+)/g)].map((m) => m[1]),
      ip_addresses: [...san.matchAll(/IP Address:([^,\s]+)/g)].map((m) => m[1]),
    }
  }

  /** `POST /api/v2/tls`: validate, keep, and hot-swap both listeners. */
  async set(certificate: unknown, privateKey: unknown): Promise<Record<string, unknown>> {
    if (typeof certificate !== 'string' || typeof privateKey !== 'string') throw new GatehouseError('ERR_BAD_REQUEST', { message: 'certificate and private_key (PEM text) are required' })
    const p = checkCertificatePem(certificate, privateKey)
    if (p !== undefined) throw new GatehouseError('ERR_BAD_CERTIFICATE', { message: `${p.part === 'key' ? 'private key' : 'certificate'}: ${p.message}; ${p.remedy}. The current certificate stays in use.` })
    const opts = { ...tlsOptions(this.#c, this.#files), cert: certificate, key: privateKey }
    // Build the context before storing anything: if OpenSSL refuses it, nothing changes.
    for (const t of this.#targets) t.setSecureContext(opts)
    if (this.#store === undefined) throw new GatehouseError('ERR_INTERNAL', { detail: 'no state store' })
    await this.#store.putSetting('tls', { certificate, private_key: privateKey } satisfies ApiCert)
    this.#origin = 'api'
    this.#certPem = certificate
    this.#publish()
    this.#logger.info({ fingerprint256: new X509Certificate(certificate).fingerprint256 }, 'TLS certificate set through the admin API')
    return this.status()
  }

  /** Re-read the stored certificate (another worker changed it) and apply it here. */
  async reload(): Promise<void> {
    const api = this.#store === undefined ? undefined : await this.#store.getSetting<ApiCert>('tls')
    if (api !== undefined && checkCertificatePem(api.certificate, api.private_key) === undefined) {
      if (this.#origin === 'api' && this.#certPem === api.certificate) return
      const opts = { ...tlsOptions(this.#c, this.#files), cert: api.certificate, key: api.private_key }
      for (const t of this.#targets) t.setSecureContext(opts)
      this.#origin = 'api'
      this.#certPem = api.certificate
      this.#publish()
      return
    }
    if (this.#origin !== 'api') return
    const opts = tlsOptions(this.#c, this.#files)
    for (const t of this.#targets) t.setSecureContext(opts)
    this.#origin = this.#files.selfSigned ? 'self-signed' : 'files'
    this.#certPem = String(opts.cert)
    this.#publish()
  }

  /** `DELETE /api/v2/tls`: back to the files or the self-signed certificate. */
  async unset(): Promise<Record<string, unknown>> {
    await this.#store?.deleteSetting('tls')
    const opts = tlsOptions(this.#c, this.#files)
    for (const t of this.#targets) t.setSecureContext(opts)
    this.#origin = this.#files.selfSigned ? 'self-signed' : 'files'
    this.#certPem = String(opts.cert)
    this.#publish()
    this.#logger.info({ source: this.#origin }, 'TLS certificate unset; back to the default')
    return this.status()
  }
}
