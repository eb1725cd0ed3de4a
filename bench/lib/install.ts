/**
 * The peers come from Debian's own packages, installed by the harness when missing (idempotent:
 * nothing is installed when the binaries are there). Package scripts must not start the system
 * services (nginx and Apache on port 80): when no /usr/sbin/policy-rc.d exists, one that denies
 * every start is put in place for the install and removed right after. No /etc config is changed;
 * the peers run from configs generated into a temp dir.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'

/** What the harness needs from Debian, and how to tell it is there. */
export const PEER_PACKAGES: { pkg: string; present: () => boolean }[] = [
  { pkg: 'wrk', present: () => onPath('wrk') },
  { pkg: 'nghttp2-client', present: () => onPath('h2load') },
  { pkg: 'nginx', present: () => onPath('nginx') },
  { pkg: 'haproxy', present: () => onPath('haproxy') },
  { pkg: 'apache2', present: () => onPath('apache2') && existsSync('/usr/lib/apache2/modules/mod_proxy_http.so') },
  { pkg: 'libapache2-mod-auth-openidc', present: () => existsSync('/usr/lib/apache2/modules/mod_auth_openidc.so') },
  // The bulk-body suite's client, and the TLS handshake suite's client (openssl s_time).
  { pkg: 'curl', present: () => onPath('curl') },
  { pkg: 'openssl', present: () => onPath('openssl') },
]

export function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

const POLICY = '/usr/sbin/policy-rc.d'

/** Install the missing packages with apt-get; returns a line per problem (empty when all is there). */
export function ensurePackages(log: (s: string) => void): string[] {
  const missing = PEER_PACKAGES.filter((p) => !p.present()).map((p) => p.pkg)
  if (missing.length === 0) {
    log('peers: wrk, h2load, nginx, haproxy, apache2, mod_auth_openidc, curl and openssl are installed')
    return []
  }
  if (process.getuid?.() !== 0) return [`not root: cannot apt-get install ${missing.join(' ')}; install them or run as root`]
  if (!onPath('apt-get')) return [`no apt-get: install ${missing.join(' ')} by hand`]
  log(`peers: installing ${missing.join(' ')} from Debian (apt-get)`)
  let placedPolicy = false
  if (!existsSync(POLICY)) {
    writeFileSync(POLICY, '#!/bin/sh\n# gatehouse bench: do not start services during package installs\nexit 101\n', { mode: 0o755 })
    placedPolicy = true
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  try {
    const up = spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'pipe'], env, encoding: 'utf8', timeout: 300_000 })
    if (up.status !== 0) log(`apt-get update failed (${up.status}): ${up.stderr?.trim().split('\n').slice(-3).join(' | ')}`)
    const inst = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'pipe'], env, encoding: 'utf8', timeout: 600_000 })
    if (inst.status !== 0) log(`apt-get install failed (${inst.status}): ${inst.stderr?.trim().split('\n').slice(-3).join(' | ')}`)
  } finally {
    if (placedPolicy) rmSync(POLICY, { force: true })
  }
  return PEER_PACKAGES.filter((p) => !p.present()).map((p) => `${p.pkg} is not installed (apt-get failed)`)
}
