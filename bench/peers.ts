/**
 * gatehouse against the proxies a user would run instead, in one run on one machine.
 *
 *   npm run build --silent && node --import tsx bench/peers.ts [--quick] [--tls] [--skip-install] [--smoke]
 *
 *   (default)       3 rounds × (5 s at 50 connections + 3 s at 1 connection) per candidate, then the
 *                   suites (footprint, first-sight stage, bulk bodies, TLS handshakes, HTTP/2 + gRPC),
 *                   < 45 min with --tls
 *   --quick         2 rounds × (2 s + 1 s) and the suites' quick versions, < 12 min
 *   --tls           a second table with TLS terminated by every candidate (self-signed ECDSA P-256)
 *   --skip-install  do not apt-get install missing peers (they are reported as not run)
 *   --smoke         CI: no installs, gatehouse only (anonymous, API key, JWT warm), a Node load loop
 *                   when wrk is absent; exits non-zero unless gatehouse refuses every bad credential
 *                   and accepts the good one. < 30 s, no results file.
 *   --only a,b      only these candidate ids (nginx, haproxy, haproxy-jwt, apache-oidc, node-undici,
 *                   node-jose, gh-anon, gh-apikey, gh-jwt, gh-jwt-first, gh-jwt-first-es256, gh-local; and the
 *                   suites: footprint, jwt-stage, bulk, handshake, h2)
 *   --keep          keep the temp dir (configs and logs) for inspection
 *   --node-load     use the Node/undici load loop even when wrk is installed
 *
 * Fairness: every candidate is the real binary in its own process (tree), pinned with
 * `taskset -c 1` and configured with one worker/thread; wrk and the upstream (nginx `return 200`,
 * keep-alive) share CPU 0, with this harness (the issuer is in-process here). Rounds are
 * interleaved across candidates (each round starts one candidate later) so all share the
 * machine's noise. Each candidate is first proven to refuse forged and invalid credentials and to
 * accept a good one, with the right identity upstream; a candidate that fails is reported, not
 * measured. The figure to read is CPU µs per request on the proxy's core: user+system time of the
 * candidate's whole process tree from /proc ÷ requests, during the 50-connection run. Then
 * same-noise pairs of gatehouse modes and the Node baseline are loaded at once (PAIRS), for
 * ratios that a noisy machine cannot skew.
 */
import { spawnSync } from 'node:child_process'
import { createPublicKey, type JsonWebKey } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { startIssuer, type TestIssuer } from '../test/helpers/issuer.ts'
import { generateSelfSignedCertificate } from '../src/tls/selfsigned.ts'
import { ALL, FIRST_SIGHT_CACHE, ROOT, ghAnon, ghApiKey, ghJwt, startUpstream, tokenPool, type Candidate, type Ctx, type Running } from './lib/candidates.ts'
import { runBulk } from './bulk.ts'
import { runFootprint } from './footprint.ts'
import { runH2 } from './h2.ts'
import { runHandshakes } from './handshake.ts'
import { runStage } from './jwt.ts'
import { ensurePackages, onPath } from './lib/install.ts'
import { runNodeLoad, runWrk, stopLoad, type LoadOptions, type LoadResult } from './lib/load.ts'
import { coreBusy, cpuDelta, cpuSnapshot, hasTaskset, killAllSync, pinSelf, rssSampler, stopAll, stopProc, type Proc } from './lib/proc.ts'
import { prove, type BadCredential } from './lib/proof.ts'
import { barChart, type Bar, type ChartOptions } from './lib/chart.ts'
import { median, newRow, table, type Row } from './lib/report.ts'

const argv = process.argv.slice(2)
const flag = (f: string): boolean => argv.includes(f)
const SMOKE = flag('--smoke')
const QUICK = flag('--quick')
const TLS = flag('--tls')
const SKIP_INSTALL = flag('--skip-install') || SMOKE
const KEEP = flag('--keep')
const onlyIdx = argv.indexOf('--only')
const ONLY = onlyIdx >= 0 ? new Set((argv[onlyIdx + 1] ?? '').split(',').filter(Boolean)) : undefined

const PLAN = SMOKE
  ? { label: 'smoke', rounds: 1, secs: 2, c1Secs: 1, warmSecs: 1, tokens: 0, limitS: 28 }
  : QUICK
    ? { label: 'quick', rounds: 2, secs: TLS ? 1 : 2, c1Secs: 1, warmSecs: 1, tokens: 12_000, limitS: 12 * 60 }
    : { label: 'full', rounds: 3, secs: 5, c1Secs: 3, warmSecs: 2, tokens: 20_000, limitS: 45 * 60 }
const CONNECTIONS = 50
const AUDIENCE = 'gatehouse'
const SUBJECT = 'bench-user'
const T0 = Date.now()

// What is measured: `npm run bench` builds dist/ just before this starts, so the tree now is the build.
const GIT = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || '?'
const DIRTY = (spawnSync('git', ['-C', ROOT, 'status', '--porcelain', 'src'], { encoding: 'utf8' }).stdout ?? '').trim() !== ''

const log = (s: string): void => console.error(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${s}`)

const cleanups: (() => Promise<void> | void)[] = []
let cleaning: Promise<void> | undefined
/** Stop every process this run started and remove the temp dir; every caller waits for the same work. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    stopLoad()
    await stopAll()
    for (const c of cleanups.reverse()) {
      try {
        await c()
      } catch {
        /* best effort */
      }
    }
  })()
  return cleaning
}
process.on('exit', killAllSync)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping every process this run started`)
    void cleanup().finally(() => process.exit(130))
  })
}
// The run is bounded: past the limit, stop everything and fail rather than run on.
const watchdog = setTimeout(() => {
  log(`time limit of the ${PLAN.label} run (${PLAN.limitS} s) reached: aborting`)
  void cleanup().finally(() => process.exit(3))
}, PLAN.limitS * 1000)
watchdog.unref()

function version(cmd: string, args: string[], re?: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim()
  const m = re === undefined ? undefined : re.exec(text)
  return m?.[1] ?? text.split('\n')[0] ?? '?'
}

/** Candidates whose binaries are missing, with the reason. */
function missingOf(c: Candidate): string | undefined {
  const miss = c.needs.filter((n) => (n.startsWith('/') ? !existsSync(n) : !onPath(n)))
  return miss.length === 0 ? undefined : `not run: ${miss.map((m) => path.basename(m)).join(', ')} not installed`
}

/** The forged and invalid tokens every JWT candidate must refuse. */
async function badJwts(issuer: TestIssuer, good: string): Promise<BadCredential[]> {
  const now = Math.floor(Date.now() / 1000)
  return [
    { label: 'no credential', authorization: undefined },
    { label: 'garbage', authorization: 'Bearer not-a-jwt' },
    { label: 'corrupted signature', authorization: `Bearer ${issuer.attacks.corruptSignature(good)}` },
    { label: 'alg none', authorization: `Bearer ${issuer.attacks.unsignedAlgNone({ sub: SUBJECT })}` },
    { label: 'HS256 keyed with the public key', authorization: `Bearer ${issuer.attacks.hs256WithPublicKey({ sub: SUBJECT })}` },
    { label: 'unpublished key', authorization: `Bearer ${await issuer.attacks.signWithUnpublishedKey({ sub: SUBJECT })}` },
    { label: 'embedded jwk/jku', authorization: `Bearer ${await issuer.attacks.withEmbeddedJwk({ sub: SUBJECT })}` },
    { label: 'expired', authorization: `Bearer ${await issuer.sign({ sub: SUBJECT, iat: now - 7200, exp: now - 3600 })}` },
    { label: 'wrong aud', authorization: `Bearer ${await issuer.sign({ sub: SUBJECT, aud: 'someone-else' })}` },
    { label: 'wrong iss', authorization: `Bearer ${await issuer.sign({ sub: SUBJECT, iss: 'http://127.0.0.1:1/not-the-issuer' })}` },
  ]
}

/** A Node upstream for machines without nginx (the smoke run): same answers as bench/peers/nginx-upstream.conf. */
async function nodeUpstream(): Promise<{ port: number; close(): Promise<void> }> {
  const s = http.createServer((req, res) => {
    const body = req.url === '/whoami' ? `user=${String(req.headers['x-forwarded-user'] ?? '')}` : 'ok'
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  s.keepAliveTimeout = 300_000
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return {
    port: (s.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        s.closeAllConnections()
        s.close(() => r())
      }),
  }
}

async function main(): Promise<number> {
  const problems: string[] = []
  if (!SKIP_INSTALL) problems.push(...ensurePackages(log))
  const bin = path.join(ROOT, 'dist/bin/gatehouse.js')
  if (!existsSync(bin)) throw new Error('dist/bin/gatehouse.js is missing: run npm run build first')
  const pin = hasTaskset && os.cpus().length >= 2
  const PROXY_CPU = pin ? 1 : undefined
  const LOAD_CPU = pin ? 0 : undefined
  const useWrk = onPath('wrk') && !flag('--node-load')
  if (!useWrk && !SMOKE) problems.push('wrk is not installed: the load comes from a Node/undici loop in this process (less load, noisier)')
  if (!pin) problems.push('no taskset or fewer than 2 CPUs: nothing is pinned')

  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-peers-'))
  chmodSync(dir, 0o755) // Apache's child runs as www-data
  cleanups.push(() => {
    if (KEEP) log(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  })
  log(`${PLAN.label} run; temp dir ${dir}`)

  const issuer = await startIssuer({ audience: AUDIENCE })
  cleanups.push(() => issuer.close())
  const now = Math.floor(Date.now() / 1000)
  const goodJwt = await issuer.sign({ sub: SUBJECT, iat: now, exp: now + 7 * 86_400 })
  const jwtKeyFile = path.join(dir, 'issuer-public.pem')
  writeFileSync(jwtKeyFile, createPublicKey({ key: issuer.keys.publicJwk(issuer.keys.signingKid) as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string)
  chmodSync(jwtKeyFile, 0o644)
  const cert = generateSelfSignedCertificate({ commonName: 'gatehouse bench', days: 2 })
  const tlsFiles = { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem'), combinedFile: path.join(dir, 'combined.pem') }
  writeFileSync(tlsFiles.certFile, cert.certPem, { mode: 0o644 })
  writeFileSync(tlsFiles.keyFile, cert.keyPem, { mode: 0o600 })
  writeFileSync(tlsFiles.combinedFile, cert.certPem + cert.keyPem, { mode: 0o600 })

  // mod_auth_openidc 2.4.12 takes only an https JWKS URI: the same keys, served over TLS.
  const jwksServer = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => {
    const body = JSON.stringify(issuer.keys.jwks())
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r))
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        jwksServer.closeAllConnections()
        jwksServer.close(() => r())
      }),
  )
  const jwksHttpsUrl = `https://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`

  let candidates: Candidate[] = SMOKE ? [ghAnon, ghApiKey, ghJwt] : ALL
  if (ONLY !== undefined) candidates = candidates.filter((c) => ONLY.has(c.id))

  // The first-sight pool: more distinct tokens than the verified-token cache holds, so walking it
  // in a cycle never hits the cache. Signing uses the thread pool (both cores) before pinning.
  const tokensFile = path.join(dir, 'tokens.txt')
  if (candidates.some((c) => c.id === 'gh-jwt-first')) {
    log(`signing ${PLAN.tokens} distinct RS256 tokens for the first-sight run`)
    const exp = now + 7 * 86_400
    const batch: string[] = []
    for (let i = 0; i < PLAN.tokens; i += 2000) {
      const n = Math.min(2000, PLAN.tokens - i)
      batch.push(...(await Promise.all(Array.from({ length: n }, (_, k) => issuer.sign({ sub: SUBJECT, iat: now, exp, jti: `t${i + k}` })))))
    }
    writeFileSync(tokensFile, `${batch.join('\n')}\n`, { mode: 0o644 })
  } else writeFileSync(tokensFile, '')
  // The ES256 first-sight pool: the same claims signed by a second (P-256) key the issuer now
  // publishes too; the RS256 key stays the signing key of every other token.
  let es256TokensFile: string | undefined
  if (candidates.some((c) => c.id === 'gh-jwt-first-es256')) {
    log(`signing ${PLAN.tokens} distinct ES256 tokens for the ES256 first-sight run`)
    const esKid = await issuer.keys.addKey('ES256')
    es256TokensFile = await tokenPool(issuer, path.join(dir, 'tokens-es256.txt'), PLAN.tokens, { sub: SUBJECT, iat: now, exp: now + 7 * 86_400 }, esKid)
  }
  if (pin) pinSelf(LOAD_CPU as number)

  let upPort: number
  let upstreamKind: string
  let floorUrl: string
  let floorName: string
  if (onPath('nginx') && !SMOKE) {
    const up = await startUpstream(dir, LOAD_CPU)
    upPort = up.port
    const floor = await startUpstream(dir, PROXY_CPU, 'floor')
    floorUrl = `http://127.0.0.1:${floor.port}`
    floorName = `no proxy: wrk → nginx \`return 200\` on ${pin ? 'CPU 1' : 'the same CPUs'} (latency floor)`
    upstreamKind = `nginx ${version('nginx', ['-v'], /nginx\/(\S+)/)} \`return 200 "ok"\`, 1 worker, keep-alive`
  } else {
    const up = await nodeUpstream()
    cleanups.push(() => up.close())
    upPort = up.port
    upstreamKind = 'node:http answering "ok" in the harness process (nginx not used)'
    floorUrl = `http://127.0.0.1:${upPort}`
    floorName = 'no proxy: load → the upstream (latency floor)'
  }
  const ctx: Ctx = {
    dir,
    upPort,
    upUrl: `http://127.0.0.1:${upPort}`,
    issuer,
    audience: AUDIENCE,
    subject: SUBJECT,
    goodJwt,
    badJwts: await badJwts(issuer, goodJwt),
    jwksHttpsUrl,
    jwtKeyFile,
    tokensFile,
    es256TokensFile,
    tls: tlsFiles,
    proxyCpu: PROXY_CPU,
  }

  const load = (o: LoadOptions): Promise<LoadResult> => (useWrk ? runWrk({ ...o, cpu: LOAD_CPU }) : runNodeLoad(o, o.tokensFile === undefined ? undefined : readTokens(o.tokensFile)))
  const protocols: boolean[] = SMOKE ? [false] : TLS ? [false, true] : [false]
  const sections: { title: string; rows: Row[]; pairs: PairResult[] }[] = []
  let proofFailures = 0

  for (const tls of protocols) {
    const title = tls ? 'HTTP/1.1 over TLS (every candidate terminates TLS)' : 'HTTP/1.1 plain'
    log(`=== ${title}`)
    const rows: Row[] = []
    const live: { c: Candidate; run: Running; row: Row }[] = []
    for (const c of candidates) {
      const row = newRow(c.id, c.name)
      rows.push(row)
      const missing = missingOf(c)
      if (missing !== undefined) {
        row.proof = missing
        log(`${c.id}: ${missing}`)
        continue
      }
      let run: Running
      try {
        run = await c.start(ctx, tls)
      } catch (e) {
        row.proof = `FAILED to start`
        problems.push(`${c.name} (${tls ? 'TLS' : 'plain'}) did not start: ${String(e).split('\n').slice(0, 6).join(' / ')}`)
        log(`${c.id}: failed to start: ${String(e)}`)
        proofFailures++
        continue
      }
      const p = await prove({ url: run.url, good: run.auth, bad: run.bad, expectUser: run.expectUser })
      for (const l of p.lines) log(`${c.id}: ${l}`)
      if (!p.ok) {
        row.proof = 'FAILED (not measured)'
        problems.push(`${c.name} (${tls ? 'TLS' : 'plain'}) failed its proof: ${p.lines.filter((l) => l.startsWith('FAIL')).join('; ')}`)
        proofFailures++
        await stopProc(run.proc)
        continue
      }
      row.proof = run.bad.length === 0 ? 'n/a (no auth)' : `ok (${p.refused.length} bad refused)`
      live.push({ c, run, row })
    }

    // The latency floor of this machine: wrk straight to the upstream at 1 connection, each round.
    const floor = newRow('direct', floorName)
    floor.floorOnly = true
    floor.proof = 'n/a'
    rows.unshift(floor)

    // Warm-up (JIT, connection pools, JWKS caches), then interleaved rounds.
    for (const { run } of live) await load({ url: `${run.url}/bench`, connections: CONNECTIONS, seconds: PLAN.warmSecs, auth: run.auth, tokensFile: run.tokensFile })
    for (let round = 0; round < PLAN.rounds; round++) {
      const direct = await load({ url: `${floorUrl}/bench`, connections: 1, seconds: PLAN.c1Secs })
      floor.p50c1.push(direct.p50Us)
      floor.p99c1.push(direct.p99Us)
      const order = live.map((_, i) => live[(i + round) % live.length] as (typeof live)[number])
      for (const { c, run, row } of order) {
        await measure(run, row, load, PROXY_CPU)
        log(`${title.split(' ').slice(0, 2).join(' ')} round ${round + 1}/${PLAN.rounds} ${c.id}: ${row.rps.at(-1)?.toFixed(0)} req/s, ${row.cpuUs.at(-1)?.toFixed(1)} µs/req`)
      }
    }
    // Same-noise pairs (plain section only, not in the smoke run): both candidates loaded at once
    // on the proxy core, so a burst of the machine's noise hits both; the per-round ratio is what
    // the targets are judged on.
    const pairs: PairResult[] = []
    if (!tls && !SMOKE) {
      const byId = new Map(live.map((l) => [l.c.id, l]))
      for (const [a, b, target] of PAIRS) {
        const la = byId.get(a)
        const lb = byId.get(b)
        if (la === undefined || lb === undefined) continue
        const { ratios, diffs } = await pairRatios(la.run, lb.run, load)
        pairs.push({ a: la.row.name, b: lb.row.name, ratios, diffs, target })
        log(`pair ${a} / ${b}: ${ratios.map((r) => r.toFixed(3)).join(' ')}`)
      }
    }
    for (const { run, row } of live) {
      row.measured = row.rps.length > 0
      await stopProc(run.proc)
    }
    sections.push({ title, rows, pairs })
  }

  // --- The suites of the second round: footprint, first sight, bulk, handshakes, HTTP/2 -------
  // Each is its own module (runnable alone as npm run bench:<name>) that starts and stops its
  // own processes in this run's layout and returns its Markdown section and chart bars. Not in
  // the smoke run (CI needs no Debian peer); `--only` picks them by id like the candidates.
  const suites: { id: string; title: string; markdown: string; chart?: { file: string; svg: string } }[] = []
  if (!SMOKE) {
    const want = (id: string): boolean => ONLY === undefined || ONLY.has(id)
    const sub = `${PLAN.label} run, ${new Date().toISOString().slice(0, 10)}, gatehouse ${GIT}`
    const suite = async (id: string, title: string, run: () => Promise<{ markdown: string; bars?: Bar[]; chart?: Omit<ChartOptions, 'bars' | 'title' | 'subtitle'> & { title: string } }>): Promise<void> => {
      if (!want(id)) return
      log(`=== ${title}`)
      const t0 = Date.now()
      try {
        const r = await run()
        const chart = r.bars !== undefined && r.bars.length > 0 && r.chart !== undefined ? { file: `${id}.svg`, svg: barChart({ ...r.chart, subtitle: sub, bars: r.bars }) } : undefined
        suites.push({ id, title, markdown: r.markdown, ...(chart === undefined ? {} : { chart }) })
        log(`${id}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
      } catch (e) {
        problems.push(`${title}: not completed: ${String(e).split('\n').slice(0, 4).join(' / ')}`)
        log(`${id}: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
      }
    }
    const layout = { quick: QUICK, log, loadCpu: LOAD_CPU, proxyCpu: PROXY_CPU }
    const named = (bars: { name: string; value: number }[], kind: (name: string) => Bar['kind']): Bar[] => bars.map((b) => ({ label: b.name, value: b.value, kind: kind(b.name) }))
    await suite('footprint', 'Footprint: RSS idle and under load', async () => {
      const r = await runFootprint({ ...layout, upUrl: ctx.upUrl, issuer, goodJwt, subject: SUBJECT })
      return {
        markdown: r.markdown,
        bars: r.rows.flatMap((row) => [
          { label: `${row.name}: idle`, value: row.idleMiB, kind: 'gatehouse' as const },
          { label: `${row.name}: peak under load`, value: row.peakMiB, kind: 'gatehouse' as const },
        ]),
        chart: { title: 'gatehouse RSS per process, idle and under load (lower is better)', unit: 'RSS, MiB', target: { value: 64, label: 'goal under load: 64 MiB' } },
      }
    })
    await suite('jwt-stage', 'What first sight adds: the authentication stage alone', async () => ({ markdown: (await runStage({ rounds: QUICK ? 3 : 9, log })).markdown }))
    await suite('bulk', 'Bulk bodies: 1 GiB each way', async () => {
      const r = await runBulk({ ...layout, dir, tlsFiles })
      return { markdown: r.markdown, bars: named(r.bars, (n) => (n.startsWith('gatehouse') ? 'gatehouse' : n.startsWith('direct') ? 'baseline' : 'peer')), chart: { title: 'Streaming a large body (higher is better)', unit: 'MiB/s', digits: 0 } }
    })
    await suite('handshake', 'New TLS connections: full and resumed handshakes', async () => {
      const r = await runHandshakes({ ...layout, dir, upUrl: ctx.upUrl })
      return { markdown: r.markdown, bars: named(r.bars, (n) => (n.startsWith('gatehouse') ? 'gatehouse' : 'peer')), chart: { title: 'CPU per new TLS connection (lower is better)', unit: 'CPU µs per connection (handshake + one request)', digits: 0 } }
    })
    await suite('h2', 'HTTP/2 and gRPC', async () => {
      if (!onPath('h2load')) throw new Error('h2load (Debian nghttp2-client) is not installed')
      const r = await runH2({ ...layout, dir })
      return { markdown: r.markdown, bars: r.bars, chart: { title: 'CPU per request over HTTP/2 (lower is better)', unit: 'CPU µs per request or call' } }
    })
  }

  // --- report ---------------------------------------------------------------------------
  const cpuModel = os.cpus()[0]?.model ?? '?'
  const versions = [
    `node ${process.version}`,
    onPath('nginx') ? `nginx ${version('nginx', ['-v'], /nginx\/(\S+)/)}` : undefined,
    onPath('haproxy') ? `HAProxy ${version('haproxy', ['-v'], /version (\S+)/)}` : undefined,
    onPath('apache2') ? `Apache ${version('apache2', ['-v'], /Apache\/(\S+)/)}` : undefined,
    existsSync('/usr/lib/apache2/modules/mod_auth_openidc.so') ? `mod_auth_openidc ${version('dpkg-query', ['-W', '-f', '${Version}', 'libapache2-mod-auth-openidc'])}` : undefined,
    useWrk ? `wrk ${version('wrk', ['-v'], /wrk (\S+)/)}` : 'Node/undici load loop',
  ].filter(Boolean)
  const out: string[] = []
  out.push(`# gatehouse against its peers (${PLAN.label} run)`)
  out.push('')
  out.push(`${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, gatehouse ${GIT}${DIRTY ? ' + uncommitted src/ changes' : ''}, ${os.cpus().length} × ${cpuModel}; ${versions.join(', ')}.`)
  out.push('')
  out.push(
    `Each candidate pinned to ${pin ? 'CPU 1' : 'no CPU (no pinning)'} with one worker/thread; ${useWrk ? `wrk -t1 -c${CONNECTIONS}` : `a Node loop with ${CONNECTIONS} connections`} and the upstream (${upstreamKind}) on ${pin ? 'CPU 0' : 'the same CPUs'}. ${PLAN.rounds} interleaved round(s) × ${PLAN.secs} s at ${CONNECTIONS} connections + ${PLAN.c1Secs} s at 1 connection, after a ${PLAN.warmSecs} s warm-up. GET of a 2-byte body. CPU µs/req = user+system CPU of the candidate's process tree (/proc) ÷ requests in the ${CONNECTIONS}-connection run — the fair per-core figure; req/s is capped by the load core. Ratios are of CPU µs/req. RSS = peak VmRSS of the process tree during the ${CONNECTIONS}-connection runs.`,
  )
  const charts: { file: string; svg: string }[] = []
  for (const s of sections) {
    out.push('')
    out.push(`## ${s.title}`)
    out.push('')
    out.push(table(s.rows))
    if (!SMOKE) {
      const slug = s.title.includes('TLS') ? 'tls' : 'plain'
      const measured = s.rows.filter((r) => r.floorOnly !== true)
      const kind = (id: string): Bar['kind'] => (id.startsWith('gh-') ? 'gatehouse' : id.startsWith('node-') ? 'baseline' : 'peer')
      const sub = `${PLAN.label} run, ${new Date().toISOString().slice(0, 10)}, gatehouse ${GIT}; one core per proxy; median of ${PLAN.rounds} round(s), whiskers: range`
      charts.push({
        file: `cpu-${slug}.svg`,
        svg: barChart({
          title: `CPU per request, ${s.title} (lower is better)`,
          subtitle: sub,
          unit: 'CPU µs per request (user + system of the proxy)',
          bars: measured.map((r) => ({ label: r.name, kind: kind(r.id), value: r.measured ? median(r.cpuUs) : NaN, min: Math.min(...r.cpuUs), max: Math.max(...r.cpuUs) })),
        }),
      })
      charts.push({
        file: `rss-${slug}.svg`,
        svg: barChart({
          title: `Peak memory under load, ${s.title} (lower is better)`,
          subtitle: sub,
          unit: 'peak RSS of the process tree, MiB',
          target: { value: 64, label: 'goal: 64 MiB per worker' },
          bars: measured.map((r) => ({ label: r.name, kind: kind(r.id), value: r.measured ? Math.max(...r.rss) / 1048576 : NaN })),
        }),
      })
      out.push('')
      out.push(`![CPU per request, ${s.title}](cpu-${slug}.svg)`)
      out.push('')
      out.push(`![Peak RSS, ${s.title}](rss-${slug}.svg)`)
    }
    const noisy = s.rows.filter((r) => r.foreign.some((f) => f > 0.05)).map((r) => `${r.name} (up to ${(Math.max(...r.foreign) * 100).toFixed(0)}%)`)
    if (pin) {
      out.push('')
      out.push(
        noisy.length === 0
          ? `Other processes used under 5% of CPU 1 during every measurement.`
          : `Other processes on the machine used more than 5% of CPU 1 during some measurements of: ${noisy.join(', ')} — those figures are noisier (medians and the min column resist it).`,
      )
    }
    if (s.pairs.length > 0) {
      out.push('')
      out.push(`### Same-noise pairs (${s.title})`)
      out.push('')
      out.push(
        `Both candidates of a pair loaded at the same time (a wrk each, ${CONNECTIONS} connections, ${PLAN.secs} s, ${PLAN.rounds} rounds), sharing CPU 1: whatever the machine does during a round, it does to both. The ratio is of CPU µs/req within each round, the figure that survives a noisy machine. Node against Node only: sharing a core's caches costs a large-footprint runtime more than a C proxy, so ratios to HAProxy and Apache come from the interleaved rounds above.`,
      )
      out.push('')
      out.push('| A | B | A ÷ B per round | median | A − B, CPU µs/req per round | target |')
      out.push('| --- | --- | --- | ---: | --- | --- |')
      for (const p of s.pairs) {
        const sorted = [...p.ratios].sort((x, y) => x - y)
        const mid = sorted.length / 2
        const med = sorted.length === 0 ? NaN : sorted.length % 2 === 1 ? (sorted[Math.floor(mid)] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
        out.push(`| ${p.a} | ${p.b} | ${p.ratios.map((r) => r.toFixed(2)).join(', ')} | ${med.toFixed(2)}× | ${p.diffs.map((d) => d.toFixed(1)).join(', ')} | ${p.target} |`)
      }
    }
  }
  for (const x of suites) {
    out.push('')
    out.push(`## ${x.title}`)
    out.push('')
    out.push(x.markdown.trim())
    if (x.chart !== undefined) {
      charts.push(x.chart)
      out.push('')
      out.push(`![${x.title}](${x.chart.file})`)
    }
  }
  out.push('')
  out.push('## Notes')
  out.push('')
  out.push(
    `- Proof before measuring: JWT candidates must answer 401/403 to ${ctx.badJwts.map((b) => b.label).join(', ')}; accept the good RS256 token (iss, aud, long exp); and send the token's sub upstream as X-Forwarded-User, replacing a client-sent copy (the upstream's /whoami echoes it). API-key and local-token modes get their own bad credentials. Pass-through candidates only have to forward.`,
  )
  const ran = new Set(candidates.map((c) => c.id))
  if (ran.has('haproxy-jwt')) out.push(
    `- HAProxy JWT: \`jwt_verify("RS256", <issuer public key PEM>)\` with the alg pinned in the config (header alg must equal RS256), ACLs on iss, aud and exp, \`X-Forwarded-User\` from \`jwt_payload_query('$.sub')\`, deny 401 otherwise (bench/peers/haproxy-jwt.cfg).`,
  )
  if (ran.has('apache-oidc')) out.push(
    `- Apache: mod_auth_openidc \`AuthType oauth20\` with \`OIDCOAuthVerifyJwksUri\`; this Debian version (2.4.12) has no \`OIDCOAuthVerifyIssuer\`/audience directives, so iss and aud are required with \`Require claim\`; exp is checked by the module; mpm_event, 1 child process × 64 threads (fewer than the 50 connections makes mpm_event close keep-alive connections under load); mod_proxy with connection reuse (bench/peers/apache-oidc.conf).`,
  )
  if (ran.has('gh-jwt-first')) out.push(
    `- gatehouse first sight: a pool of ${PLAN.tokens} distinct tokens walked in a cycle by wrk's Lua script, against a verified-token cache of ${FIRST_SIGHT_CACHE} entries (LRU), so every request verifies a signature.`,
  )
  out.push('- Access logging: on for nginx, HAProxy (to stdout), Apache and gatehouse (to files, emptied between runs); the two Node baselines log nothing. gatehouse runs with its defaults otherwise (header hygiene, identity headers, the generic profile).')
  out.push(
    '- Latency at 1 connection includes the machine: the first row is wrk straight to an nginx `return 200` pinned like the candidates (plain HTTP, no proxying), i.e. one cross-core round trip that wakes an idle CPU; a proxy adds a second hop (to the upstream on CPU 0). On a shared 2-core VM whose other sessions run test suites, p99 at 1 connection is milliseconds for every candidate, nginx included; CPU µs/req is the figure that survives such noise.',
  )
  for (const p of problems) out.push(`- Problem: ${p}`)
  const md = out.join('\n') + '\n'
  console.log(`\n${md}`)
  if (!SMOKE) {
    mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true })
    writeFileSync(path.join(ROOT, 'bench/results/latest.md'), md)
    for (const c of charts) writeFileSync(path.join(ROOT, 'bench/results', c.file), c.svg)
    log(`wrote bench/results/latest.md${charts.length > 0 ? ` and ${charts.map((c) => c.file).join(', ')}` : ''}`)
  }

  if (SMOKE) {
    const measured = sections.flatMap((s) => s.rows).filter((r) => r.measured && r.requests > 0 && r.errors === 0)
    if (proofFailures > 0 || measured.length !== candidates.length) {
      log(`smoke: FAILED (${proofFailures} proof failure(s), ${measured.length}/${candidates.length} candidates measured without errors)`)
      return 1
    }
    log(`smoke: ok — every gatehouse mode refused the bad credentials, accepted the good one and served load without errors`)
  }
  return 0
}

function readTokens(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean)
}

interface PairResult {
  a: string
  b: string
  ratios: number[]
  /** A − B of CPU µs/request per round: what mode A adds over mode B. */
  diffs: number[]
  target: string
}

/**
 * The pairs measured together, with the benchmark issue's target for A ÷ B. Only Node against
 * Node: two processes sharing a core also share its caches, which costs a large-footprint
 * runtime more than HAProxy or nginx, so a pair across runtimes would be biased (measured: 1.6×
 * for gatehouse ÷ HAProxy-JWT in a pair against 1.45× from interleaved single runs). Ratios to
 * the C peers come from the interleaved rounds above.
 */
const PAIRS: readonly (readonly [string, string, string])[] = [
  ['gh-jwt', 'gh-anon', '≤ 1.05×'],
  ['gh-apikey', 'gh-anon', '≤ 1.05×'],
  ['gh-anon', 'node-undici', '— (the Node floor)'],
  ['gh-jwt', 'node-undici', '— (the Node floor)'],
  ['gh-jwt-first', 'gh-jwt', 'reported: A − B is what first sight adds (≤ 40 µs judged on the stage measurement below)'],
  ['gh-jwt-first-es256', 'gh-jwt', '— (measured)'],
]

/** A ÷ B of CPU µs/request, each round with both candidates under load at once. */
async function pairRatios(a: Running, b: Running, load: (o: LoadOptions) => Promise<LoadResult>): Promise<{ ratios: number[]; diffs: number[] }> {
  const ratios: number[] = []
  const diffs: number[] = []
  const opts = (r: Running): LoadOptions => ({ url: `${r.url}/bench`, connections: CONNECTIONS, seconds: PLAN.secs, auth: r.auth, tokensFile: r.tokensFile })
  for (let round = 0; round < PLAN.rounds; round++) {
    for (const f of [...a.logs, ...b.logs]) {
      try {
        truncateSync(f, 0)
      } catch {
        /* not created yet */
      }
    }
    const ba = cpuSnapshot(a.proc.pid)
    const bb = cpuSnapshot(b.proc.pid)
    const [ra, rb] = await Promise.all([load(opts(a)), load(opts(b))])
    const ca = cpuDelta(ba, cpuSnapshot(a.proc.pid))
    const cb = cpuDelta(bb, cpuSnapshot(b.proc.pid))
    if (ra.requests > 0 && rb.requests > 0 && ra.errors === 0 && rb.errors === 0) {
      ratios.push(ca / ra.requests / (cb / rb.requests))
      diffs.push(((ca / ra.requests) - (cb / rb.requests)) * 1e6)
    }
  }
  return { ratios, diffs }
}

async function measure(run: Running, row: Row, load: (o: LoadOptions) => Promise<LoadResult>, proxyCore: number | undefined): Promise<void> {
  for (const f of run.logs) {
    try {
      truncateSync(f, 0)
    } catch {
      /* not created yet */
    }
  }
  const proc: Proc = run.proc
  const url = `${run.url}/bench`
  const before = cpuSnapshot(proc.pid)
  const core0 = proxyCore === undefined ? undefined : coreBusy(proxyCore)
  const t0 = process.hrtime.bigint()
  const sampler = rssSampler(proc.pid)
  const r50 = await load({ url, connections: CONNECTIONS, seconds: PLAN.secs, auth: run.auth, tokensFile: run.tokensFile })
  const cpu = cpuDelta(before, cpuSnapshot(proc.pid))
  if (proxyCore !== undefined && core0 !== undefined) {
    // Time the proxy core spent on anything but this candidate: other processes on the machine.
    const wall = Number(process.hrtime.bigint() - t0) / 1e9
    row.foreign.push(Math.max(0, coreBusy(proxyCore) - core0 - cpu) / wall)
  }
  row.rss.push(sampler.stop())
  const r1 = await load({ url, connections: 1, seconds: PLAN.c1Secs, auth: run.auth, tokensFile: run.tokensFile })
  row.rps.push((r50.requests - r50.errors) / r50.seconds)
  row.cpuUs.push(r50.requests > 0 ? (cpu * 1e6) / r50.requests : NaN)
  row.p50c50.push(r50.p50Us)
  row.p99c50.push(r50.p99Us)
  row.p50c1.push(r1.p50Us)
  row.p99c1.push(r1.p99Us)
  row.errors += r50.errors + r1.errors
  if (r50.errors + r1.errors > 0) log(`${row.id}: errors at 50 connections: ${r50.errorDetail}; at 1: ${r1.errorDetail}`)
  row.requests += r50.requests + r1.requests
  if (proc.exited) throw new Error(`${row.name} exited during the measurement`)
}

let code = 1
try {
  code = await main()
} catch (e) {
  log(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
  code = 1
} finally {
  await cleanup()
}
process.exit(code)
