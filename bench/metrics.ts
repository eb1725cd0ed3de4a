/**
 * What the metrics cost per request (issue 15): the same gatehouse with `metrics.enabled` on and
 * off, in the same run, rounds interleaved so both share the machine's noise (as bench/run.ts).
 *
 *   npm run bench:metrics              7 rounds × 3 s per candidate
 *   npm run bench:metrics -- --quick   3 rounds × 1 s per candidate
 *
 * Two pairs: API keys (the cheapest authenticated path, so the metrics' share is the largest)
 * and OIDC JWTs from the verified-token cache (the token-cache counters too); and a control pair
 * of two identical gatehouses (metrics off both), whose "difference" is the noise floor of the
 * machine at that moment: a pair's ratio means something only beyond it. Each gatehouse is
 * the real binary in its own process, pinned to CPU 1 when `taskset` exists; this process (load,
 * upstream, issuer) to CPU 0. A scrape's cost is measured apart (after the rounds: CPU per
 * scrape), since Prometheus scrapes every 15–30 s, not per request. `--profile` adds the share of
 * the metrics' own code in a CPU profile of the loaded process.
 * Reported: requests/s and CPU µs per request (user+system of the gatehouse process from /proc
 * ÷ requests), medians, and the on/off ratio per pair; then the same-noise ratio: off and on
 * loaded at the same time on the same core each round, the figure another tenant's load cannot
 * skew (as bench/peers.ts's same-noise pairs). No timing is asserted anywhere.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool, request } from 'undici'
import { startSelfBench } from './lib/okUpstream.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')
const quick = process.argv.includes('--quick')
// npm run bench:metrics -- --profile: also profile the metrics-on process (see profile()).
const ROUNDS = quick ? 3 : 7
const SECONDS = quick ? 1 : 3
const CONNECTIONS = 32
const hasTaskset = spawnSync('taskset', ['-p', '-c', '0', String(process.pid)]).status === 0

/** Per pair: CPU µs/request on ÷ off of each same-noise round. */
const sameNoise = new Map<string, number[]>()

interface Candidate {
  name: string
  pair: string
  /** `base` and `test` of a pair: the ratio is test ÷ base. */
  role: 'base' | 'test'
  metrics: boolean
  env: Record<string, string>
  token: string
  child?: ChildProcess
  url?: string
  admin?: string
  rps: number[]
  cpuUs: number[]
}

async function main(): Promise<void> {
  const { upstream, issuer, jwt, key, dir, base } = await startSelfBench('gh-bench-metrics-')
  const apikey = { ...base, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: key, AUTHENTICATION_APIKEY_USERS: 'bench' }
  const oidc = { ...base, AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: issuer.url, AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email', AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups' }
  const cand = (pair: string, metrics: boolean, env: Record<string, string>, token: string, role: Candidate['role'] = metrics ? 'test' : 'base'): Candidate => ({ name: `${pair}, metrics ${metrics ? 'on' : 'off'}${pair.startsWith('control') ? ` (${role})` : ''}`, pair, role, metrics, env: { ...env, GATEHOUSE_METRICS_ENABLED: String(metrics) }, token, rps: [], cpuUs: [] })
  // The control pair is two identical gatehouses: its ratio is this machine's noise floor.
  const candidates = [
    cand('API key', false, apikey, key),
    cand('API key', true, apikey, key),
    cand('OIDC JWT (cache warm)', false, oidc, jwt),
    cand('OIDC JWT (cache warm)', true, oidc, jwt),
    cand('control: API key', false, apikey, key, 'base'),
    cand('control: API key', false, apikey, key, 'test'),
  ]
  try {
    for (const [i, c] of candidates.entries()) {
      await start(c, path.join(dir, `s${i}`))
      await prove(c)
    }
    const pairs = [...new Set(candidates.map((c) => c.pair))].map((pair) => [candidates.find((c) => c.pair === pair && c.role === 'base'), candidates.find((c) => c.pair === pair && c.role === 'test')] as [Candidate, Candidate])
    for (let r = 0; r < ROUNDS; r++) {
      // Interleaved: one at a time, alternating which of a pair goes first.
      const order = r % 2 === 0 ? candidates : [...candidates].reverse()
      for (const c of order) {
        const [m] = await measure(c)
        c.rps.push((m as { rps: number }).rps)
        c.cpuUs.push((m as { cpuUs: number }).cpuUs)
      }
      // Same noise: base and test loaded at the same time on the same core (which one's load
      // starts first alternates too).
      for (const [base, test] of pairs) {
        const [a, b] = r % 2 === 0 ? await measure(base, test) : ((await measure(test, base)).reverse() as { rps: number; cpuUs: number }[])
        const ratio = (b as { cpuUs: number }).cpuUs / (a as { cpuUs: number }).cpuUs
        sameNoise.set(base.pair, [...(sameNoise.get(base.pair) ?? []), ratio])
      }
    }
    report(candidates)
    for (const c of candidates.filter((x) => x.metrics)) await scrapeCost(c)
    const on = candidates.find((x) => x.metrics && x.pair === 'API key') as Candidate
    if (process.argv.includes('--profile')) await profile(apikey, dir, median(on.cpuUs))
  } finally {
    for (const c of candidates) c.child?.kill('SIGTERM')
    upstream.close()
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function start(c: Candidate, stateDir: string, nodeArgs: string[] = []): Promise<void> {
  const cmd = hasTaskset ? 'taskset' : process.execPath
  const argv = hasTaskset ? ['-c', '1', process.execPath, ...nodeArgs, BIN, 'serve'] : [...nodeArgs, BIN, 'serve']
  const child = spawn(cmd, argv, {
    env: { PATH: process.env.PATH ?? '', GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', GATEHOUSE_STATE_DIR: stateDir, ...c.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  c.child = child
  const urls = await new Promise<{ data: string; admin: string }>((resolve, reject) => {
    let buf = ''
    // "ready", not "listening": an OIDC issuer's keys are loaded by then.
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString()
      const line = buf.split('\n').find((l) => l.includes('"gatehouse is ready"'))
      if (line !== undefined) {
        const j = JSON.parse(line) as { data: string; admin: string }
        resolve({ data: j.data, admin: j.admin })
      }
    })
    child.once('exit', (code) => reject(new Error(`${c.name}: gatehouse exited with ${code}`)))
  })
  c.url = urls.data
  c.admin = urls.admin
  child.stdout?.resume()
}

/** Before measuring: a bad credential is refused, a good one accepted, and /metrics says so (or is off). */
async function prove(c: Candidate): Promise<void> {
  const pool = new Pool(c.url as string)
  try {
    const bad = await pool.request({ path: '/x', method: 'GET', headers: { authorization: 'Bearer nope.nope.nope' } })
    await bad.body.dump()
    if (bad.statusCode !== 401) throw new Error(`${c.name}: a bad token got ${bad.statusCode}`)
    const good = await pool.request({ path: '/x', method: 'GET', headers: { authorization: `Bearer ${c.token}` } })
    await good.body.dump()
    if (good.statusCode !== 200) throw new Error(`${c.name}: a good request got ${good.statusCode}`)
  } finally {
    await pool.close()
  }
  const m = await request(`${c.admin as string}/metrics`)
  const text = await m.body.text()
  if (c.metrics ? m.statusCode !== 200 || !/gatehouse_requests_total\{[^}]*decision="allowed"[^}]*\} 1$/m.test(text) : m.statusCode !== 404) throw new Error(`${c.name}: /metrics answered ${m.statusCode}`)
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime (fields 14, 15)
}

/** Load every candidate in `cs` at once for one round; each one's requests/s and CPU µs/request. */
async function measure(...cs: Candidate[]): Promise<{ rps: number; cpuUs: number }[]> {
  const pools = cs.map((c) => new Pool(c.url as string, { connections: CONNECTIONS, pipelining: 1 }))
  const counts = cs.map(() => 0)
  let stop = false
  const worker = (i: number) => async (): Promise<void> => {
    const headers = { authorization: `Bearer ${(cs[i] as Candidate).token}` }
    while (!stop) {
      const r = await (pools[i] as Pool).request({ path: '/bench', method: 'GET', headers })
      await r.body.dump()
      if (r.statusCode === 200) counts[i] = (counts[i] as number) + 1
    }
  }
  const all = (): Promise<unknown>[] => cs.flatMap((_, i) => Array.from({ length: CONNECTIONS }, worker(i)))
  // Warm up, then measure.
  setTimeout(() => (stop = true), 300)
  await Promise.all(all())
  counts.fill(0)
  stop = false
  const t0 = process.hrtime.bigint()
  const cpu0 = cs.map((c) => cpuTicks(c.child?.pid as number))
  setTimeout(() => (stop = true), SECONDS * 1000)
  await Promise.all(all())
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const out = cs.map((c, i) => ({ rps: (counts[i] as number) / secs, cpuUs: (((cpuTicks(c.child?.pid as number) - (cpu0[i] as number)) / 100) * 1e6) / (counts[i] as number) })) // CLK_TCK is 100
  await Promise.all(pools.map((p) => p.close()))
  return out
}

/** CPU of the gatehouse process per `/metrics` scrape (50 in a row, after the rounds). */
async function scrapeCost(c: Candidate): Promise<void> {
  const pid = c.child?.pid as number
  const n = 50
  const cpu0 = cpuTicks(pid)
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const r = await request(`${c.admin as string}/metrics`)
    bytes = (await r.body.text()).length
  }
  const ms = (((cpuTicks(pid) - cpu0) / 100) * 1e3) / n
  console.log(`${c.name}: one scrape costs ${ms.toFixed(1)} ms CPU (${(bytes / 1024).toFixed(0)} KiB of text); every 15 s that is ${((ms / 15_000) * 100).toFixed(3)} % of a core`)
}

/**
 * `--profile`: the share of the metrics in the CPU profile of a loaded gatehouse (API key,
 * metrics on), from V8's sampling profiler: self time in src/metrics/, prom-client and
 * perf_hooks, and in the two call sites, per request. A figure another tenant's load moves far
 * less than the on/off difference of two separately scheduled processes.
 */
async function profile(env: Record<string, string>, dir: string, cpuUsPerRequest: number): Promise<void> {
  const profDir = path.join(dir, 'prof')
  const c: Candidate = { name: 'profile', pair: 'profile', role: 'test', metrics: true, env: { ...env, GATEHOUSE_METRICS_ENABLED: 'true' }, token: 'bench-api-key-0123456789', rps: [], cpuUs: [] }
  await start(c, path.join(dir, 'sprof'), ['--cpu-prof', '--cpu-prof-dir', profDir])
  let total = 0
  let requests = 0
  // Only samples taken under load: start-up (loading prom-client among others) is not per request.
  // V8's profile clock and hrtime are both CLOCK_MONOTONIC, in µs here.
  const from = Number(process.hrtime.bigint() / 1000n)
  for (let i = 0; i < 3; i++) {
    const [m] = await measure(c)
    requests += Math.round((m as { rps: number }).rps * SECONDS)
  }
  const to = Number(process.hrtime.bigint() / 1000n)
  const exited = new Promise((r) => c.child?.once('exit', r))
  c.child?.kill('SIGINT')
  await exited
  const file = (await import('node:fs')).readdirSync(profDir).find((f) => f.endsWith('.cpuprofile')) as string
  const prof = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as { startTime: number; nodes: { id: number; callFrame: { functionName: string; url: string } }[]; samples: number[]; timeDeltas: number[] }
  const byId = new Map(prof.nodes.map((n) => [n.id, n.callFrame]))
  let metrics = 0
  let at = prof.startTime
  prof.samples.forEach((id, i) => {
    const f = byId.get(id) as { functionName: string; url: string }
    const t = prof.timeDeltas[i] as number
    at += t
    if (at < from || at > to || f.functionName === '(idle)') return
    total += t
    if (f.url.includes('/metrics/') || f.url.includes('prom-client') || f.url.includes('perf_hooks') || f.url.includes('internal/perf/') || f.functionName === 'countRequest') metrics += t
  })
  if (total === 0) throw new Error('profile: no samples in the load window (clocks differ?)')
  const share = metrics / total
  console.log(`\nprofile (API key, metrics on, ~${requests} requests under load): the metrics' own code (src/metrics, prom-client, perf_hooks, the call site) ${(metrics / 1000).toFixed(1)} ms of ${(total / 1000).toFixed(0)} ms busy = ${(share * 100).toFixed(2)} % of the process's CPU ≈ ${(share * cpuUsPerRequest).toFixed(2)} µs of the ${cpuUsPerRequest.toFixed(1)} µs per request`)
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

function report(cs: Candidate[]): void {
  console.log(`\nmetrics on vs off, HTTP/1.1 plain, ${CONNECTIONS} connections, ${ROUNDS} rounds × ${SECONDS} s interleaved, ${hasTaskset ? 'gatehouse pinned to CPU 1' : 'no taskset'}, node ${process.version}\n`)
  console.log('| candidate | req/s (median) | req/s range | CPU µs/req (median) | CPU µs/req range | CPU test ÷ base − 1 |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const c of cs) {
    const off = cs.find((x) => x.pair === c.pair && x.role === 'base') as Candidate
    const ratio = c.role === 'test' ? `${((median(c.cpuUs) / median(off.cpuUs) - 1) * 100).toFixed(1)}%` : '—'
    console.log(`| ${c.name} | ${median(c.rps).toFixed(0)} | ${Math.min(...c.rps).toFixed(0)}–${Math.max(...c.rps).toFixed(0)} | ${median(c.cpuUs).toFixed(1)} | ${Math.min(...c.cpuUs).toFixed(1)}–${Math.max(...c.cpuUs).toFixed(1)} | ${ratio} |`)
  }
  // Paired per round: the same round's off and on share the noise of that moment.
  for (const pair of [...new Set(cs.map((c) => c.pair))]) {
    const on = cs.find((c) => c.pair === pair && c.role === 'test') as Candidate
    const off = cs.find((c) => c.pair === pair && c.role === 'base') as Candidate
    const perRound = on.cpuUs.map((v, i) => (v / (off.cpuUs[i] as number) - 1) * 100)
    console.log(`\n${pair}: interleaved, per-round CPU test ÷ base − 1: ${perRound.map((x) => `${x.toFixed(1)}%`).join(', ')} (median ${median(perRound).toFixed(1)}%)`)
    const same = (sameNoise.get(pair) ?? []).map((x) => (x - 1) * 100)
    console.log(`${pair}: same noise (both loaded at once on the same core), CPU test ÷ base − 1: ${same.map((x) => `${x.toFixed(1)}%`).join(', ')} (median ${median(same).toFixed(1)}%)`)
  }
}

await main()
