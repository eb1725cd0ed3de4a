/**
 * TLS for both listeners: TLS 1.2/1.3 with ECDHE + AEAD suites only (no TLS 1.0/1.1, RC4,
 * 3DES, CBC-SHA1 or export suites), the certificate from files or a self-signed one from the
 * state directory, and rotation without a restart.
 */
import { readFileSync, statSync } from 'node:fs'
import type { SecureContextOptions } from 'node:tls'
import type { Config } from '../config/types.ts'
import { ALLOWED_TLS12_CIPHERS, ALLOWED_TLS13_CIPHERS, checkCertificatePair } from '../config/validate.ts'
import type { Logger } from '../log.ts'
import { ensureSelfSignedCertificate } from './selfsigned.ts'

/** The default cipher list: TLS 1.3 suites, then ECDHE-AEAD TLS 1.2 suites. */
export const DEFAULT_CIPHERS = [...ALLOWED_TLS13_CIPHERS, ...ALLOWED_TLS12_CIPHERS].join(':')

/** Where the certificate comes from. */
export interface CertSource {
  readonly certFile: string
  readonly keyFile: string
  readonly selfSigned: boolean
}

/** Pick the configured files, or ensure the self-signed pair in stateDir exists. */
export function certSource(c: Config, logger: Logger): CertSource {
  if (c.tls.certFile !== undefined && c.tls.keyFile !== undefined) return { certFile: c.tls.certFile, keyFile: c.tls.keyFile, selfSigned: false }
  const r = ensureSelfSignedCertificate(c.stateDir)
  if (r.replacedLegacy) {
    logger.warn(
      { certFile: r.certFile, caFile: r.caFile },
      'replaced the old self-signed certificate (a CA certificate, which rustls/webpki clients refuse from a server) with a server certificate signed by a new local CA; clients that trusted the old file must trust <certFile> or <caFile> again',
    )
  } else if (r.caCreated) {
    logger.info({ certFile: r.certFile, caFile: r.caFile }, 'generated a self-signed certificate (a server certificate signed by a new local CA); clients can trust it with --cacert <certFile> or <caFile>')
  } else if (r.created) {
    logger.info({ certFile: r.certFile, caFile: r.caFile }, 'issued a new server certificate from the local CA; clients that trust <caFile> or <certFile> need no change')
  }
  return { certFile: r.certFile, keyFile: r.keyFile, selfSigned: true }
}

/** Server TLS options for a certificate pair. */
export function tlsOptions(c: Config, src: CertSource): SecureContextOptions & { minVersion: 'TLSv1.2' | 'TLSv1.3' } {
  return {
    cert: readFileSync(src.certFile),
    key: readFileSync(src.keyFile),
    minVersion: c.tls.minVersion,
    ciphers: c.tls.ciphers ?? DEFAULT_CIPHERS,
    honorCipherOrder: true,
  }
}

/** Something whose certificate can be replaced in place (https.Server, tls.Server). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void
}

/**
 * Poll the certificate files and swap the context of every target when both files changed into
 * a valid, matching pair. New handshakes get the new certificate; connections in flight keep
 * theirs. A half-written pair (new certificate, old key) is skipped until it matches.
 *
 * @returns a function that stops watching.
 */
export function watchCertificates(c: Config, src: CertSource, targets: readonly SecureContextTarget[], logger: Logger): () => void {
  if (c.tls.watchInterval === 0) return () => {}
  const stamp = (): string => {
    try {
      const a = statSync(src.certFile)
      const b = statSync(src.keyFile)
      return `${a.ino}:${a.mtimeMs}:${a.size}|${b.ino}:${b.mtimeMs}:${b.size}`
    } catch {
      return 'missing'
    }
  }
  let last = stamp()
  let lastProblem: string | undefined
  const timer = setInterval(() => {
    const now = stamp()
    if (now === last) return
    const problem = checkCertificatePair(src.certFile, src.keyFile)
    if (problem !== undefined) {
      if (problem.message !== lastProblem) logger.warn({ problem: problem.message }, 'certificate files changed but are not a valid pair yet; still serving the previous certificate')
      lastProblem = problem.message
      return
    }
    try {
      const opts = tlsOptions(c, src)
      for (const t of targets) t.setSecureContext(opts)
      last = now
      lastProblem = undefined
      logger.info({ certFile: src.certFile }, 'certificate reloaded')
    } catch (e) {
      logger.warn({ error: (e as Error).message }, 'certificate reload failed; still serving the previous certificate')
    }
  }, c.tls.watchInterval)
  timer.unref()
  return () => clearInterval(timer)
}
