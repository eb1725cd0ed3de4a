/**
 * The candidates of the peer benchmark and how each one is started: its config rendered from
 * bench/peers/* into the run's temp dir, the real binary in its own process pinned to the proxy
 * core with one worker/thread, and what its proof must check (bad credentials, identity).
 */
import { readFileSync, symlinkSync, writeFileSync, mkdirSync, existsSync } from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import type { TestIssuer } from '../../test/helpers/issuer.ts'
import { startProc, waitForPort, freePort, tail, type Proc } from './proc.ts'
import type { BadCredential } from './proof.ts'

export const ROOT = path.resolve(import.meta.dirname, '../..')
const TEMPLATES = path.join(ROOT, 'bench/peers')

/** What every candidate can use. */
export interface Ctx {
  /** The run's temp dir (configs, logs, keys). */
  dir: string
  upPort: number
  upUrl: string
  issuer: TestIssuer
  audience: string
  /** The subject of every good token. */
  subject: string
  /** A good RS256 token with a long exp. */
  goodJwt: string
  /** Forged and invalid tokens every JWT candidate must refuse. */
  badJwts: BadCredential[]
  /** The issuer's JWKS served over https (mod_auth_openidc 2.4.12 refuses an http JWKS URI). */
  jwksHttpsUrl: string
  /** The issuer's public key as an SPKI PEM file (HAProxy's jwt_verify). */
  jwtKeyFile: string
  /** The first-sight pool: one token a line. */
  tokensFile: string
  /**
   * The ES256 first-sight pool (tokens signed by the issuer's ES256 key, see `tokenPool`); the
   * `gh-jwt-first-es256` candidate is not run without it.
   */
  es256TokensFile?: string | undefined
  tls: { certFile: string; keyFile: string; combinedFile: string }
  /** CPU for the proxies (undefined: no pinning). */
  proxyCpu: number | undefined
}

/** A started candidate. */
export interface Running {
  proc: Proc
  url: string
  /** Authorization header of the load; undefined for none. */
  auth: string | undefined
  /** Rotate through these tokens instead (first-sight). */
  tokensFile?: string
  /** Credentials the proof must see refused (empty for pass-through). */
  bad: BadCredential[]
  /** X-Forwarded-User the upstream must see. */
  expectUser?: string
  /** Log files emptied between measurements (O_APPEND writers, so truncation is safe). */
  logs: string[]
}

export interface Candidate {
  id: string
  name: string
  /** Binaries that must be on PATH (or files that must exist). */
  needs: string[]
  start(ctx: Ctx, tls: boolean): Promise<Running>
}

/** Fill `{{NAME}}` placeholders of a template in bench/peers/ and write it to `out`. */
export function render(template: string, vars: Record<string, string | number>, out: string): string {
  let text = readFileSync(path.join(TEMPLATES, template), 'utf8')
  text = text.replace(/\{\{([A-Z_]+)\}\}/g, (_m, k: string) => {
    const v = vars[k]
    if (v === undefined) throw new Error(`${template}: no value for {{${k}}}`)
    return String(v)
  })
  writeFileSync(out, text)
  return out
}

const scheme = (tls: boolean): string => (tls ? 'https' : 'http')

async function startNginxUpstreamLike(ctx: Ctx, id: string, template: string, vars: Record<string, string | number>, cpu: number | undefined): Promise<{ proc: Proc; port: number }> {
  const port = await freePort()
  const conf = render(template, { DIR: ctx.dir, PORT: port, UP_PORT: ctx.upPort, ...vars }, path.join(ctx.dir, `${id}.conf`))
  const proc = startProc(id, ['nginx', '-p', `${ctx.dir}/`, '-c', conf, '-e', path.join(ctx.dir, `${id}-error.log`)], { cpu, logFile: path.join(ctx.dir, `${id}.out`) })
  await waitForPort(port, proc)
  return { proc, port }
}

/**
 * The upstream: nginx `return 200 "ok"`, keep-alive, pinned to the load core. The same server
 * pinned to the proxy core (`name` 'floor') is the latency floor: a request that crosses cores
 * and wakes the other CPU, with no proxying at all.
 */
export async function startUpstream(dir: string, cpu: number | undefined, name = 'upstream'): Promise<{ proc: Proc; port: number }> {
  dir = path.join(dir, name)
  mkdirSync(dir, { recursive: true, mode: 0o755 })
  const port = await freePort()
  const conf = render('nginx-upstream.conf', { DIR: dir, PORT: port }, path.join(dir, 'upstream.conf'))
  const proc = startProc(name, ['nginx', '-p', `${dir}/`, '-c', conf, '-e', path.join(dir, 'upstream-error.log')], { cpu, logFile: path.join(dir, 'upstream.out') })
  await waitForPort(port, proc)
  return { proc, port }
}

const nginx: Candidate = {
  id: 'nginx',
  name: 'nginx proxy_pass (no auth)',
  needs: ['nginx'],
  async start(ctx, tls) {
    const id = `nginx-${scheme(tls)}`
    const vars = {
      NGINX_SSL: tls ? ' ssl' : '',
      NGINX_TLS: tls ? `    ssl_certificate ${ctx.tls.certFile};\n    ssl_certificate_key ${ctx.tls.keyFile};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:1m;` : '',
    }
    const dir = path.join(ctx.dir, id)
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    const { proc, port } = await startNginxUpstreamLike({ ...ctx, dir }, id, 'nginx-proxy.conf', vars, ctx.proxyCpu)
    return { proc, url: `${scheme(tls)}://127.0.0.1:${port}`, auth: undefined, bad: [], logs: [proc.logFile, path.join(dir, 'nginx-access.log')] }
  },
}

function haproxyTlsVars(ctx: Ctx, tls: boolean): Record<string, string> {
  return {
    HAPROXY_SSL: tls ? ` ssl crt ${ctx.tls.combinedFile} alpn http/1.1` : '',
    HAPROXY_GLOBAL_TLS: tls ? '  ssl-default-bind-options ssl-min-ver TLSv1.2' : '',
  }
}

async function startHaproxy(ctx: Ctx, id: string, template: string, vars: Record<string, string>, tls: boolean): Promise<{ proc: Proc; port: number }> {
  const port = await freePort()
  const conf = render(template, { PORT: port, UP_PORT: ctx.upPort, ...haproxyTlsVars(ctx, tls), ...vars }, path.join(ctx.dir, `${id}.cfg`))
  // -db: stay in the foreground, no master process; the per-request log lines go to stdout (the .out file).
  const proc = startProc(id, ['haproxy', '-db', '-f', conf], { cpu: ctx.proxyCpu, logFile: path.join(ctx.dir, `${id}.out`) })
  await waitForPort(port, proc)
  return { proc, port }
}

const haproxy: Candidate = {
  id: 'haproxy',
  name: 'HAProxy pass-through (no auth)',
  needs: ['haproxy'],
  async start(ctx, tls) {
    const { proc, port } = await startHaproxy(ctx, `haproxy-${scheme(tls)}`, 'haproxy-pass.cfg', {}, tls)
    return { proc, url: `${scheme(tls)}://127.0.0.1:${port}`, auth: undefined, bad: [], logs: [proc.logFile] }
  },
}

const haproxyJwt: Candidate = {
  id: 'haproxy-jwt',
  name: 'HAProxy jwt_verify',
  needs: ['haproxy'],
  async start(ctx, tls) {
    const vars = { ISSUER: ctx.issuer.url, AUDIENCE: ctx.audience, JWT_KEY: ctx.jwtKeyFile }
    const { proc, port } = await startHaproxy(ctx, `haproxy-jwt-${scheme(tls)}`, 'haproxy-jwt.cfg', vars, tls)
    return { proc, url: `${scheme(tls)}://127.0.0.1:${port}`, auth: `Bearer ${ctx.goodJwt}`, bad: ctx.badJwts, expectUser: ctx.subject, logs: [proc.logFile] }
  },
}

/**
 * Apache's worker threads in its single child process. mpm_event closes keep-alive connections
 * once every worker is busy, so fewer threads than the 50 load connections turns into resets:
 * 64 threads in ONE process on one core (they take turns, as Node's requests do).
 */
const APACHE_THREADS = 64

const apacheOidc: Candidate = {
  id: 'apache-oidc',
  name: 'Apache + mod_auth_openidc',
  needs: ['apache2', '/usr/lib/apache2/modules/mod_auth_openidc.so'],
  async start(ctx, tls) {
    const id = `apache-${scheme(tls)}`
    const dir = path.join(ctx.dir, id)
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    const port = await freePort()
    const conf = render(
      'apache-oidc.conf',
      {
        DIR: dir,
        PORT: port,
        UP_PORT: ctx.upPort,
        THREADS: APACHE_THREADS,
        JWKS: ctx.jwksHttpsUrl,
        CA: ctx.tls.certFile,
        ISSUER: ctx.issuer.url,
        AUDIENCE: ctx.audience,
        APACHE_TLS_MODULES: tls ? 'LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so\nLoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so' : '',
        APACHE_TLS: tls
          ? `SSLEngine on\nSSLCertificateFile ${ctx.tls.certFile}\nSSLCertificateKeyFile ${ctx.tls.keyFile}\nSSLProtocol -all +TLSv1.2 +TLSv1.3\nSSLSessionCache shmcb:${dir}/ssl_scache(512000)`
          : '',
      },
      path.join(dir, 'apache.conf'),
    )
    const proc = startProc(id, ['apache2', '-f', conf, '-DFOREGROUND'], { cpu: ctx.proxyCpu, logFile: path.join(dir, 'apache.out') })
    try {
      await waitForPort(port, proc)
    } catch (e) {
      throw new Error(`${String(e)}\n${tail(path.join(dir, 'apache-error.log'))}`)
    }
    return { proc, url: `${scheme(tls)}://127.0.0.1:${port}`, auth: `Bearer ${ctx.goodJwt}`, bad: ctx.badJwts, expectUser: ctx.subject, logs: [path.join(dir, 'apache-access.log')] }
  },
}

/** Transpile a baseline script of bench/baselines/ into the temp dir (run by plain node, no loader). */
function transpileBaseline(ctx: Ctx, name: string): string {
  const out = path.join(ctx.dir, 'baselines')
  mkdirSync(out, { recursive: true })
  // Bare imports (jose, http-proxy, undici) resolve through this link to the project's modules.
  if (!existsSync(path.join(ctx.dir, 'node_modules'))) symlinkSync(path.join(ROOT, 'node_modules'), path.join(ctx.dir, 'node_modules'), 'dir')
  const src = readFileSync(path.join(ROOT, 'bench/baselines', `${name}.ts`), 'utf8')
  const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true, verbatimModuleSyntax: false } }).outputText
  const file = path.join(out, `${name}.mjs`)
  writeFileSync(file, js)
  return file
}

async function startBaseline(ctx: Ctx, name: string, tls: boolean, env: Record<string, string>): Promise<{ proc: Proc; url: string }> {
  const file = transpileBaseline(ctx, name)
  const port = await freePort()
  const tlsEnv = tls ? { TLS_CERT_FILE: ctx.tls.certFile, TLS_KEY_FILE: ctx.tls.keyFile } : {}
  const proc = startProc(`${name}-${scheme(tls)}`, [process.execPath, file], {
    cpu: ctx.proxyCpu,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', PORT: String(port), UPSTREAM_URL: ctx.upUrl, ...tlsEnv, ...env },
    logFile: path.join(ctx.dir, `${name}-${scheme(tls)}.out`),
  })
  await waitForPort(port, proc)
  return { proc, url: `${scheme(tls)}://127.0.0.1:${port}` }
}

const nodeJose: Candidate = {
  id: 'node-jose',
  name: 'Node http-proxy + jose jwtVerify',
  needs: [],
  async start(ctx, tls) {
    const { proc, url } = await startBaseline(ctx, 'node-jose', tls, { ISSUER: ctx.issuer.url, AUDIENCE: ctx.audience, JWKS_URL: ctx.issuer.jwksUrl })
    return { proc, url, auth: `Bearer ${ctx.goodJwt}`, bad: ctx.badJwts, expectUser: ctx.subject, logs: [] }
  },
}

const nodeUndici: Candidate = {
  id: 'node-undici',
  name: 'Node undici pass-through (no auth)',
  needs: [],
  async start(ctx, tls) {
    const { proc, url } = await startBaseline(ctx, 'node-undici', tls, {})
    return { proc, url, auth: undefined, bad: [], logs: [] }
  },
}

// --- gatehouse --------------------------------------------------------------------------

const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')
export const API_KEY = 'bench-api-key-0123456789abcdef'
const ADMIN_PASSWORD = 'Bench-Admin-Passw0rd!'

/**
 * Start the real binary; the URLs come from its "gatehouse is ready" log line. `bin` picks another
 * build (a before/after pair of bench/jwt.ts), default this tree's dist/; `nodeArgs` go before it
 * (e.g. `--cpu-prof`, which NODE_OPTIONS does not accept).
 */
export async function startGatehouse(ctx: Pick<Ctx, 'dir' | 'upUrl' | 'tls' | 'proxyCpu'>, id: string, tls: boolean, env: Record<string, string>, yaml?: string, bin = BIN, nodeArgs: readonly string[] = []): Promise<{ proc: Proc; url: string; admin: string | undefined }> {
  const stateDir = path.join(ctx.dir, `${id}-state`)
  const args = [...nodeArgs, bin, 'serve']
  if (yaml !== undefined) {
    const f = path.join(ctx.dir, `${id}.yaml`)
    writeFileSync(f, yaml)
    args.push('--config', f)
  }
  const tlsEnv: Record<string, string> = tls ? { GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_TLS_CERT_FILE: ctx.tls.certFile, GATEHOUSE_TLS_KEY_FILE: ctx.tls.keyFile } : { GATEHOUSE_TLS_ENABLED: 'false' }
  const logFile = path.join(ctx.dir, `${id}.out`)
  const proc = startProc(id, [process.execPath, ...args], {
    cpu: ctx.proxyCpu,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      GATEHOUSE_PORT: '0',
      GATEHOUSE_ADMIN_PORT: '0',
      GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
      GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
      GATEHOUSE_STATE_DIR: stateDir,
      GATEHOUSE_UPSTREAM_URL: ctx.upUrl,
      GATEHOUSE_LOG_LEVEL: 'info',
      ...tlsEnv,
      ...env,
    },
    logFile,
  })
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`${id}: gatehouse exited (code ${proc.exitCode}):\n${tail(logFile)}`)
    let text = ''
    try {
      text = readFileSync(logFile, 'utf8')
    } catch {
      /* not yet */
    }
    for (const line of text.split('\n')) {
      if (!line.includes('gatehouse is ready')) continue
      const j = JSON.parse(line) as { data: string; admin?: string }
      return { proc, url: j.data.replace('localhost', '127.0.0.1'), admin: j.admin }
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${id}: no "gatehouse is ready" line after 20 s:\n${tail(logFile)}`)
}

export function oidcEnv(ctx: Pick<Ctx, 'issuer' | 'audience'>): Record<string, string> {
  return {
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: ctx.issuer.url,
    AUTHENTICATION_OIDC_CLIENT_ID: ctx.audience,
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub',
  }
}

export const ghAnon: Candidate = {
  id: 'gh-anon',
  name: 'gatehouse anonymous pass-through',
  needs: [],
  async start(ctx, tls) {
    const { proc, url } = await startGatehouse(ctx, `gh-anon-${scheme(tls)}`, tls, {})
    return { proc, url, auth: undefined, bad: [], logs: [proc.logFile] }
  },
}

export const ghApiKey: Candidate = {
  id: 'gh-apikey',
  name: 'gatehouse API key',
  needs: [],
  async start(ctx, tls) {
    const env = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY, AUTHENTICATION_APIKEY_USERS: 'bench-key-user' }
    const { proc, url } = await startGatehouse(ctx, `gh-apikey-${scheme(tls)}`, tls, env)
    const bad: BadCredential[] = [
      { label: 'no credential', authorization: undefined },
      { label: 'wrong key', authorization: `Bearer ${API_KEY.slice(0, -1)}X` },
      { label: 'a JWT (API keys only)', authorization: `Bearer ${ctx.goodJwt}` },
    ]
    return { proc, url, auth: `Bearer ${API_KEY}`, bad, expectUser: 'bench-key-user', logs: [proc.logFile] }
  },
}

export const ghJwt: Candidate = {
  id: 'gh-jwt',
  name: 'gatehouse OIDC JWT (cache warm)',
  needs: [],
  async start(ctx, tls) {
    const { proc, url } = await startGatehouse(ctx, `gh-jwt-${scheme(tls)}`, tls, oidcEnv(ctx))
    return { proc, url, auth: `Bearer ${ctx.goodJwt}`, bad: ctx.badJwts, expectUser: ctx.subject, logs: [proc.logFile] }
  },
}

/** The verified-token cache size set for the first-sight candidate: the token pool is larger, so a cyclic walk always misses. */
export const FIRST_SIGHT_CACHE = 10_000

export const ghJwtFirst: Candidate = {
  id: 'gh-jwt-first',
  name: 'gatehouse OIDC JWT (first sight)',
  needs: [],
  async start(ctx, tls) {
    const yaml = `authentication:\n  tokenCache:\n    maxEntries: ${FIRST_SIGHT_CACHE}\n`
    const { proc, url } = await startGatehouse(ctx, `gh-jwt-first-${scheme(tls)}`, tls, oidcEnv(ctx), yaml)
    return { proc, url, auth: `Bearer ${ctx.goodJwt}`, tokensFile: ctx.tokensFile, bad: ctx.badJwts, expectUser: ctx.subject, logs: [proc.logFile] }
  },
}

/**
 * First sight with ES256 (P-256): the same walk over a pool of distinct tokens, signed by the
 * issuer's ES256 key (the issuer publishes it next to the RSA key and advertises both algorithms).
 */
export const ghJwtFirstEs256: Candidate = {
  id: 'gh-jwt-first-es256',
  name: 'gatehouse OIDC JWT ES256 (first sight)',
  needs: [],
  async start(ctx, tls) {
    const pool = ctx.es256TokensFile
    if (pool === undefined) throw new Error('gh-jwt-first-es256: no ES256 token pool (ctx.es256TokensFile; see tokenPool())')
    const first = readFileSync(pool, 'utf8').split('\n')[0] ?? ''
    const yaml = `authentication:\n  tokenCache:\n    maxEntries: ${FIRST_SIGHT_CACHE}\n`
    const { proc, url } = await startGatehouse(ctx, `gh-jwt-first-es256-${scheme(tls)}`, tls, oidcEnv(ctx), yaml)
    return { proc, url, auth: `Bearer ${first}`, tokensFile: pool, bad: ctx.badJwts, expectUser: ctx.subject, logs: [proc.logFile] }
  },
}

/**
 * Write a first-sight pool: `n` distinct tokens (a `jti` each) for `subject`, signed with the
 * issuer's key `kid` (default: its signing key), one a line. Signing runs on the thread pool, so
 * call it before pinning the harness.
 */
export async function tokenPool(issuer: TestIssuer, file: string, n: number, claims: { sub: string; exp: number; iat: number }, kid?: string): Promise<string> {
  const lines: string[] = []
  for (let i = 0; i < n; i += 2000) {
    const k = Math.min(2000, n - i)
    lines.push(...(await Promise.all(Array.from({ length: k }, (_, j) => issuer.sign({ ...claims, jti: `t${i + j}` }, kid === undefined ? {} : { kid })))))
  }
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o644 })
  return file
}

const ghLocal: Candidate = {
  id: 'gh-local',
  name: 'gatehouse local token',
  needs: [],
  async start(ctx, tls) {
    // Local access tokens live 5 minutes by default: longer than any run here.
    const yaml = 'authentication:\n  local:\n    accessTokenLifetime: 1h\n'
    const env = { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD }
    const { proc, url, admin } = await startGatehouse(ctx, `gh-local-${scheme(tls)}`, tls, env, yaml)
    if (admin === undefined) throw new Error('gh-local: no admin listener URL in the ready line')
    const { Agent, request } = await import('undici')
    const dispatcher = new Agent({ connect: { rejectUnauthorized: false } })
    const r = await request(`${admin.replace('localhost', '127.0.0.1')}/api/v2/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
      dispatcher,
    })
    const body = (await r.body.json()) as { data?: { access_token?: string }; access_token?: string }
    await dispatcher.close()
    const token = body.data?.access_token ?? body.access_token
    if (r.statusCode !== 200 || token === undefined) throw new Error(`gh-local: login answered ${r.statusCode} ${JSON.stringify(body)}`)
    const parts = token.split('.')
    const sig = Buffer.from(parts[2] ?? '', 'base64url')
    sig[0] = (sig[0] ?? 0) ^ 0xff
    const bad: BadCredential[] = [
      { label: 'no credential', authorization: undefined },
      { label: 'garbage', authorization: 'Bearer not-a-token' },
      { label: 'local token, corrupted signature', authorization: `Bearer ${parts[0]}.${parts[1]}.${sig.toString('base64url')}` },
      { label: 'an OIDC JWT (no OIDC issuer here)', authorization: `Bearer ${ctx.goodJwt}` },
    ]
    return { proc, url, auth: `Bearer ${token}`, bad, expectUser: 'admin', logs: [proc.logFile] }
  },
}

/** Every candidate, in report order. */
export const ALL: Candidate[] = [nginx, haproxy, haproxyJwt, apacheOidc, nodeUndici, nodeJose, ghAnon, ghApiKey, ghJwt, ghJwtFirst, ghJwtFirstEs256, ghLocal]
