/**
 * The shared Redis store against the file store, in one run (docs/benchmarks.md, "The Redis
 * store"):
 *
 * 1. Login throughput — `POST /api/v2/login` one after another and from 4 clients at once, on a
 *    gatehouse on the file store and on one on the Redis store (requests/s, latency, CPU per
 *    login of gatehouse and of redis-server).
 * 2. A local token on a replica that did not issue it — two gatehouse processes on one
 *    redis-server: A issues the token, B serves requests carrying it — against a gatehouse on
 *    the file store serving its own token. Once with the verified-token cache (the usual case:
 *    a token is verified once per replica, then each request checks the mirror in memory) and
 *    once with the cache off (every request is a token new to the replica: signature, and on
 *    Redis two store round trips). CPU µs per request of the serving gatehouse, and of
 *    redis-server.
 *
 *   npm run bench:redis              3 interleaved rounds
 *   npm run bench:redis -- --quick   2 shorter rounds
 *
 * Bounded: a fixed number of logins per round and 2 s (quick: 1 s) of requests per pair and
 * round. Every gatehouse is the real binary on 127.0.0.1, pinned to CPU 1 with taskset when it
 * exists; this process, the upstream and redis-server share CPU 0. Each file-store candidate is
 * loaded at the same time as its Redis counterpart (same-noise pairs), round after round; the
 * per-round ratios are the result, since a shared machine moves the absolute numbers by tens of
 * percent between runs. Nothing is asserted about time. Every process started here is stopped
 * by its PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool, request } from 'undici'
import { startRedis, type RunningRedis } from '../test/helpers/redis.ts'
import { startOkUpstream } from './lib/okUpstream.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')
const quick = process.argv.includes('--quick')
const ROUNDS = quick ? 2 : 3
const SECONDS = quick ? 1 : 2
const LOGINS_SEQ = quick ? 8 : 15
const LOGINS_PAR = quick ? 16 : 30
const LOGIN_CLIENTS = 4
const CONNECTIONS = 16
const PASSWORD = 'Bench-Redis-pw1'
const hasTaskset = spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' }).status === 0

interface Server {
  readonly name: string
  readonly child: ChildProcess
  readonly data: string
  readonly admin: string
}

const started: ChildProcess[] = []

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime, in 1/100 s
}

async function serve(name: string, env: Record<string, string>, args: string[] = []): Promise<Server> {
  const argv = [BIN, 'serve', ...args]
  const child = spawn(hasTaskset ? 'taskset' : process.execPath, hasTaskset ? ['-c', '1', process.execPath, ...argv] : argv, {
    env: { PATH: process.env.PATH ?? '', GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  started.push(child)
  const { data, admin } = await new Promise<{ data: string; admin: string }>((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error(`${name}: not ready within 20 s`)), 20_000)
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString()
      const line = buf.split('\n').find((l) => l.includes('"gatehouse is ready"'))
      if (line === undefined) return
      clearTimeout(t)
      resolve(JSON.parse(line) as { data: string; admin: string })
    })
    child.once('exit', (code) => reject(new Error(`${name}: gatehouse exited with ${code}`)))
  })
  child.stdout?.resume()
  return { name, child, data, admin }
}

async function login(s: Server): Promise<string> {
  const r = await request(`${s.admin}/api/v2/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password: PASSWORD }) })
  const text = await r.body.text()
  if (r.statusCode !== 200) throw new Error(`${s.name}: login ${r.statusCode}`)
  return (JSON.parse(text) as { data: { access_token: string } }).data.access_token
}

async function createBenchUser(s: Server): Promise<void> {
  const r = await request(`${s.admin}/api/v2/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PASSWORD }) })
  const admin = (JSON.parse(await r.body.text()) as { data: { access_token: string } }).data.access_token
  const c = await request(`${s.admin}/api/v2/users`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, body: JSON.stringify({ username: 'bench', password: PASSWORD, role: 'regular' }) })
  await c.body.dump()
  if (c.statusCode !== 201) throw new Error(`${s.name}: creating the bench user: ${c.statusCode}`)
}

// --- 1. logins --------------------------------------------------------------------------

interface LoginCandidate {
  readonly name: string
  readonly server: Server
  readonly seq: { perSec: number; msMedian: number; cpuMs: number; redisCpuMs: number }[]
  readonly par: { perSec: number; cpuMs: number; redisCpuMs: number }[]
}

async function timedLogin(s: Server): Promise<number> {
  const t0 = performance.now()
  await login(s)
  return performance.now() - t0
}

async function measureLogins(c: LoginCandidate, redis: RunningRedis): Promise<void> {
  const pid = c.server.child.pid as number
  const rpid = redis.pid() as number
  let cpu0 = cpuTicks(pid)
  let r0 = cpuTicks(rpid)
  let t0 = performance.now()
  const lat: number[] = []
  for (let i = 0; i < LOGINS_SEQ; i++) lat.push(await timedLogin(c.server))
  let secs = (performance.now() - t0) / 1000
  c.seq.push({ perSec: LOGINS_SEQ / secs, msMedian: median(lat), cpuMs: ((cpuTicks(pid) - cpu0) * 10) / LOGINS_SEQ, redisCpuMs: ((cpuTicks(rpid) - r0) * 10) / LOGINS_SEQ })

  cpu0 = cpuTicks(pid)
  r0 = cpuTicks(rpid)
  t0 = performance.now()
  let left = LOGINS_PAR
  await Promise.all(
    Array.from({ length: LOGIN_CLIENTS }, async () => {
      while (left-- > 0) await login(c.server)
    }),
  )
  secs = (performance.now() - t0) / 1000
  c.par.push({ perSec: LOGINS_PAR / secs, cpuMs: ((cpuTicks(pid) - cpu0) * 10) / LOGINS_PAR, redisCpuMs: ((cpuTicks(rpid) - r0) * 10) / LOGINS_PAR })
}

// --- 2. a local token on a replica ------------------------------------------------------

interface TokenCandidate {
  readonly name: string
  readonly server: Server
  readonly token: string
  readonly rps: number[]
  readonly cpuUs: number[]
  readonly redisCpuUs: number[]
}

async function prove(c: TokenCandidate): Promise<void> {
  const pool = new Pool(c.server.data)
  try {
    for (const [token, want] of [[c.token, 200], [`${c.token.slice(0, -4)}AAAA`, 401]] as const) {
      const r = await pool.request({ path: '/x', method: 'GET', headers: { authorization: `Bearer ${token}` } })
      await r.body.dump()
      if (r.statusCode !== want) throw new Error(`${c.name}: expected ${want}, got ${r.statusCode}`)
    }
  } finally {
    await pool.close()
  }
}

async function measureTokens(c: TokenCandidate, redis: RunningRedis): Promise<void> {
  const pool = new Pool(c.server.data, { connections: CONNECTIONS, pipelining: 1 })
  const headers = { authorization: `Bearer ${c.token}` }
  const pid = c.server.child.pid as number
  const rpid = redis.pid() as number
  let n = 0
  let stop = false
  const worker = async (): Promise<void> => {
    while (!stop) {
      const r = await pool.request({ path: '/bench', method: 'GET', headers })
      await r.body.dump()
      if (r.statusCode !== 200) throw new Error(`${c.name}: ${r.statusCode}`)
      n++
    }
  }
  setTimeout(() => (stop = true), 300)
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  n = 0
  stop = false
  const t0 = performance.now()
  const cpu0 = cpuTicks(pid)
  const r0 = cpuTicks(rpid)
  setTimeout(() => (stop = true), SECONDS * 1000)
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  const secs = (performance.now() - t0) / 1000
  c.rps.push(n / secs)
  c.cpuUs.push(((cpuTicks(pid) - cpu0) * 10_000) / n)
  c.redisCpuUs.push(((cpuTicks(rpid) - r0) * 10_000) / n)
  await pool.close()
}

// --- report -------------------------------------------------------------------------------

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}
const f0 = (x: number): string => x.toFixed(0)
const f1 = (x: number): string => x.toFixed(1)
const f2 = (x: number): string => x.toFixed(2)

function report(logins: LoginCandidate[], tokens: TokenCandidate[]): void {
  const [lf, lr] = logins as [LoginCandidate, LoginCandidate]
  console.log(`\nmachine: ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, node ${process.version}, ${hasTaskset ? 'gatehouse pinned to CPU 1, load + upstream + redis-server on CPU 0' : 'no taskset'}; ${ROUNDS} rounds of same-noise pairs\n`)
  console.log(`Logins (POST /api/v2/login, scrypt N=32768): ${LOGINS_SEQ} one after another, then ${LOGINS_PAR} from ${LOGIN_CLIENTS} clients at once, per round (medians)\n`)
  console.log('| store | sequential logins/s | latency ms (median) | gatehouse CPU ms/login | concurrent logins/s | gatehouse CPU ms/login | redis-server CPU ms/login |')
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const c of logins) {
    const s = (k: 'perSec' | 'msMedian' | 'cpuMs'): number => median(c.seq.map((x) => x[k]))
    const p = (k: 'perSec' | 'cpuMs' | 'redisCpuMs'): number => median(c.par.map((x) => x[k]))
    console.log(`| ${c.name} | ${f1(s('perSec'))} | ${f1(s('msMedian'))} | ${f1(s('cpuMs'))} | ${f1(p('perSec'))} | ${f1(p('cpuMs'))} | ${c.name.startsWith('file') ? '—' : f2(p('redisCpuMs'))} |`)
  }
  // Per-round ratios of a pair measured at the same time: median (min–max).
  const ratios = (a: readonly number[], b: readonly number[]): string => {
    const rs = a.map((x, i) => x / (b[i] as number))
    return `${median(rs).toFixed(2)}× (${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)})`
  }
  console.log(`\nRedis ÷ file, per round: sequential logins/s ${ratios(lr.seq.map((x) => x.perSec), lf.seq.map((x) => x.perSec))}; concurrent logins/s ${ratios(lr.par.map((x) => x.perSec), lf.par.map((x) => x.perSec))}; gatehouse CPU per login ${ratios([...lr.seq, ...lr.par].map((x) => x.cpuMs), [...lf.seq, ...lf.par].map((x) => x.cpuMs))}`)

  console.log(`\nA local token, GET through the data listener to a keep-alive upstream, ${CONNECTIONS} connections per candidate, ${SECONDS} s per pair and round (medians; the pair's ratio per round)\n`)
  console.log('| candidate | req/s | gatehouse CPU µs/req | redis-server CPU µs/req | gatehouse CPU ÷ file store, per round |')
  console.log('| --- | ---: | ---: | ---: | ---: |')
  const base = (name: string): TokenCandidate => tokens.find((t) => t.name.startsWith('file') && t.name.includes(name.includes('cache off') ? 'cache off' : 'cache warm')) as TokenCandidate
  for (const c of tokens) {
    const b = base(c.name)
    console.log(`| ${c.name} | ${f0(median(c.rps))} | ${f1(median(c.cpuUs))} | ${c.name.startsWith('file') ? '—' : f1(median(c.redisCpuUs))} | ${c === b ? '1' : ratios(c.cpuUs, b.cpuUs)} |`)
  }
}

// --- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  // An upstream that is never the bottleneck: a fixed small answer, keep-alive.
  const upstream = await startOkUpstream()
  const up = upstream.url
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-redis-'))
  const noCache = path.join(dir, 'nocache.yaml')
  writeFileSync(noCache, 'authentication:\n  tokenCache:\n    maxEntries: 0\n')
  const redis = await startRedis()
  const rpid = redis.pid()
  if (hasTaskset && rpid !== undefined) spawnSync('taskset', ['-p', '-c', '0', String(rpid)], { stdio: 'ignore' })
  try {
    const common = { GATEHOUSE_UPSTREAM_URL: up, GATEHOUSE_ADMIN_PASSWORD: PASSWORD }
    const redisEnv = { ...common, GATEHOUSE_STORE_URL: redis.url }
    // Logins run on processes of their own (FL, A), so that the scrypt work leaves nothing
    // behind in the processes whose requests are measured.
    const FL = await serve('file store, logins', { ...common, GATEHOUSE_STATE_DIR: path.join(dir, 'file-logins') })
    // File store: one with the cache, one without (each serves its own token).
    const F = await serve('file store', { ...common, GATEHOUSE_STATE_DIR: path.join(dir, 'file') })
    const F0 = await serve('file store, cache off', { ...common, GATEHOUSE_STATE_DIR: path.join(dir, 'file0') }, ['--config', noCache])
    // Redis: A issues (and takes the logins); B (cache) and B0 (cache off) never issued anything.
    const A = await serve('redis A', { ...redisEnv, GATEHOUSE_STATE_DIR: path.join(dir, 'a') })
    const B = await serve('redis B', { ...redisEnv, GATEHOUSE_STATE_DIR: path.join(dir, 'b') })
    const B0 = await serve('redis B, cache off', { ...redisEnv, GATEHOUSE_STATE_DIR: path.join(dir, 'b0') }, ['--config', noCache])
    for (const s of [FL, F, F0, A]) await createBenchUser(s)
    const logins: LoginCandidate[] = [
      { name: 'file', server: FL, seq: [], par: [] },
      { name: 'Redis', server: A, seq: [], par: [] },
    ]
    const tokenA = await login(A)
    const tokens: TokenCandidate[] = [
      { name: 'file store, cache warm (its own token)', server: F, token: await login(F), rps: [], cpuUs: [], redisCpuUs: [] },
      { name: 'Redis, replica B, cache warm (token issued by A)', server: B, token: tokenA, rps: [], cpuUs: [], redisCpuUs: [] },
      { name: 'file store, cache off (its own token)', server: F0, token: await login(F0), rps: [], cpuUs: [], redisCpuUs: [] },
      { name: 'Redis, replica B, cache off (token issued by A)', server: B0, token: tokenA, rps: [], cpuUs: [], redisCpuUs: [] },
    ]
    for (const t of tokens) await prove(t)
    // Same-noise pairs: the file-store candidate and its Redis counterpart are loaded at the
    // same time, both on CPU 1, so whatever else the machine does falls on both; the per-round
    // ratio is the result (docs/benchmarks.md, "Same-noise pairs").
    const [tf, tb, tf0, tb0] = tokens as [TokenCandidate, TokenCandidate, TokenCandidate, TokenCandidate]
    for (let r = 0; r < ROUNDS; r++) {
      await Promise.all(logins.map((c) => measureLogins(c, redis)))
      await Promise.all([measureTokens(tf, redis), measureTokens(tb, redis)])
      await Promise.all([measureTokens(tf0, redis), measureTokens(tb0, redis)])
    }
    report(logins, tokens)
  } finally {
    for (const c of started) if (c.pid !== undefined && c.exitCode === null) c.kill('SIGTERM')
    await Promise.all(started.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))))
    await redis.close()
    upstream.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
