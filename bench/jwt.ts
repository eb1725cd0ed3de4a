/**
 * What a credential costs gatehouse, as same-noise pairs of the real binary:
 *
 *   npm run build --silent && node --import tsx bench/jwt.ts [--rounds 5] [--secs 3] [--tls]
 *                                      [--pairs jwt/anon,apikey/anon,first-rs256/jwt,first-es256/jwt]
 *                                      [--before /tmp/dist-before] [--dist <dist dir measured>]
 *   node --import tsx bench/jwt.ts --stage [--rounds 7] [--before /tmp/dist-before]
 *
 * Each pair loads both processes at once (a wrk each, 50 connections) on the proxy core, so a
 * burst of the machine's noise hits both; the figures are per round: A ÷ B of CPU µs/request, and
 * A − B, the CPU a request of mode A adds over mode B (e.g. first sight − warm = what verifying a
 * never-seen token adds). With `--before <dist dir>` every pair is instead one mode of this
 * tree's build (A) against the same mode of that build (B): the before/after pair of a change.
 *
 * Layout as in bench/peers.ts: the proxies pinned to CPU 1, wrk and the upstream (nginx
 * `return 200`, or a Node upstream without nginx) on CPU 0; every process started here is on
 * 127.0.0.1 and stopped at the end; every load run is bounded in time. Each mode is first proven
 * to accept its good credential (with the right X-Forwarded-User) and to refuse bad ones.
 *
 * `--stage` measures the authentication stage alone, in process (see `runStage`): the added
 * cost of a never-seen token without the network stack's noise.
 *
 * `runJwt(opts)` returns the markdown section and the bars (CPU µs/request per mode) for the
 * peer benchmark to include.
 */
import type { JsonWebKey } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { startIssuer } from '../test/helpers/issuer.ts'
import { API_KEY, FIRST_SIGHT_CACHE, ROOT, oidcEnv, startGatehouse, startUpstream, tokenPool } from './lib/candidates.ts'
import { generateSelfSignedCertificate } from '../src/tls/selfsigned.ts'
import type { Bar } from './lib/chart.ts'
import { onPath } from './lib/install.ts'
import { runWrk, stopLoad, type LoadResult } from './lib/load.ts'
import { cpuDelta, cpuSnapshot, hasTaskset, killAllSync, pinSelf, stopProc, truncateQuiet, type Proc } from './lib/proc.ts'
import { proofBadTokens, prove, type BadCredential } from './lib/proof.ts'
import { median } from './lib/report.ts'

/** The modes a pair can name. */
export type JwtMode = 'anon' | 'apikey' | 'jwt' | 'first-rs256' | 'first-es256'

const MODE_NAME: Readonly<Record<JwtMode, string>> = {
  anon: 'anonymous pass-through',
  apikey: 'API key',
  jwt: 'OIDC JWT, cache warm (RS256)',
  'first-rs256': 'OIDC JWT, first sight, RS256',
  'first-es256': 'OIDC JWT, first sight, ES256',
}

/** The default pairs, with the target for A ÷ B (or A − B). */
export const JWT_PAIRS: readonly (readonly [JwtMode, JwtMode, string])[] = [
  ['jwt', 'anon', '≤ 1.05×'],
  ['apikey', 'anon', '≤ 1.05×'],
  ['first-rs256', 'jwt', 'A − B ≤ 40 µs'],
  ['first-es256', 'jwt', '— (measured)'],
]

export interface JwtOptions {
  rounds?: number
  /** Seconds per round. */
  secs?: number
  tls?: boolean
  pairs?: readonly (readonly [JwtMode, JwtMode, string])[]
  /** A dist/ directory of another build: every pair becomes mode (this build) ÷ mode (that build). */
  before?: string | undefined
  /** The build measured (default: this tree's dist/). */
  dist?: string | undefined
  /** Extra environment of side B only (e.g. NODE_OPTIONS): a pair of one build with two settings. */
  bEnv?: Record<string, string>
  /** Distinct tokens per first-sight pool (more than the cache holds, so every request misses). */
  tokens?: number
  log?: (s: string) => void
}

export interface PairFigures {
  a: string
  b: string
  target: string
  /** A ÷ B of CPU µs/request, per round. */
  ratios: number[]
  /** A − B of CPU µs/request, per round. */
  addedUs: number[]
  /** CPU µs/request of A and of B, per round. */
  aUs: number[]
  bUs: number[]
}

const CONNECTIONS = 50
const SUBJECT = 'bench-user'
const AUDIENCE = 'gatehouse'

/** Run the pairs; the processes it starts are stopped before it returns. */
export async function runJwt(opts: JwtOptions = {}): Promise<{ markdown: string; bars: Bar[]; pairs: PairFigures[] }> {
  const rounds = opts.rounds ?? 5
  const secs = opts.secs ?? 3
  const tls = opts.tls ?? false
  const log = opts.log ?? ((s: string) => console.error(s))
  const pairSpecs = opts.before === undefined ? (opts.pairs ?? JWT_PAIRS) : (opts.pairs ?? JWT_PAIRS).map(([a]) => [a, a, '—'] as const)
  const pin = hasTaskset && os.cpus().length >= 2
  const proxyCpu = pin ? 1 : undefined
  const loadCpu = pin ? 0 : undefined
  if (!onPath('wrk')) throw new Error('bench/jwt.ts needs wrk (Debian package wrk)')

  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-jwt-'))
  const procs: Proc[] = []
  const issuer = await startIssuer({ audience: AUDIENCE })
  let nodeUp: http.Server | undefined
  try {
    const esKid = await issuer.keys.addKey('ES256')
    const now = Math.floor(Date.now() / 1000)
    const claims = { sub: SUBJECT, iat: now, exp: now + 86_400 }
    const goodJwt = await issuer.sign(claims)
    const nTokens = opts.tokens ?? 2 * FIRST_SIGHT_CACHE
    const modes = new Set(pairSpecs.flatMap(([a, b]) => [a, b]))
    // Signing uses the thread pool (both cores): before pinning.
    const rsPool = modes.has('first-rs256') ? await tokenPool(issuer, path.join(dir, 'rs256.txt'), nTokens, claims) : undefined
    const esPool = modes.has('first-es256') ? await tokenPool(issuer, path.join(dir, 'es256.txt'), nTokens, claims, esKid) : undefined
    if (pin) pinSelf(loadCpu as number)

    let upUrl: string
    if (onPath('nginx')) {
      const up = await startUpstream(dir, loadCpu)
      procs.push(up.proc)
      upUrl = `http://127.0.0.1:${up.port}`
    } else {
      nodeUp = http.createServer((req, res) => {
        const body = req.url === '/whoami' ? `user=${String(req.headers['x-forwarded-user'] ?? '')}` : 'ok'
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      await new Promise<void>((r) => nodeUp?.listen(0, '127.0.0.1', r))
      upUrl = `http://127.0.0.1:${(nodeUp.address() as AddressInfo).port}`
    }
    const cert = generateSelfSignedCertificate({ commonName: 'gatehouse bench', days: 2 })
    const tlsFiles = { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem'), combinedFile: path.join(dir, 'combined.pem') }
    writeFileSync(tlsFiles.certFile, cert.certPem, { mode: 0o644 })
    writeFileSync(tlsFiles.keyFile, cert.keyPem, { mode: 0o600 })
    const ctx = { dir, upUrl, tls: tlsFiles, proxyCpu, issuer, audience: AUDIENCE }
    const bad = await proofBadTokens(issuer, goodJwt, SUBJECT)

    /** Start one mode of one build and prove it. */
    const start = async (mode: JwtMode, bin: string, tag: string, extraEnv: Record<string, string> = {}): Promise<Running> => {
      const cache = `authentication:\n  tokenCache:\n    maxEntries: ${FIRST_SIGHT_CACHE}\n`
      const spec: { env: Record<string, string>; yaml?: string; auth?: string; tokens?: string; bad: BadCredential[]; user?: string } =
        mode === 'anon'
          ? { env: {}, bad: [] }
          : mode === 'apikey'
            ? { env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY, AUTHENTICATION_APIKEY_USERS: SUBJECT }, auth: `Bearer ${API_KEY}`, bad: [{ label: 'wrong key', authorization: `Bearer ${API_KEY}x` }, { label: 'none', authorization: undefined }], user: SUBJECT }
            : mode === 'jwt'
              ? { env: oidcEnv(ctx), auth: `Bearer ${goodJwt}`, bad, user: SUBJECT }
              : { env: oidcEnv(ctx), yaml: cache, auth: `Bearer ${goodJwt}`, tokens: mode === 'first-rs256' ? rsPool : esPool, bad, user: SUBJECT }
      const id = `${mode}-${tag}`
      const { proc, url } = await startGatehouse(ctx, id, tls, { ...spec.env, ...extraEnv }, spec.yaml, bin)
      procs.push(proc)
      const p = await prove({ url, good: spec.auth, bad: spec.bad, expectUser: spec.user })
      if (!p.ok) throw new Error(`${id} failed its proof: ${p.lines.filter((l) => l.startsWith('FAIL')).join('; ')}`)
      log(`${id}: proof ok (${p.refused.length} bad refused)`)
      return { proc, url, auth: spec.auth, tokens: spec.tokens, log: proc.logFile }
    }

    const here = path.join(path.resolve(opts.dist ?? path.join(ROOT, 'dist')), 'bin/gatehouse.js')
    const old = opts.before === undefined ? undefined : path.join(path.resolve(opts.before), 'bin/gatehouse.js')
    const results: PairFigures[] = []
    const perMode = new Map<string, number[]>()
    for (const [ma, mb, target] of pairSpecs) {
      const a = await start(ma, here, 'a')
      const b = old === undefined ? await start(mb, here, 'b', opts.bEnv) : await start(mb, old, 'before', opts.bEnv)
      const fig: PairFigures = {
        a: `${MODE_NAME[ma]}${old === undefined ? '' : ' (this build)'}`,
        b: `${MODE_NAME[mb]}${old === undefined ? '' : ' (before)'}`,
        target,
        ratios: [],
        addedUs: [],
        aUs: [],
        bUs: [],
      }
      // Warm-up: JIT, the upstream pool, the JWKS cache; the first-sight pools fill the cache once.
      await Promise.all([load(a, 3, loadCpu), load(b, 3, loadCpu)])
      for (let r = 0; r < rounds; r++) {
        for (const x of [a, b]) truncateQuiet(x.log)
        const sa = cpuSnapshot(a.proc.pid)
        const sb = cpuSnapshot(b.proc.pid)
        // Alternate which wrk starts first, so neither is always the one a round begins with.
        const [ra, rb] = r % 2 === 0 ? await Promise.all([load(a, secs, loadCpu), load(b, secs, loadCpu)]) : (await Promise.all([load(b, secs, loadCpu), load(a, secs, loadCpu)])).reverse() as [LoadResult, LoadResult]
        const ca = cpuDelta(sa, cpuSnapshot(a.proc.pid))
        const cb = cpuDelta(sb, cpuSnapshot(b.proc.pid))
        if (ra.errors > 0 || rb.errors > 0 || ra.requests === 0 || rb.requests === 0) {
          log(`round ${r + 1} not counted: ${ra.requests} / ${rb.requests} requests, errors ${ra.errorDetail} / ${rb.errorDetail}`)
          continue
        }
        const ua = (ca * 1e6) / ra.requests
        const ub = (cb * 1e6) / rb.requests
        fig.aUs.push(ua)
        fig.bUs.push(ub)
        fig.ratios.push(ua / ub)
        fig.addedUs.push(ua - ub)
        log(`${ma} / ${mb} round ${r + 1}: ${ua.toFixed(1)} / ${ub.toFixed(1)} µs/req = ${(ua / ub).toFixed(3)}×, +${(ua - ub).toFixed(1)} µs`)
      }
      results.push(fig)
      for (const [k, v] of [[fig.a, fig.aUs], [fig.b, fig.bUs]] as const) perMode.set(k, [...(perMode.get(k) ?? []), ...v])
      await stopProc(a.proc)
      await stopProc(b.proc)
    }

    const f = (xs: number[], d = 2): string => (xs.length === 0 ? 'n/a' : `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`)
    const md: string[] = []
    md.push(`| A | B | A ÷ B, median (range) | A − B µs/req, median (range) | A µs/req | B µs/req | target |`)
    md.push('| --- | --- | ---: | ---: | ---: | ---: | --- |')
    for (const p of results) md.push(`| ${p.a} | ${p.b} | ${f(p.ratios)}× | ${f(p.addedUs, 1)} | ${f(p.aUs, 1)} | ${f(p.bUs, 1)} | ${p.target} |`)
    md.push('')
    md.push(
      `${rounds} round(s) × ${secs} s per pair, both processes of a pair loaded at once (wrk -t1 -c${CONNECTIONS} each${pin ? ', on CPU 0; both gatehouse processes on CPU 1' : ''}), ${tls ? 'HTTPS (TLS terminated by gatehouse)' : 'plain HTTP/1.1'}, GET of a 2-byte body; first sight walks ${nTokens} distinct tokens against a ${FIRST_SIGHT_CACHE}-entry cache, so every request verifies a signature.`,
    )
    const bars: Bar[] = [...perMode].map(([label, xs]) => ({ label: `gatehouse ${label}`, kind: 'gatehouse' as const, value: median(xs), min: Math.min(...xs), max: Math.max(...xs) }))
    return { markdown: md.join('\n') + '\n', bars, pairs: results }
  } finally {
    stopLoad()
    // Only what this run started: a caller's processes (e.g. its upstream) must live on.
    for (const p of procs) await stopProc(p)
    nodeUp?.close()
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One measured figure of the authentication stage: CPU µs per call, one value per round. */
export interface StageFigure {
  label: string
  us: number[]
}

/**
 * The authentication stage alone, in this process (pinned to the proxy core): the CPU of
 * `Authenticator.authenticate()` of a build's dist/ per call, for a cached token (hit), a
 * never-seen RS256 and ES256 token (miss: decode, signature, claims, principal, cache insert with
 * eviction), and node:crypto's `verify` alone on the same tokens. Rounds interleave the cases (and
 * the builds, with `before`), so they share the machine's noise; what a miss adds is miss − hit.
 * Without the network stack around it this is the figure the first-sight goal is about: a pair of
 * whole processes at different throughputs also differs in how many requests each wake-up
 * batches, which moves CPU per request by more than the few µs looked for here.
 */
export async function runStage(opts: { rounds?: number; calls?: number; dist?: string; before?: string | undefined; log?: (s: string) => void } = {}): Promise<{ markdown: string; figures: StageFigure[] }> {
  const rounds = opts.rounds ?? 7
  const calls = opts.calls ?? 4000
  const log = opts.log ?? ((s: string) => console.error(s))
  const { Agent } = await import('undici')
  const { verify } = await import('node:crypto')
  const issuer = await startIssuer({ audience: AUDIENCE })
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-jwt-stage-'))
  const stops: (() => void)[] = []
  let pinned = false
  try {
    const esKid = await issuer.keys.addKey('ES256')
    const now = Math.floor(Date.now() / 1000)
    const claims = { sub: SUBJECT, iat: now, exp: now + 86_400 }
    // More tokens than the verified-token cache below holds: a cyclic walk always misses.
    const pool = 3 * 1000
    const rs = await Promise.all(Array.from({ length: pool }, (_, i) => issuer.sign({ ...claims, jti: `r${i}` })))
    const es = await Promise.all(Array.from({ length: pool }, (_, i) => issuer.sign({ ...claims, jti: `e${i}` }, { kid: esKid })))
    // On the proxy core for the measurement; back on the load core (bench/peers.ts's layout) after.
    pinned = hasTaskset && os.cpus().length >= 2 && pinSelf(1)
    const builds = [{ tag: '', dist: opts.dist ?? path.join(ROOT, 'dist') }, ...(opts.before === undefined ? [] : [{ tag: ' (before)', dist: path.resolve(opts.before) }])]
    type Auth = { authenticate(c: { token: string; source: 'authorization' }, access: 'read'): unknown }
    const cases: { label: string; run: (i: number) => void }[] = []
    for (const b of builds) {
      const imp = (m: string): Promise<Record<string, unknown>> => import(pathToFileURL(path.join(b.dist, m)).href) as Promise<Record<string, unknown>>
      const { JwksCache } = (await imp('auth/oidc/jwksCache.js')) as { JwksCache: new (o: unknown) => { start(): void; stop(): void; refresh(): Promise<void> } }
      const { OidcVerifier } = (await imp('auth/oidc/verifier.js')) as { OidcVerifier: new (o: unknown) => unknown }
      const { Authenticator } = (await imp('auth/authenticate.js')) as { Authenticator: new (o: unknown) => Auth }
      const { TokenCache } = (await imp('auth/tokenCache.js')) as { TokenCache: new (o: unknown) => unknown }
      const { default: pino } = await import('pino')
      const cache = new JwksCache({ issuer: issuer.url, jwksUrl: '', dispatcher: new Agent(), limits: { timeoutMs: 5000, maxBytes: 65_536 }, cooldownMs: 60_000, refreshMs: 3_600_000, staleIfErrorMs: 86_400_000, stateDir: path.join(dir, String(cases.length)), logger: pino({ level: 'silent' }) })
      await cache.refresh()
      stops.push(() => cache.stop())
      const verifier = new OidcVerifier({ issuer: issuer.url, clientId: AUDIENCE, skipClientIdCheck: false, usernameClaim: 'sub', groupsClaim: 'groups', algorithms: [], clockToleranceMs: 60_000, maxTokenBytes: 16_384, cache })
      const auth = new Authenticator({ anonymousEnabled: false, apiKeys: undefined, jwtVerifiers: new Map([[issuer.url, verifier]]), methodNames: ['OIDC'], tokenCache: new TokenCache({ maxEntries: pool / 3, maxTtlMs: 600_000 }) })
      const call = (token: string): void => {
        const r = auth.authenticate({ token, source: 'authorization' }, 'read')
        if (r instanceof Promise) throw new Error('bench/jwt.ts stage: the key was not at hand')
      }
      const hot = rs[0] as string
      call(hot)
      cases.push({ label: `cache hit${b.tag}`, run: () => call(hot) })
      cases.push({ label: `first sight RS256${b.tag}`, run: (i) => call(rs[i % pool] as string) })
      cases.push({ label: `first sight ES256${b.tag}`, run: (i) => call(es[i % pool] as string) })
    }
    const { createPublicKey } = await import('node:crypto')
    for (const [alg, tokens, kid] of [['RS256', rs, issuer.keys.signingKid], ['ES256', es, esKid]] as const) {
      const key = createPublicKey({ key: issuer.keys.publicJwk(kid) as JsonWebKey, format: 'jwk' })
      const parts = tokens.map((t) => [Buffer.from(t.slice(0, t.lastIndexOf('.'))), Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url')] as const)
      const k = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' as const } : key
      cases.push({ label: `node:crypto verify alone, ${alg}`, run: (i) => void verify('sha256', parts[i % pool]?.[0] as Buffer, k, parts[i % pool]?.[1] as Buffer) })
    }
    const us = new Map<string, number[]>(cases.map((c) => [c.label, []]))
    let i = 0
    for (let r = -1; r < rounds; r++) {
      // Each round starts one case later; round -1 is the warm-up (JIT), not counted.
      for (let j = 0; j < cases.length; j++) {
        const c = cases[(j + Math.max(0, r)) % cases.length] as (typeof cases)[number]
        const t0 = process.cpuUsage()
        for (let n = 0; n < calls; n++) c.run(i++)
        const u = process.cpuUsage(t0)
        if (r >= 0) us.get(c.label)?.push((u.user + u.system) / calls)
      }
      if (r >= 0) log(`stage round ${r + 1}/${rounds}`)
    }
    const figures = [...us].map(([label, v]) => ({ label, us: v }))
    const f = (xs: number[]): string => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`
    const md = ['| authentication stage, per call | CPU µs, median (range) |', '| --- | ---: |', ...figures.map((x) => `| ${x.label} | ${f(x.us)} |`)]
    const hit = us.get('cache hit') ?? []
    for (const alg of ['RS256', 'ES256']) {
      const miss = us.get(`first sight ${alg}`) ?? []
      const added = miss.map((m, k) => m - (hit[k] ?? NaN))
      md.push(`| **added by first sight, ${alg}** (miss − hit, per round) | **${f(added)}** |`)
    }
    md.push('')
    md.push(`${rounds} interleaved rounds × ${calls} calls per case, ${hasTaskset ? 'pinned to CPU 1, ' : ''}CPU time of this process (process.cpuUsage); a pool of ${pool} tokens per algorithm against a ${pool / 3}-entry verified-token cache, so each first-sight call decodes, verifies, checks the claims, builds the principal and evicts an entry.`)
    return { markdown: md.join('\n') + '\n', figures }
  } finally {
    if (pinned) pinSelf(0)
    for (const s of stops) s()
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Running {
  proc: Proc
  url: string
  auth: string | undefined
  tokens: string | undefined
  log: string
}

function load(r: Running, seconds: number, cpu: number | undefined): Promise<LoadResult> {
  return runWrk({ url: `${r.url}/bench`, connections: CONNECTIONS, seconds, auth: r.auth, tokensFile: r.tokens, ...(cpu === undefined ? {} : { cpu }) })
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2)
  const val = (f: string): string | undefined => {
    const i = argv.indexOf(f)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const pairsArg = val('--pairs')
  const pairs = pairsArg?.split(',').map((s) => {
    const [a, b] = s.split('/') as [JwtMode, JwtMode | undefined]
    return [a, b ?? a, JWT_PAIRS.find(([x, y]) => x === a && y === b)?.[2] ?? '—'] as const
  })
  process.on('exit', killAllSync)
  const t0 = Date.now()
  const log = (s: string): void => console.error(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`)
  if (argv.includes('--stage')) {
    const r = await runStage({ rounds: Number(val('--rounds') ?? 7), before: val('--before'), ...(val('--dist') === undefined ? {} : { dist: val('--dist') }), log })
    console.log(r.markdown)
    process.exit(0)
  }
  const r = await runJwt({
    rounds: Number(val('--rounds') ?? 5),
    secs: Number(val('--secs') ?? 3),
    tls: argv.includes('--tls'),
    before: val('--before'),
    dist: val('--dist'),
    // --b-env NAME=VALUE: side B only (a pair of one build with two settings).
    ...(val('--b-env') === undefined ? {} : { bEnv: Object.fromEntries([(val('--b-env') as string).split(/=(.*)/s).slice(0, 2) as [string, string]]) }),
    ...(pairs === undefined ? {} : { pairs }),
    ...(val('--tokens') === undefined ? {} : { tokens: Number(val('--tokens')) }),
    log,
  })
  console.log(r.markdown)
  process.exit(0)
}
