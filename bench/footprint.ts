/**
 * Footprint: how much memory one gatehouse process holds, idle and under load, and what the
 * memory work costs in CPU, with the real binary:
 *
 *   npm run bench:footprint [-- --quick] [--before /tmp/dist-before] [--dist DIR] [--rounds 3] [--secs 3]
 *
 * For each mode (anonymous pass-through, API key, OIDC JWT with the verified-token cache warm)
 * one process of this tree's build is started (and, with `--before DIR`, one of that dist/ too),
 * proven (the good credential accepted with the right X-Forwarded-User, bad ones refused), and
 * measured: RSS once idle after start (VmRSS, and its RssAnon/RssFile split from
 * /proc/<pid>/status), the peak under wrk load (sampled every 100 ms), RSS idle again 2 s after
 * the load, and V8's new space (both semi-spaces, from /metrics' nodejs_heap_space_size_total_bytes)
 * after the load. With `--before` both builds of a mode are loaded at once on the proxy core
 * (a same-noise pair) and the CPU µs/request ratio new ÷ before is reported per round.
 *
 * Layout as in bench/peers.ts: gatehouse pinned to CPU 1; wrk, the upstream (nginx `return 200`)
 * and this process on CPU 0; everything on 127.0.0.1, stopped at the end; every load bounded.
 *
 * `runFootprint(opts)` returns the markdown section and one row per mode for the peer benchmark.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { startIssuer, type TestIssuer } from '../test/helpers/issuer.ts'
import { API_KEY, ROOT, oidcEnv, startGatehouse, startUpstream } from './lib/candidates.ts'
import { onPath } from './lib/install.ts'
import { runWrk, stopLoad, type LoadResult } from './lib/load.ts'
import { cpuDelta, cpuSnapshot, hasTaskset, killAllSync, pinSelf, rssSampler, stopProc, truncateQuiet, type Proc } from './lib/proc.ts'
import { prove, type BadCredential } from './lib/proof.ts'
import { median } from './lib/report.ts'

export interface FootprintOptions {
  /** Fewer, shorter rounds. */
  quick: boolean
  log(s: string): void
  /** CPU of wrk and the upstream (default 0 when taskset exists and there are 2 CPUs). */
  loadCpu?: number | undefined
  /** CPU of the gatehouse processes (default 1, likewise). */
  proxyCpu?: number | undefined
  /** The upstream's URL; a nginx `return 200` upstream is started when absent. */
  upUrl?: string | undefined
  /** A JWT issuer and one good token (sub = `subject`); one is started when absent. */
  issuer?: TestIssuer | undefined
  goodJwt?: string | undefined
  subject?: string | undefined
  /** Another build's dist/ directory: the same-noise CPU pair new ÷ before, and its RSS. */
  before?: string | undefined
  /** The dist/ directory measured as "this build" (default: this tree's, which others may rebuild meanwhile). */
  dist?: string | undefined
  rounds?: number | undefined
  /** Seconds per load round. */
  secs?: number | undefined
}

/** What one build measured in one mode (MiB, µs). */
export interface FootprintFigures {
  idleMiB: number
  anonMiB: number
  fileMiB: number
  peakMiB: number
  afterMiB: number
  newSpaceMiB: number | undefined
  cpuUs: number[]
}

export interface FootprintRow {
  name: string
  idleMiB: number
  peakMiB: number
  now: FootprintFigures
  before?: FootprintFigures | undefined
  /** new ÷ before CPU µs/request, per round (same-noise pair). */
  ratios: number[]
}

type Mode = 'anon' | 'apikey' | 'jwt'
const MODE_NAME: Readonly<Record<Mode, string>> = { anon: 'anonymous pass-through', apikey: 'API key', jwt: 'OIDC JWT, cache warm' }
const CONNECTIONS = 50
const MiB = 1024 * 1024

interface Running {
  proc: Proc
  url: string
  admin: string | undefined
  auth: string | undefined
  peak: number
}

/** Run every mode; the processes it starts are stopped before it returns. */
export async function runFootprint(opts: FootprintOptions): Promise<{ markdown: string; rows: FootprintRow[] }> {
  const rounds = opts.rounds ?? (opts.quick ? 2 : 4)
  const secs = opts.secs ?? (opts.quick ? 2 : 3)
  const pin = hasTaskset && os.cpus().length >= 2
  const proxyCpu = opts.proxyCpu ?? (pin ? 1 : undefined)
  const loadCpu = opts.loadCpu ?? (pin ? 0 : undefined)
  const log = opts.log
  if (!onPath('wrk')) throw new Error('bench/footprint.ts needs wrk (Debian package wrk)')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-footprint-'))
  const procs: Proc[] = []
  const ownIssuer = opts.issuer === undefined ? await startIssuer({ audience: 'gatehouse' }) : undefined
  try {
    const issuer = (opts.issuer ?? ownIssuer) as TestIssuer
    const subject = opts.subject ?? 'bench-user'
    const now = Math.floor(Date.now() / 1000)
    const goodJwt = opts.goodJwt ?? (await issuer.sign({ sub: subject, iat: now, exp: now + 86_400 }))
    let upUrl = opts.upUrl
    if (upUrl === undefined) {
      if (!onPath('nginx')) throw new Error('bench/footprint.ts needs nginx for its upstream, or opts.upUrl')
      const up = await startUpstream(dir, loadCpu)
      procs.push(up.proc)
      upUrl = `http://127.0.0.1:${up.port}`
    }
    if (loadCpu !== undefined && opts.upUrl === undefined) pinSelf(loadCpu)
    const ctx = { dir, upUrl, proxyCpu, issuer, audience: 'gatehouse', tls: { certFile: '', keyFile: '', combinedFile: '' } }

    const start = async (mode: Mode, bin: string, tag: string): Promise<Running> => {
      const spec: { env: Record<string, string>; auth?: string; bad: BadCredential[]; user?: string } =
        mode === 'anon'
          ? { env: {}, bad: [] }
          : mode === 'apikey'
            ? { env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY, AUTHENTICATION_APIKEY_USERS: subject }, auth: `Bearer ${API_KEY}`, bad: [{ label: 'wrong key', authorization: `Bearer ${API_KEY}x` }, { label: 'none', authorization: undefined }], user: subject }
            : { env: { ...oidcEnv(ctx), AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub' }, auth: `Bearer ${goodJwt}`, bad: [{ label: 'none', authorization: undefined }, { label: 'not a JWT', authorization: 'Bearer x.y.z' }], user: subject }
      const id = `fp-${mode}-${tag}`
      const { proc, url, admin } = await startGatehouse(ctx, id, false, spec.env, undefined, bin)
      procs.push(proc)
      const p = await prove({ url, good: spec.auth, bad: spec.bad, expectUser: spec.user })
      if (!p.ok) throw new Error(`${id} failed its proof: ${p.lines.filter((l) => l.startsWith('FAIL')).join('; ')}`)
      log(`${id}: proof ok (${p.refused.length} bad refused)`)
      return { proc, url, admin, auth: spec.auth, peak: 0 }
    }
    const load = (r: Running, s: number): Promise<LoadResult> => runWrk({ url: `${r.url}/bench`, connections: CONNECTIONS, seconds: s, auth: r.auth, ...(loadCpu === undefined ? {} : { cpu: loadCpu }) })
    /** Load `xs` at once for `s` seconds; each one's peak RSS is kept, and its CPU µs/request returned. */
    const loadAll = async (xs: Running[], s: number, flip: boolean): Promise<(number | undefined)[]> => {
      for (const x of xs) truncateQuiet(x.proc.logFile)
      const snaps = xs.map((x) => cpuSnapshot(x.proc.pid))
      const samplers = xs.map((x) => rssSampler(x.proc.pid))
      const order = flip ? [...xs.keys()].reverse() : [...xs.keys()]
      const results: LoadResult[] = []
      await Promise.all(order.map(async (i) => (results[i] = await load(xs[i] as Running, s))))
      return xs.map((x, i) => {
        x.peak = Math.max(x.peak, samplers[i]?.stop() ?? 0)
        const r = results[i] as LoadResult
        if (r.errors > 0 || r.requests === 0) {
          log(`${x.proc.name}: ${r.errors} errors (${r.errorDetail}), round not counted`)
          return undefined
        }
        return (cpuDelta(snaps[i] as Map<number, number>, cpuSnapshot(x.proc.pid)) * 1e6) / r.requests
      })
    }

    const here = path.join(path.resolve(opts.dist ?? path.join(ROOT, 'dist')), 'bin/gatehouse.js')
    const old = opts.before === undefined ? undefined : path.join(path.resolve(opts.before), 'bin/gatehouse.js')
    const rows: FootprintRow[] = []
    for (const mode of ['anon', 'apikey', 'jwt'] as const) {
      const builds = [await start(mode, here, 'new'), ...(old === undefined ? [] : [await start(mode, old, 'before')])]
      await sleep(1000)
      const idle = builds.map((b) => status(b.proc.pid))
      const cpu: number[][] = builds.map(() => [])
      const ratios: number[] = []
      // Warm-up (JIT, the upstream pool, the JWKS cache), then the measured rounds.
      await loadAll(builds, opts.quick ? 1 : 2, false)
      for (let r = 0; r < rounds; r++) {
        const us = await loadAll(builds, secs, r % 2 === 1)
        if (us.some((u) => u === undefined)) continue
        us.forEach((u, i) => cpu[i]?.push(u as number))
        if (us.length === 2) ratios.push((us[0] as number) / (us[1] as number))
        log(`${MODE_NAME[mode]} round ${r + 1}: ${us.map((u) => (u as number).toFixed(1)).join(' / ')} µs/req${us.length === 2 ? ` = ${((us[0] as number) / (us[1] as number)).toFixed(3)}×` : ''}`)
      }
      await sleep(2000)
      const figures: FootprintFigures[] = []
      for (const [i, b] of builds.entries()) {
        const after = status(b.proc.pid)
        const i0 = idle[i] as Status
        figures.push({ idleMiB: i0.rss / MiB, anonMiB: i0.anon / MiB, fileMiB: i0.file / MiB, peakMiB: b.peak / MiB, afterMiB: after.rss / MiB, newSpaceMiB: await newSpace(b.admin), cpuUs: cpu[i] ?? [] })
      }
      for (const b of builds) await stopProc(b.proc)
      const nowF = figures[0] as FootprintFigures
      rows.push({ name: `gatehouse ${MODE_NAME[mode]}`, idleMiB: nowF.idleMiB, peakMiB: nowF.peakMiB, now: nowF, before: figures[1], ratios })
    }
    return { markdown: render(rows, { rounds, secs, pin, before: opts.before }), rows }
  } finally {
    stopLoad()
    // Only what this suite started: under `npm run bench` the shared upstream must live on.
    for (const p of procs) await stopProc(p)
    await ownIssuer?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Status {
  rss: number
  anon: number
  file: number
}

/** VmRSS, RssAnon and RssFile of one process, in bytes. */
function status(pid: number): Status {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') }
}

/** V8's new space (both semi-spaces) in MiB, from the admin listener's /metrics; undefined without it. */
async function newSpace(admin: string | undefined): Promise<number | undefined> {
  if (admin === undefined) return undefined
  try {
    const text = await (await fetch(`${admin.replace('localhost', '127.0.0.1')}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    const m = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(text)
    return m === null ? undefined : Number(m[1]) / MiB
  } catch {
    return undefined
  }
}

function render(rows: FootprintRow[], o: { rounds: number; secs: number; pin: boolean; before: string | undefined }): string {
  const n = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d))
  const range = (xs: number[], d = 2): string => (xs.length === 0 ? 'n/a' : `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`)
  const md: string[] = []
  md.push('| mode | build | idle RSS MiB (anon + file) | peak RSS under load MiB | idle after load MiB | V8 new space MiB | CPU µs/req, median (range) | new ÷ before, median (range) |')
  md.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const r of rows) {
    for (const [label, f] of [['this build', r.now], ['before', r.before]] as const) {
      if (f === undefined) continue
      md.push(`| ${r.name} | ${label} | ${n(f.idleMiB)} (${n(f.anonMiB)} + ${n(f.fileMiB)}) | ${n(f.peakMiB)} | ${n(f.afterMiB)} | ${n(f.newSpaceMiB)} | ${range(f.cpuUs, 1)} | ${label === 'this build' && r.before !== undefined ? `${range(r.ratios, 3)}×` : ''} |`)
    }
  }
  md.push('')
  md.push(
    `One process per build and mode, plain HTTP/1.1, GET of a 2-byte body; ${o.rounds} round(s) × ${o.secs} s of wrk -t1 -c${CONNECTIONS}${o.before === undefined ? '' : ' per build, both builds loaded at once (a same-noise pair)'}${o.pin ? '; gatehouse on CPU 1, wrk and the upstream on CPU 0' : ''}. Goal: peak ≤ 64 MiB, idle ≤ 48 MiB, CPU ≤ 1.05× the build before.`,
  )
  return md.join('\n') + '\n'
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2)
  const val = (f: string): string | undefined => {
    const i = argv.indexOf(f)
    return i >= 0 ? argv[i + 1] : undefined
  }
  process.on('exit', killAllSync)
  const t0 = Date.now()
  const log = (s: string): void => console.error(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`)
  const r = await runFootprint({
    quick: argv.includes('--quick'),
    log,
    before: val('--before'),
    dist: val('--dist'),
    rounds: val('--rounds') === undefined ? undefined : Number(val('--rounds')),
    secs: val('--secs') === undefined ? undefined : Number(val('--secs')),
  })
  console.log(r.markdown)
  process.exit(0)
}
