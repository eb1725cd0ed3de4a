/**
 * `gatehouse explain`: judge a described request the way a running `gatehouse serve` with the
 * same configuration would, without an upstream call, and print what each stage decided.
 *
 * Parity with the server is by construction, not by imitation:
 * - the configuration is loaded by the function `serve` uses (`--config`, else
 *   `GATEHOUSE_CONFIG`, else defaults; environment variables over it);
 * - the runtime is compiled by the composition root `serve` uses, with the same verifiers: the
 *   OIDC issuers' and the local issuer's;
 * - the request passes through the functions the handler calls: `checkUrlLength`,
 *   `parseTarget`, `extractCredential`, `classifyRequest`, `authenticate` (behind a fresh
 *   failure throttle: explain cannot see a server's in-memory counters), `authorize`,
 *   `upstreamHeaders`.
 *
 * State is read, never written: the local issuer's public key, users, token generations and
 * revoked families come from `<stateDir>` as the server left them (so revoked tokens are denied);
 * the runtime CA (`security ca-cert set`) is trusted for the issuer fetch as the server trusts
 * it. OIDC keys are fetched from the issuer like the server does; when the issuer cannot be
 * reached, the last good keys the server persisted in `<stateDir>/oidc/` are used (read from a
 * private copy, so that explain never rewrites the server's files, e.g. as another user).
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import os from 'node:os'
import path from 'node:path'
import type { JwtVerifier } from '../auth/authenticate.ts'
import { extractCredential } from '../auth/extract.ts'
import { jwtShape } from '../auth/jwtShape.ts'
import type { OidcRuntime } from '../auth/oidc/setup.ts'
import type { Config } from '../config/types.ts'
import { asGatehouseError } from '../http/respond.ts'
import { parseTarget } from '../http/target.ts'
import type { Principal } from '../http/principal.ts'
import { authorize, checkUrlLength, classifyRequest, forwardedIdentity, WELL_KNOWN_CLASS } from '../pipeline/decide.ts'
import type { IssuerStore } from '../store/store.ts'
import { loadOrReport, UsageError } from './io.ts'

type Values = Record<string, string | boolean | string[] | undefined>

/** Explain one request; exit 0 when explained (allowed or not), 2 on bad input or configuration. */
export async function explain(v: Values): Promise<number> {
  const method = typeof v.method === 'string' ? v.method : undefined
  const p = typeof v.path === 'string' ? v.path : undefined
  if (method === undefined || p === undefined) throw new UsageError('--method and --path are required')
  const given = [v.token !== undefined, v['token-file'] !== undefined, v.anonymous === true].filter(Boolean).length
  if (given > 1) throw new UsageError('give only one of --token, --token-file, --anonymous')
  let token = typeof v.token === 'string' ? v.token : undefined
  if (typeof v['token-file'] === 'string') token = readToken(v['token-file'])
  const headerList = parseHeaders(v.header as string[] | undefined)

  // Exactly what `serve` does: same function, same defaults and environment.
  const r = loadOrReport(typeof v.config === 'string' ? v.config : undefined)
  if (!r.ok || r.config === undefined) return 2
  const c = r.config
  const out: Record<string, unknown> = { method, path: p, config: c.configFile ?? null, stateDir: path.resolve(c.stateDir) }
  const lines: [string, string][] = [['configuration', c.configFile ?? noFileNote()]]
  lines.push(['request', `${method} ${p}`])

  const { compile } = await import('../compose.ts')
  const shape = token === undefined ? undefined : jwtShape(token)
  const iss = typeof shape?.payload.iss === 'string' ? shape.payload.iss : undefined
  const state = new StateReader(c)
  let oidc: OidcRuntime | undefined
  try {
    const verifiers = new Map<string, JwtVerifier>()
    // Verifiers are built only for the issuer the token names: a token routed by its `iss` never
    // reaches another verifier, and building the others would cost fetches and a key import.
    if (iss !== undefined && state.localIss() === iss && c.authentication.local.enabled) verifiers.set(iss, await state.localIssuer())
    if (iss !== undefined && c.authentication.oidc.enabled) {
      oidc = await state.oidc()
      const ver = oidc.verifiers.get(iss)
      if (ver !== undefined) {
        verifiers.set(iss, ver)
        await oidc.settle()
        const st = oidc.status().find((s) => s.issuer === iss)
        if (st !== undefined) {
          const keys = st.ready ? `${st.keys} key${st.keys === 1 ? '' : 's'}, fetched ${st.lastSuccess ?? '?'}` : 'none usable'
          lines.push(['issuer keys', `${keys}${st.lastError === undefined ? '' : ` (last fetch failed: ${st.lastError}; the server's persisted keys were used if any)`}`])
          out.issuerKeys = { ready: st.ready, keys: st.keys, fetchedAt: st.lastSuccess, lastError: st.lastError }
        }
      }
    }
    checkKeysFile(c)
    const rt = compile(c, verifiers)
    const { authenticate } = await import('../pipeline/authenticate.ts')
    const { upstreamHeaders } = await import('../http/headers.ts')

    const headers: Record<string, string> = {}
    const rawHeaders: string[] = []
    for (const [name, value] of headerList) {
      headers[name.toLowerCase()] = value
      rawHeaders.push(name, value)
    }
    if (token !== undefined) {
      headers.authorization = `Bearer ${token}`
      rawHeaders.push('Authorization', `Bearer ${token}`)
    }
    if (headers.host === undefined) {
      headers.host = 'localhost'
      rawHeaders.push('Host', 'localhost')
    }
    const req = { method, url: p, headers, rawHeaders, httpVersionMajor: 1, httpVersionMinor: 1, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
    try {
      checkUrlLength(rt, p)
      const target = parseTarget(p)
      out.normalizedPath = target.path
      lines.push(['normalized path', target.path])
      const { credential, query } = extractCredential(req, target.query, rt.extract)
      out.credential = credential === undefined ? 'none' : `${jwtShape(credential.token) === undefined ? 'API key' : 'JWT'} from ${credential.source}`
      lines.push(['credential', String(out.credential)])
      const cls = classifyRequest(rt, req, method, target.path)
      out.rule = cls.rule
      out.access = cls.access
      lines.push(['profile rule', `${cls.rule} (needs: ${cls.access})`])
      const principal: Principal = await authenticate(rt, credential, cls.access, () => ({ remoteAddress: '127.0.0.1', forwardedFor: undefined }))
      out.authenticator = authenticatorOf(principal)
      out.principal = principal
      lines.push(['authenticator', String(out.authenticator)])
      lines.push(['principal', `user=${principal.user} groups=[${principal.groups.join(',')}] method=${principal.method}`])
      const rule = authorize(rt, principal, cls)
      out.decision = 'allow'
      out.decisionRule = rule
      lines.push(['decision', `allow — ${rule}`])
      if (cls === WELL_KNOWN_CLASS) {
        // Answered by gatehouse itself, never forwarded (Weaviate: 404 when OIDC is off).
        out.answeredBy = 'gatehouse'
        out.status = rt.wellKnown === undefined ? 404 : 200
        lines.push(['answered by', `gatehouse: ${String(out.status)} ${rt.wellKnown === undefined ? '(OIDC is off)' : 'the OIDC discovery document'}`])
      } else {
        const up = upstreamHeaders(req, rt.headers, { principal: forwardedIdentity(cls, principal), requestId: '(generated)', proto: rt.proto })
        const injected: string[] = []
        for (let i = 0; i < up.length; i += 2) if (!(up[i] as string).toLowerCase().startsWith('authorization')) injected.push(`${up[i]}: ${up[i + 1]}`)
        out.answeredBy = 'upstream'
        out.upstreamRequest = { path: target.path, query, headers: injected }
        lines.push(['forwarded as', `${method} ${target.path}${query === '' ? '' : '?…'} to ${c.upstream.url}`])
        lines.push(['headers sent', injected.join('\n' + ' '.repeat(17))])
      }
    } catch (e) {
      const err = asGatehouseError(e)
      out.decision = 'deny'
      out.status = err.status
      out.reason = err.code
      out.message = err.message
      lines.push(['decision', `deny — ${err.status} ${err.code}: ${err.message}${err.detail === undefined ? '' : ` (${err.detail})`}`])
    }
  } finally {
    oidc?.stop()
    state.close()
  }
  if (v.json === true) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  else for (const [k, val] of lines) process.stdout.write(`${`${k}:`.padEnd(16)} ${val}\n`)
  return 0
}

/** The router's name for how a principal was authenticated (what `explain` has always printed). */
function authenticatorOf(p: Principal): 'apikey' | 'jwt' | 'anonymous' {
  return p.method === 'apikey' ? 'apikey' : p.method === 'anonymous' ? 'anonymous' : 'jwt'
}

/** Where no file was read: say so, and how `npm start` differs, so a reader does not trust a judgement on defaults. */
function noFileNote(): string {
  const hint = existsSync('proxy.yaml') ? ' — ./proxy.yaml exists but is not read unless named (npm start runs serve --config proxy.yaml): add --config proxy.yaml' : ''
  return `none: defaults and environment only (name a file with --config FILE or GATEHOUSE_CONFIG, as for serve)${hint}`
}

/**
 * The token of `--token-file`: the access token of a CLI token file (`auth-token.json` from
 * `gatehouse user login`), else the one key of a keys file — blank lines and `#` comment lines
 * are skipped, as the server reads keys files (the generated `<stateDir>/api-keys` starts with a
 * comment line).
 */
function readToken(file: string): string {
  const name = file === '-' ? 'stdin' : file
  let text: string
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8')
  } catch (e) {
    throw new UsageError(`cannot read --token-file ${name} (${(e as NodeJS.ErrnoException).code ?? String(e)}); pass a readable file, or - for stdin`)
  }
  if (text.trimStart().startsWith('{')) {
    let j: unknown
    try {
      j = JSON.parse(text)
    } catch {
      j = undefined
    }
    const t = (j as { access_token?: unknown } | undefined)?.access_token
    if (typeof t === 'string' && t !== '') return t
    throw new UsageError(`--token-file ${name} is JSON without an access_token; pass a token file written by gatehouse user login, or a file holding just the token`)
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  if (tokens.length === 0) throw new UsageError(`--token-file ${name} holds no token (only blank or # comment lines); put the token on a line of its own`)
  if (tokens.length > 1) throw new UsageError(`--token-file ${name} holds ${tokens.length} tokens; explain judges one: put it in a file of its own (or pipe it to --token-file -)`)
  return tokens[0] as string
}

function parseHeaders(list: string[] | undefined): [string, string][] {
  return (list ?? []).map((h) => {
    const i = h.indexOf(':')
    if (i <= 0) throw new UsageError(`--header must look like "Name: value", got ${JSON.stringify(h)}`)
    return [h.slice(0, i).trim(), h.slice(i + 1).trim()]
  })
}

/** A keys file that `serve` would generate on its first start does not exist yet: say so. */
function checkKeysFile(c: Config): void {
  const k = c.authentication.apikey
  if (k.enabled && k.allowedKeysFile !== undefined && !existsSync(k.allowedKeysFile)) {
    const why = k.generateIfMissing ? 'gatehouse serve creates it on its first start (generateIfMissing); start the server once and explain again' : 'create it or fix authentication.apikey.allowedKeysFile'
    throw new Error(`the API key file ${k.allowedKeysFile} does not exist; ${why}`)
  }
}

/**
 * The server's state, read-only. The local issuer is opened for verification only (`readOnly`:
 * no first-start bootstrap, no key generation, no file written; without a signing key no local
 * token can exist, so it is not opened at all) over a store whose writes are refused.
 */
class StateReader {
  readonly #c: Config
  readonly #keyFile: string
  #store: IssuerStore | undefined
  #tmp: string | undefined

  constructor(c: Config) {
    this.#c = c
    this.#keyFile = path.join(c.stateDir, 'issuer', 'signing-key.json')
  }

  /** The local issuer's `iss`, when the server has created its signing key. */
  localIss(): string | undefined {
    try {
      const k = JSON.parse(readFileSync(this.#keyFile, 'utf8')) as { iss?: unknown }
      return typeof k.iss === 'string' ? k.iss : undefined
    } catch {
      return undefined
    }
  }

  async localIssuer(): Promise<JwtVerifier> {
    const [{ LocalIssuer }, { createLogger }] = await Promise.all([import('../issuer/localIssuer.ts'), import('../log.ts')])
    // readOnly: no first-admin bootstrap (it would write <stateDir>/initial-admin-password past the
    // read-only store), no key generation, no dummy password hash.
    return LocalIssuer.open(this.#c, await this.store(), createLogger('silent'), { readOnly: true })
  }

  async oidc(): Promise<OidcRuntime> {
    const [{ createOidc }, { createLogger }, { OutboundTrust }] = await Promise.all([import('../auth/oidc/setup.ts'), import('../log.ts'), import('../upstream/trust.ts')])
    // The JWKS cache persists what it fetches: give it a private copy of the server's files.
    this.#tmp = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-explain-'))
    const persisted = path.join(this.#c.stateDir, 'oidc')
    try {
      if (existsSync(persisted)) cpSync(persisted, path.join(this.#tmp, 'oidc'), { recursive: true })
    } catch {
      // Unreadable (another user's state): explain fetches the keys, as a server without them would.
    }
    const trust = await OutboundTrust.open(await this.store())
    const oidc = await createOidc({ ...this.#c, stateDir: this.#tmp }, createLogger('silent'), { trust })
    oidc.start()
    return oidc
  }

  async store(): Promise<IssuerStore> {
    if (this.#store === undefined) {
      const { FileStore } = await import('../store/fileStore.ts')
      this.#store = readOnly(new FileStore(this.#c.stateDir))
    }
    return this.#store
  }

  close(): void {
    if (this.#tmp !== undefined) rmSync(this.#tmp, { recursive: true, force: true })
  }
}

/** Reads pass through; every write is refused without touching the disk (`createUser` reports "not created"). */
function readOnly(s: IssuerStore): IssuerStore {
  const refuse = (): never => {
    throw new Error('gatehouse explain never changes the state directory')
  }
  return {
    getUser: (u) => s.getUser(u),
    listUsers: () => s.listUsers(),
    isFamilyRevoked: (f) => s.isFamilyRevoked(f),
    lockState: (n, now) => s.lockState(n, now),
    getSetting: (k) => s.getSetting(k),
    generationSync: (u) => s.generationSync(u),
    familyRevokedSync: (f) => s.familyRevokedSync(f),
    createUser: () => Promise.resolve(false),
    setPassword: refuse,
    setRole: refuse,
    bumpGeneration: refuse,
    deleteUser: refuse,
    putRefresh: refuse,
    useRefresh: refuse,
    revokeFamily: refuse,
    reserveAttempt: refuse,
    finishAttempt: refuse,
    clearLocks: refuse,
    putSetting: refuse,
    getSession: (h) => s.getSession(h),
    putSession: refuse,
    touchSession: refuse,
    updateSessionOidc: refuse,
    deleteSession: refuse,
    deleteSessionsOf: refuse,
    deleteSetting: refuse,
  }
}
