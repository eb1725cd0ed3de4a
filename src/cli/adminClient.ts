/**
 * The HTTP client behind `gatehouse user …` and `gatehouse security …`: where the admin API is
 * (--host / GATEHOUSE_HOST), which certificates to trust (--ca / GATEHOUSE_CA_FILE, else the
 * generated certificate and the certificate the server last served, both in GATEHOUSE_STATE_DIR,
 * else the system CAs — verification is never switched off), the token file (--path / GATEHOUSE_TOKEN_FILE, else
 * ~/.gatehouse/auth-token.json, mode 0600) and transparent refresh of the access token.
 *
 * Every error it raises is an {@link AdminError} whose message is one line that says what went
 * wrong and what to do; tokens and passwords never appear in it (see {@link redactSecrets}).
 */
import { closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, accessSync, chmodSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writeFileAtomic } from '../store/atomic.ts'

/** The default admin API address (SPEC §2). */
export const DEFAULT_HOST = 'https://localhost:14000'
/** Refresh the access token when it expires within this many seconds. */
export const REFRESH_SKEW_SECONDS = 10

/** Options every admin command takes (node:util parseArgs shapes). */
export const COMMON_OPTIONS = {
  host: { type: 'string' },
  ca: { type: 'string' },
  path: { type: 'string' },
} as const

/** The --help text for {@link COMMON_OPTIONS}. */
export const COMMON_HELP =
  'Common options:\n' +
  `  --host URL   the admin API (default $GATEHOUSE_HOST, else ${DEFAULT_HOST})\n` +
  '  --ca FILE    PEM certificate(s) to trust besides the system CAs (default $GATEHOUSE_CA_FILE,\n' +
  '               else $GATEHOUSE_STATE_DIR/tls/self-signed.crt and served.crt when readable)\n' +
  '  --path FILE  the token file (default $GATEHOUSE_TOKEN_FILE, else ~/.gatehouse/auth-token.json)'

/** Parsed flag values as main.ts hands them over. */
export type Values = Record<string, string | boolean | string[] | undefined>

/** A command as main.ts's COMMANDS table holds it. */
export interface AdminCommand {
  readonly usage: string
  readonly options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>
  readonly positionals?: boolean
  run(values: Values, positionals: string[]): Promise<number>
}

import { UsageError } from './usage.ts'

export { UsageError }

/** An error for the user: one line, no secrets; main.ts prints it and exits 1. */
export class AdminError extends Error {
  override name = 'AdminError'
  /** HTTP status when the server answered. */
  readonly status: number | undefined
  /** The server's stable reason code when it sent one. */
  readonly reason: string | undefined

  constructor(message: string, status?: number, reason?: string) {
    super(redactSecrets(message))
    this.status = status
    this.reason = reason
  }
}

// ---------------------------------------------------------------------------------------------
// Secrets: every token and password the CLI handles is registered here, and every message it
// prints on failure passes through redactSecrets().

const SECRETS = new Set<string>()

/** Remember a value that must never be printed (tokens, passwords, private keys). */
export function registerSecret(value: string | undefined): void {
  // Very short values would redact ordinary words; they are never valid tokens or passwords.
  if (value !== undefined && value.length >= 4) SECRETS.add(value)
}

/** Replace every registered secret in `text` with `<redacted>`. */
export function redactSecrets(text: string): string {
  let out = text
  // Longest first, so a secret that contains another one is removed whole.
  for (const s of [...SECRETS].sort((a, b) => b.length - a.length)) out = out.split(s).join('<redacted>')
  return out
}

// ---------------------------------------------------------------------------------------------
// Where: host, trust and token file.

type Env = Readonly<Record<string, string | undefined>>

/** The admin API base URL: --host, else GATEHOUSE_HOST, else the default. A bare host:port means https. */
export function resolveHost(flag: string | undefined, env: Env = process.env): URL {
  const raw = flag ?? nonEmpty(env.GATEHOUSE_HOST) ?? DEFAULT_HOST
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new UsageError(`--host must be a URL like ${DEFAULT_HOST}, got ${JSON.stringify(raw)}`)
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new UsageError(`--host must be an https:// (or http://) URL, got ${JSON.stringify(raw)}`)
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') throw new UsageError(`--host must be a plain URL without query, fragment or credentials, got ${JSON.stringify(u.origin)}`)
  return u
}

/** Which certificates the client trusts (besides the system CAs), and why. */
export interface Trust {
  /** `flag`: --ca; `env`: GATEHOUSE_CA_FILE; `state-dir`: the server's files in GATEHOUSE_STATE_DIR; `system`: the system CAs only. */
  readonly source: 'flag' | 'env' | 'state-dir' | 'system'
  readonly file: string | undefined
  /** More trusted files (state-dir only): the chain the server last served, when it differs from `file`. */
  readonly also?: readonly string[]
}

/**
 * Resolve trust: --ca, else GATEHOUSE_CA_FILE (both must be readable: an explicit choice never
 * falls back silently), else, in `<GATEHOUSE_STATE_DIR>/tls/`, the generated chain
 * `self-signed.crt` (it holds the local CA) and `served.crt` (what the listeners present now,
 * written by the server — after `security tls set` the only way to know it), whichever are
 * readable, else the system CAs.
 */
export function resolveTrust(flag: string | undefined, env: Env = process.env): Trust {
  if (flag !== undefined) return { source: 'flag', file: mustRead(flag, '--ca') }
  const envFile = nonEmpty(env.GATEHOUSE_CA_FILE)
  if (envFile !== undefined) return { source: 'env', file: mustRead(envFile, 'GATEHOUSE_CA_FILE') }
  const stateDir = nonEmpty(env.GATEHOUSE_STATE_DIR)
  if (stateDir !== undefined) {
    const files = ['self-signed.crt', 'served.crt'].map((n) => path.resolve(stateDir, 'tls', n)).filter(readable)
    const [file, ...also] = sameContentRemoved(files)
    if (file !== undefined) return also.length === 0 ? { source: 'state-dir', file } : { source: 'state-dir', file, also }
  }
  return { source: 'system', file: undefined }
}

/** Drop files whose content equals an earlier one (served.crt is a copy of self-signed.crt until `tls set`). */
function sameContentRemoved(files: string[]): string[] {
  const seen = new Set<string>()
  return files.filter((f) => {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch {
      return false
    }
    if (seen.has(text)) return false
    seen.add(text)
    return true
  })
}

/** Every file a {@link Trust} names. */
export function trustFiles(t: Trust): string[] {
  return t.file === undefined ? [] : [t.file, ...(t.also ?? [])]
}

/** The token file: --path, else GATEHOUSE_TOKEN_FILE, else ~/.gatehouse/auth-token.json. */
export function resolveTokenFile(flag: string | undefined, env: Env = process.env, home: string = os.homedir()): string {
  const f = flag ?? nonEmpty(env.GATEHOUSE_TOKEN_FILE)
  return f !== undefined ? path.resolve(f) : defaultTokenFile(home)
}

/** `~/.gatehouse/auth-token.json` for a home directory. */
export function defaultTokenFile(home: string = os.homedir()): string {
  return path.join(home, '.gatehouse', 'auth-token.json')
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v
}

function readable(f: string): boolean {
  try {
    accessSync(f, constants.R_OK)
    return statSync(f).isFile()
  } catch {
    return false
  }
}

function mustRead(f: string, what: string): string {
  const abs = path.resolve(f)
  if (!readable(abs)) throw new AdminError(`cannot read the CA file ${abs} given by ${what}; pass a readable PEM file`)
  return abs
}

// ---------------------------------------------------------------------------------------------
// The token file.

/** What `auth-token.json` holds (Weka's three keys). */
export interface TokenFile {
  access_token: string
  refresh_token?: string
  token_type: string
}

/** Read the token file; undefined when it does not exist. */
export function readTokenFile(file: string): TokenFile | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new AdminError(`cannot read the token file ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); check its permissions or run gatehouse user login`)
  }
  let j: unknown
  try {
    j = JSON.parse(text)
  } catch {
    throw new AdminError(`the token file ${file} is not valid JSON; run gatehouse user login to replace it`)
  }
  const o = j as Partial<Record<keyof TokenFile, unknown>>
  if (typeof j !== 'object' || j === null || typeof o.access_token !== 'string' || o.access_token === '') {
    throw new AdminError(`the token file ${file} has no access_token; run gatehouse user login to replace it`)
  }
  registerSecret(o.access_token)
  const t: TokenFile = { access_token: o.access_token, token_type: typeof o.token_type === 'string' ? o.token_type : 'Bearer' }
  if (typeof o.refresh_token === 'string' && o.refresh_token !== '') {
    registerSecret(o.refresh_token)
    t.refresh_token = o.refresh_token
  }
  return t
}

/**
 * Write the token file atomically with mode 0600. The default directory ~/.gatehouse is kept at
 * 0700; a directory the user chose with --path is created 0700 when missing and left alone
 * otherwise.
 */
export function writeTokenFile(file: string, t: TokenFile, home: string = os.homedir()): void {
  const dir = path.dirname(file)
  const isDefaultDir = path.resolve(dir) === path.resolve(path.dirname(defaultTokenFile(home)))
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 })
  else if (isDefaultDir) chmodSync(dir, 0o700)
  const data = { access_token: t.access_token, ...(t.refresh_token === undefined ? {} : { refresh_token: t.refresh_token }), token_type: t.token_type || 'Bearer' }
  writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600)
}

/** The `exp` claim (seconds) of a JWT, decoded without verification; undefined when absent or not a JWT. */
export function jwtExp(token: string): number | undefined {
  const p = jwtPayload(token)
  return typeof p?.exp === 'number' && Number.isFinite(p.exp) ? p.exp : undefined
}

/** The payload of a JWT, decoded without verification. */
export function jwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || parts[1] === undefined) return undefined
  try {
    const j: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
    return typeof j === 'object' && j !== null && !Array.isArray(j) ? (j as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** True when the access token expires within {@link REFRESH_SKEW_SECONDS} of `nowMs` (or already has). */
export function needsRefresh(token: string, nowMs: number = Date.now()): boolean {
  const exp = jwtExp(token)
  return exp !== undefined && exp * 1000 - nowMs <= REFRESH_SKEW_SECONDS * 1000
}

/**
 * Hold an exclusive lock next to the token file while `fn` runs, so two CLI processes do not
 * both present the same refresh token (the second would look like reuse and revoke the family).
 */
async function withTokenLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`
  const deadline = Date.now() + 10_000
  let fd: number | undefined
  for (;;) {
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      fd = openSync(lock, 'wx', 0o600)
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') break // cannot lock (read-only dir…): go on without
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30_000) rmSync(lock, { force: true }) // stale
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  try {
    return await fn()
  } finally {
    if (fd !== undefined) {
      closeSync(fd)
      rmSync(lock, { force: true })
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The client.

/** The token answer of login and refresh (`data` of `POST /api/v2/login`). */
export interface LoginAnswer {
  access_token: string
  token_type: string
  expires_in?: number | null
  refresh_token?: string
  password_change_required?: boolean
}

/** How a request authenticates. */
export type Auth = 'token-file' | 'none' | { bearer: string }

/** Options for {@link AdminClient}. */
export interface ClientOptions {
  host?: string | undefined
  ca?: string | undefined
  path?: string | undefined
  env?: Env
  home?: string
}

/** Talks to the admin API. Call {@link AdminClient.close} when done. */
export class AdminClient {
  readonly base: URL
  readonly trust: Trust
  readonly tokenFile: string
  private readonly home: string
  private readonly pathGiven: boolean
  private readonly ca: string[] | undefined
  private tokens: TokenFile | undefined

  constructor(opts: ClientOptions = {}) {
    const env = opts.env ?? process.env
    this.home = opts.home ?? os.homedir()
    this.base = resolveHost(opts.host, env)
    this.trust = this.base.protocol === 'https:' ? resolveTrust(opts.ca, env) : { source: 'system', file: undefined }
    this.tokenFile = resolveTokenFile(opts.path, env, this.home)
    this.pathGiven = opts.path !== undefined || nonEmpty(env.GATEHOUSE_TOKEN_FILE) !== undefined
    let ca: string[] | undefined
    if (this.trust.file !== undefined) {
      const pems = trustFiles(this.trust).map((f) => {
        const pem = readFileSync(f, 'utf8')
        if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new AdminError(`the CA file ${f} holds no PEM certificate; pass --ca FILE with the PEM certificate of the CA that issued the server's certificate`)
        return pem
      })
      // In addition to the default CAs (never instead of verification): adminHttp.ts adds them
      // to Node's default store, NODE_EXTRA_CA_CERTS included.
      ca = pems
    }
    this.ca = ca
  }

  /** The host as users typed it, for messages. */
  get hostText(): string {
    return this.base.origin
  }

  /** Nothing to release: every exchange closes its own connection (adminHttp.ts). */
  async close(): Promise<void> {}

  /** The hint for "you need a token". */
  loginHint(): string {
    return `run gatehouse user login${this.pathGiven ? ` --path ${this.tokenFile}` : ''}`
  }

  /** The stored tokens; throws "not logged in" when there is no token file. */
  loadTokens(): TokenFile {
    const t = readTokenFile(this.tokenFile)
    if (t === undefined) throw new AdminError(`not logged in; ${this.loginHint()}`)
    this.tokens = t
    return t
  }

  /** Store tokens from a login or refresh answer. */
  saveTokens(a: LoginAnswer): void {
    const t: TokenFile = { access_token: a.access_token, token_type: a.token_type || 'Bearer' }
    if (a.refresh_token !== undefined) t.refresh_token = a.refresh_token
    writeTokenFile(this.tokenFile, t, this.home)
    this.tokens = t
  }

  /** `POST /api/v2/login`. */
  async login(username: string, password: string, org?: string): Promise<LoginAnswer> {
    registerSecret(password)
    const body: Record<string, string> = { username, password }
    if (org !== undefined) body.org = org
    const data = await this.call('POST', '/api/v2/login', { body, auth: 'none' })
    return loginAnswer(data)
  }

  /**
   * Call the admin API and return the response's `data`. With `auth: 'token-file'` the stored
   * access token is refreshed first when it is about to expire, and once more after a 401.
   */
  async call(method: string, apiPath: string, opts: { body?: unknown; auth?: Auth } = {}): Promise<unknown> {
    const auth = opts.auth ?? 'token-file'
    if (auth === 'none') return (await this.send(method, apiPath, opts.body, undefined)).data
    if (typeof auth === 'object') return (await this.send(method, apiPath, opts.body, auth.bearer)).data
    let t = this.tokens ?? this.loadTokens()
    if (t.refresh_token !== undefined && needsRefresh(t.access_token)) t = await this.refresh(t.access_token)
    try {
      return (await this.send(method, apiPath, opts.body, t.access_token)).data
    } catch (e) {
      if (!tokenRejected(e)) throw e
      if (t.refresh_token === undefined) throw new AdminError(`${e.message}; the stored token no longer works; ${this.loginHint()}`, 401, e.reason)
      t = await this.refresh(t.access_token)
      try {
        return (await this.send(method, apiPath, opts.body, t.access_token)).data
      } catch (e2) {
        if (tokenRejected(e2)) throw new AdminError(`${e2.message}; ${this.loginHint()}`, 401, e2.reason)
        throw e2
      }
    }
  }

  /**
   * Refresh the stored tokens (under a lock). When another process already replaced the access
   * token `stale`, its result is used instead of refreshing again.
   */
  async refresh(stale: string): Promise<TokenFile> {
    return withTokenLock(this.tokenFile, async () => {
      const current = readTokenFile(this.tokenFile)
      if (current === undefined) throw new AdminError(`not logged in; ${this.loginHint()}`)
      if (current.access_token !== stale && !needsRefresh(current.access_token)) {
        this.tokens = current
        return current
      }
      if (current.refresh_token === undefined) throw new AdminError(`the stored access token has expired and there is no refresh token; ${this.loginHint()}`)
      let data: unknown
      try {
        data = (await this.send('POST', '/api/v2/login/refresh', { refresh_token: current.refresh_token }, undefined)).data
      } catch (e) {
        if (e instanceof AdminError && (e.status === 401 || e.status === 400)) {
          throw new AdminError(`the session has expired or was revoked (${e.reason ?? `HTTP ${e.status}`}); ${this.loginHint()}`, e.status, e.reason)
        }
        throw e
      }
      const a = loginAnswer(data)
      a.refresh_token ??= current.refresh_token
      this.saveTokens(a)
      return this.tokens as TokenFile
    })
  }

  /** One HTTP exchange; a non-2xx answer becomes an AdminError with the server's message. */
  private async send(method: string, apiPath: string, body: unknown, bearer: string | undefined): Promise<{ status: number; data: unknown }> {
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + apiPath, this.base.origin)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (bearer !== undefined) {
      registerSecret(bearer)
      headers.authorization = `Bearer ${bearer}`
    }
    let payload: string | undefined
    if (body !== undefined) {
      payload = JSON.stringify(body)
      headers['content-type'] = 'application/json'
    }
    // partialChain: a server certificate given as a trust file (served.crt after
    // `security tls set`, or --ca with the leaf itself) is a trust anchor, as curl treats it.
    // Verification stays on; only the chain may end at a certificate the user chose to trust.
    // Loaded on the first request (node:https and node:tls with it), so --help and usage errors start fast.
    const { exchange } = await import('./adminHttp.ts')
    let res
    try {
      res = await exchange(url, { method, headers, body: payload, extraCa: this.ca, partialChain: this.ca !== undefined, connectTimeoutMs: 10_000, timeoutMs: 30_000, maxBytes: 16 * 1024 * 1024 })
    } catch (e) {
      throw new AdminError(describeConnectError(e, this.base, this.trust))
    }
    const text = res.text
    let json: unknown
    try {
      json = text === '' ? undefined : JSON.parse(text)
    } catch {
      json = undefined
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      const data = typeof json === 'object' && json !== null && 'data' in json ? (json as { data: unknown }).data : json
      return { status: res.statusCode, data }
    }
    const err = (typeof json === 'object' && json !== null ? json : {}) as { message?: unknown; reason?: unknown }
    const reason = typeof err.reason === 'string' ? err.reason : undefined
    let msg = typeof err.message === 'string' && err.message !== '' ? err.message : `HTTP ${res.statusCode} from ${url.origin}${url.pathname} without a gatehouse error body; is ${this.hostText} gatehouse's admin listener?`
    if (reason !== undefined) msg += ` (${reason})`
    const retry = res.headers['retry-after']
    if (res.statusCode === 429 && typeof retry === 'string') msg += `; retry in ${retry} s`
    if (reason === 'ERR_PASSWORD_CHANGE_REQUIRED' && !msg.includes('gatehouse user')) msg += '; change it with gatehouse user passwd'
    if (reason === 'ERR_NOT_FOUND') msg += `; is ${this.hostText} the admin listener of a gatehouse with the admin API?`
    throw new AdminError(msg, res.statusCode, reason)
  }
}

/**
 * A 401 that rejects the bearer token (so a refresh may help) — not a wrong password in the
 * body, which must not be sent twice (it counts towards the lockout).
 */
function tokenRejected(e: unknown): e is AdminError {
  return e instanceof AdminError && e.status === 401 && e.reason !== 'ERR_LOGIN_FAILED'
}

/** The user name a token was issued to, read from its claims without verification (best effort). */
export function tokenUser(token: string): string | undefined {
  const p = jwtPayload(token)
  for (const k of ['username', 'preferred_username', 'sub']) {
    const x = p?.[k]
    if (typeof x === 'string' && x !== '') return x
  }
  return undefined
}

/** Accept `data` as an object or (Weka's documented example) a one-element array. */
function loginAnswer(data: unknown): LoginAnswer {
  const d = (Array.isArray(data) ? data[0] : data) as Partial<LoginAnswer> | undefined
  if (d === undefined || d === null || typeof d.access_token !== 'string') throw new AdminError('the server answered the login without an access token; is --host the admin listener?')
  registerSecret(d.access_token)
  registerSecret(d.refresh_token)
  const a: LoginAnswer = { access_token: d.access_token, token_type: typeof d.token_type === 'string' ? d.token_type : 'Bearer' }
  if (typeof d.refresh_token === 'string') a.refresh_token = d.refresh_token
  if (d.expires_in !== undefined) a.expires_in = d.expires_in
  if (d.password_change_required === true) a.password_change_required = true
  return a
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
])

/** One line for a failure to reach the server: what happened and what to do. */
export function describeConnectError(e: unknown, base: URL, trust: Trust): string {
  const host = base.origin
  const codes: string[] = []
  for (let x: unknown = e, i = 0; x !== undefined && x !== null && i < 5; x = (x as { cause?: unknown }).cause, i++) {
    const c = (x as { code?: unknown }).code
    if (typeof c === 'string') codes.push(c)
  }
  const code = codes.find((c) => !c.startsWith('UND_ERR_')) ?? codes[0] ?? ''
  const files = trustFiles(trust)
  const trusted = files.length === 0 ? 'the system CAs' : `${files.join(', ')} and the system CAs`
  if (UNTRUSTED.has(code)) {
    const todo =
      trust.source === 'system'
        ? 'pass --ca FILE or set GATEHOUSE_STATE_DIR'
        : "pass --ca FILE with the CA certificate that issued the server's certificate"
    return `cannot verify the server certificate of ${host} (${code}; trusted: ${trusted}); ${todo}`
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the server certificate of ${host} does not cover the name ${base.hostname} (${code}); use a --host name the certificate was issued for`
  if (code === 'CERT_HAS_EXPIRED') return `the server certificate of ${host} has expired (${code}); renew it, or pass --ca FILE for a current one`
  if (code === 'CERT_NOT_YET_VALID') return `the server certificate of ${host} is not valid yet (${code}); check the clocks`
  if (code === 'ECONNREFUSED') return `cannot connect to ${host} (connection refused); is gatehouse serve running? pass --host URL or set GATEHOUSE_HOST`
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the host name of ${host} (${code}); check --host or GATEHOUSE_HOST`
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return `${host} did not answer in time (${code}); check --host and that gatehouse is running`
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    return base.protocol === 'https:'
      ? `the TLS connection to ${host} failed (${code}); if the admin listener runs without TLS, use --host http://…`
      : `the connection to ${host} failed (${code}); if the admin listener uses TLS, use --host https://…`
  }
  const msg = e instanceof Error ? e.message : String(e)
  return `cannot reach ${host} (${code === '' ? msg : `${code}: ${msg}`}); check --host and that gatehouse is running`
}

/** Run `fn` with a client and close it afterwards. */
export async function withClient<T>(v: Values, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const c = new AdminClient({ host: str(v.host), ca: str(v.ca), path: str(v.path) })
  try {
    return await fn(c)
  } finally {
    await c.close()
  }
}

/** A string flag value, or undefined. */
export function str(v: string | boolean | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined
}
