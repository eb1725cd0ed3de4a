/**
 * `gatehouse security …`: lockout policy, login banner, the listeners' TLS certificate, the
 * outbound CA certificate and the local issuer's signing keys, through the admin API (docs/api.md). Short human text by default,
 * the server's `data` with --json.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseDuration, formatDuration } from '../config/units.ts'
import { AdminError, COMMON_HELP, COMMON_OPTIONS, registerSecret, str, withClient, type AdminCommand, UsageError, type Values } from './adminClient.ts'

interface Lockout {
  failed_attempts?: number
  lockout_duration?: number
}

interface Banner {
  text?: string
  enabled?: boolean
}

interface TlsStatus {
  source?: string
  subject?: string
  issuer?: string
  not_after?: string
  fingerprint256?: string
  dns_names?: string[]
  ip_addresses?: string[]
}

interface CaStatus {
  set?: boolean
  subject?: string
  not_after?: string
  fingerprint256?: string
}

function out(text: string): void {
  process.stdout.write(`${text}\n`)
}

/** Aligned `key: value` lines, skipping absent values. */
function fields(rows: [string, unknown][]): string {
  const present = rows.filter(([, v]) => v !== undefined && v !== null)
  const w = Math.max(...present.map(([k]) => k.length)) + 1
  return present.map(([k, v]) => `${`${k}:`.padEnd(w)} ${Array.isArray(v) ? (v.length === 0 ? '-' : v.join(', ')) : String(v)}`).join('\n')
}

function noPositionals(pos: string[]): void {
  if (pos.length > 0) throw new UsageError('this command takes no arguments')
}

/** Print `data` as JSON, or the human form. */
function show<T>(v: Values, data: T, human: (d: T) => string): number {
  out(v.json === true ? JSON.stringify(data, null, 2) : human(data))
  return 0
}

function readPem(file: string, flag: string): string {
  try {
    return readFileSync(path.resolve(file), 'utf8')
  } catch (e) {
    throw new AdminError(`cannot read ${flag} ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); pass a readable PEM file`)
  }
}

// ---------------------------------------------------------------------------------------------
// Lockout policy.

function lockoutText(p: Lockout | undefined): string {
  const d = p?.lockout_duration
  return fields([
    ['failed attempts', p?.failed_attempts],
    ['lockout duration', typeof d === 'number' ? `${formatDuration(d * 1000)} (${d} s)` : d],
  ])
}

async function lockoutShow(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => show(v, (await c.call('GET', '/api/v2/lockoutPolicy')) as Lockout, lockoutText))
}

async function lockoutSet(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  const body: Record<string, number | string> = {}
  const n = str(v['failed-attempts'])
  const d = str(v['lockout-duration'])
  if (n === undefined && d === undefined) throw new UsageError('give --failed-attempts N and/or --lockout-duration D')
  if (n !== undefined) {
    if (!/^\d+$/.test(n)) throw new UsageError(`--failed-attempts must be a whole number (2–50), got ${JSON.stringify(n)}`)
    body.failed_attempts = Number(n)
  }
  if (d !== undefined) {
    if (/^\d+$/.test(d)) body.lockout_duration = Number(d)
    else if (parseDuration(d) !== undefined && parseDuration(d) !== Infinity) body.lockout_duration = d
    else throw new UsageError(`--lockout-duration must be seconds or a duration like 30s, 2m, 1h (30 s–60 min), got ${JSON.stringify(d)}`)
  }
  return withClient(v, async (c) => show(v, (await c.call('PUT', '/api/v2/lockoutPolicy', { body })) as Lockout, lockoutText))
}

async function lockoutReset(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => {
    const r = (await c.call('DELETE', '/api/v2/lockoutPolicy')) as Lockout | undefined
    const p = r?.failed_attempts !== undefined ? r : ((await c.call('GET', '/api/v2/lockoutPolicy')) as Lockout)
    return show(v, p, (x) => `lockout policy reset to the defaults; every failure counter and lock cleared\n${lockoutText(x)}`)
  })
}

// ---------------------------------------------------------------------------------------------
// Login banner.

function bannerText(b: Banner | undefined): string {
  const state = b?.enabled === true ? 'enabled' : 'disabled'
  const text = b?.text === undefined || b.text === '' ? '(no text)' : b.text
  return `login banner: ${state}\n${text}`
}

async function bannerShow(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  // Readable without a credential, as clients show it before login.
  return withClient(v, async (c) => show(v, (await c.call('GET', '/api/v2/security/banner', { auth: 'none' })) as Banner, bannerText))
}

async function bannerSet(v: Values, pos: string[]): Promise<number> {
  if (pos.length !== 1) throw new UsageError('give the banner TEXT as one argument (quote it)')
  const text = pos[0] as string
  return withClient(v, async (c) => show(v, (await c.call('PUT', '/api/v2/security/banner', { body: { text } })) as Banner, bannerText))
}

function bannerAction(method: string, apiPath: string) {
  return async (v: Values, pos: string[]): Promise<number> => {
    noPositionals(pos)
    return withClient(v, async (c) => {
      let b = (await c.call(method, apiPath)) as Banner | undefined
      if (b?.enabled === undefined) b = (await c.call('GET', '/api/v2/security/banner', { auth: 'none' })) as Banner
      return show(v, b, bannerText)
    })
  }
}

// ---------------------------------------------------------------------------------------------
// TLS certificate of both listeners.

function tlsText(s: TlsStatus | undefined): string {
  return fields([
    ['source', s?.source],
    ['subject', s?.subject],
    ['issuer', s?.issuer],
    ['not after', s?.not_after],
    ['sha256 fingerprint', s?.fingerprint256],
    ['DNS names', s?.dns_names],
    ['IP addresses', s?.ip_addresses],
  ])
}

async function tlsStatus(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => show(v, (await c.call('GET', '/api/v2/tls')) as TlsStatus, tlsText))
}

async function tlsSet(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  const certFile = str(v.certificate)
  const keyFile = str(v['private-key'])
  if (certFile === undefined || keyFile === undefined) throw new UsageError('both --certificate FILE and --private-key FILE are required')
  const certificate = readPem(certFile, '--certificate')
  const privateKey = readPem(keyFile, '--private-key')
  registerSecret(privateKey)
  return withClient(v, async (c) => {
    const s = (await c.call('POST', '/api/v2/tls', { body: { certificate, private_key: privateKey } })) as TlsStatus
    return show(
      v,
      s,
      (x) => `both listeners present the new certificate from the next connection\n${tlsText(x)}\n(if no CA you trust signed it, pass --ca ${certFile} to later commands)`,
    )
  })
}

async function tlsUnset(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => {
    let s = (await c.call('DELETE', '/api/v2/tls')) as TlsStatus | undefined
    if (s?.source === undefined) s = undefined
    return show(v, s ?? {}, (x) => `the API certificate was removed; the listeners are back to the configured files or the self-signed certificate${x.source === undefined ? '' : `\n${tlsText(x)}`}`)
  })
}

// ---------------------------------------------------------------------------------------------
// CA certificate for outbound TLS.

function caText(s: CaStatus | undefined): string {
  if (s?.set !== true) return 'CA certificate: not set (outbound TLS trusts the system CAs and upstream.caFile)'
  return `CA certificate: set\n${fields([
    ['subject', s.subject],
    ['not after', s.not_after],
    ['sha256 fingerprint', s.fingerprint256],
  ])}`
}

async function caStatus(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => show(v, (await c.call('GET', '/api/v2/security/caCert')) as CaStatus, caText))
}

async function caSet(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  const file = str(v['cert-file'])
  if (file === undefined) throw new UsageError('--cert-file FILE is required')
  const certificate = readPem(file, '--cert-file')
  return withClient(v, async (c) => {
    let s = (await c.call('PUT', '/api/v2/security/caCert', { body: { certificate } })) as CaStatus | undefined
    if (s?.set === undefined) s = (await c.call('GET', '/api/v2/security/caCert')) as CaStatus
    return show(v, s, (x) => `${caText(x)}\ntrusted for outbound TLS to the upstream and the OIDC issuers from the next connection`)
  })
}

async function caUnset(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => {
    let s = (await c.call('DELETE', '/api/v2/security/caCert')) as CaStatus | undefined
    if (s?.set === undefined) s = (await c.call('GET', '/api/v2/security/caCert')) as CaStatus
    return show(v, s, caText)
  })
}

// ---------------------------------------------------------------------------------------------
// The local issuer's signing keys (docs/security.md, "Signing keys").

interface SigningKeyStatus {
  issuer?: string
  current_kid?: string
  keys?: { kid: string; current: boolean; created_at: string | null; retired_at: string | null }[]
}

function signingKeyText(s: SigningKeyStatus): string {
  const keys = s.keys ?? []
  const rows = keys.map((k) => `  ${k.kid}  ${k.current ? 'current' : 'retired'}  created ${k.created_at ?? 'unknown'}${k.retired_at === null ? '' : `  retired ${k.retired_at}`}`)
  return `${fields([
    ['issuer', s.issuer],
    ['current key', s.current_kid],
    ['retired keys', keys.filter((k) => !k.current).length],
  ])}\n${rows.join('\n')}`
}

async function signingKeyStatus(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  return withClient(v, async (c) => show(v, (await c.call('GET', '/api/v2/security/signingKey')) as SigningKeyStatus, signingKeyText))
}

async function signingKeyRotate(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  const revoke = v['revoke-previous'] === true
  return withClient(v, async (c) => {
    const s = (await c.call('POST', '/api/v2/security/signingKey/rotate', { body: { revoke_previous: revoke } })) as SigningKeyStatus
    const note = revoke ? 'every earlier key was dropped: tokens they signed are refused from now on' : 'earlier keys still verify the tokens they signed'
    return show(v, s, (x) => `new tokens are signed with ${x.current_kid ?? '?'}; ${note}\n${signingKeyText(x)}`)
  })
}

// ---------------------------------------------------------------------------------------------
// The command table (merged into main.ts's COMMANDS).

const json = { json: { type: 'boolean' } } as const
const base = { ...COMMON_OPTIONS, ...json }

function cmd(usage: string, run: AdminCommand['run'], extra: AdminCommand['options'] = {}, positionals = false): AdminCommand {
  return { usage: `${usage}\n\n${COMMON_HELP}\n  --json       print the server's data as JSON`, options: { ...base, ...extra }, positionals, run }
}

/** `gatehouse security …`. */
export const SECURITY_COMMANDS: Record<string, AdminCommand> = {
  'security lockout-config show': cmd('gatehouse security lockout-config show [--json]\n\nShow the account lockout policy (admin, readonly).', lockoutShow, {}, true),
  'security lockout-config set': cmd(
    'gatehouse security lockout-config set [--failed-attempts N] [--lockout-duration D] [--json]\n\n' +
      'Change the lockout policy (admin): lock an account after N consecutive failed logins (2–50) for D\n' +
      '(30 s–60 min; seconds or a duration like 90s, 2m, 1h).',
    lockoutSet,
    { 'failed-attempts': { type: 'string' }, 'lockout-duration': { type: 'string' } },
    true,
  ),
  'security lockout-config reset': cmd(
    'gatehouse security lockout-config reset [--json]\n\nReset the lockout policy to the defaults (5 attempts, 2 minutes) and clear every failure counter and lock (admin).',
    lockoutReset,
    {},
    true,
  ),
  'security login-banner show': cmd('gatehouse security login-banner show [--json]\n\nShow the login banner text and whether it is enabled (no login needed).', bannerShow, {}, true),
  'security login-banner set': cmd('gatehouse security login-banner set TEXT [--json]\n\nSet the login banner text (admin; at most 4096 characters). `enable` shows it at login.', bannerSet, {}, true),
  'security login-banner reset': cmd('gatehouse security login-banner reset [--json]\n\nClear the login banner text (admin).', bannerAction('DELETE', '/api/v2/security/banner'), {}, true),
  'security login-banner enable': cmd('gatehouse security login-banner enable [--json]\n\nShow the banner before login (admin).', bannerAction('POST', '/api/v2/security/banner/enable'), {}, true),
  'security login-banner disable': cmd('gatehouse security login-banner disable [--json]\n\nStop showing the banner before login (admin).', bannerAction('POST', '/api/v2/security/banner/disable'), {}, true),
  'security tls status': cmd('gatehouse security tls status [--json]\n\nShow the certificate both listeners present: source (api, files, self-signed), subject, expiry, fingerprint.', tlsStatus, {}, true),
  'security tls set': cmd(
    'gatehouse security tls set --certificate FILE --private-key FILE [--json]\n\n' +
      'Install a certificate (PEM, with its chain) and its unencrypted PEM private key for both listeners\n' +
      '(admin). New connections get it at once, no restart; a key that does not match is refused and the\n' +
      'old certificate stays. Running this again replaces the certificate (rotation).',
    tlsSet,
    { certificate: { type: 'string' }, 'private-key': { type: 'string' } },
    true,
  ),
  'security tls unset': cmd('gatehouse security tls unset [--json]\n\nRemove the certificate installed with `tls set`: back to the configured files or the self-signed certificate (admin).', tlsUnset, {}, true),
  'security ca-cert status': cmd('gatehouse security ca-cert status [--json]\n\nShow the extra CA certificate trusted for outbound TLS (upstream, OIDC issuers).', caStatus, {}, true),
  'security ca-cert set': cmd(
    'gatehouse security ca-cert set --cert-file FILE [--json]\n\nTrust the PEM CA certificate in FILE, in addition to the system CAs and upstream.caFile, for outbound TLS\nto the upstream and the OIDC issuers, from the next connection (admin).',
    caSet,
    { 'cert-file': { type: 'string' } },
    true,
  ),
  'security ca-cert unset': cmd('gatehouse security ca-cert unset [--json]\n\nRemove the extra CA certificate (admin).', caUnset, {}, true),
  'security signing-key status': cmd('gatehouse security signing-key status [--json]\n\nShow the local issuer\'s signing keys: which one signs (current) and which only verify (retired), with\ntheir creation and retirement times (admin, readonly). Never a private key.', signingKeyStatus, {}, true),
  'security signing-key rotate': cmd(
    'gatehouse security signing-key rotate [--revoke-previous] [--json]\n\n' +
      'Generate a new signing key for the local issuer and sign every new token with it (admin). Earlier keys\n' +
      'stay as retired keys, so tokens already issued keep working. With --revoke-previous (after a key leak)\n' +
      'every earlier key is dropped at once: every token they signed is refused, on every replica.',
    signingKeyRotate,
    { 'revoke-previous': { type: 'boolean' } },
    true,
  ),
}
