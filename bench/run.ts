/**
 * Same-run benchmark of gatehouse's own modes: anonymous pass-through, API key, OIDC JWT with the
 * verified-token cache warm, and OIDC JWT with the cache off (a signature check per request).
 *
 *   npm run bench            3 rounds × 3 s per mode
 *   npm run bench -- --quick 2 rounds × 1 s per mode
 *
 * Each gatehouse is the real binary in its own process, pinned to CPU 1 when `taskset` exists;
 * this process (load generator, upstream, issuer) is pinned to CPU 0. Rounds are interleaved so
 * the modes share the machine's noise. Reported per mode: requests/s (median and range), CPU µs
 * per request of the gatehouse process (user+system from /proc ÷ requests: the fair per-core
 * figure on a noisy machine), and the ratio to anonymous pass-through. The peer comparison
 * (nginx, HAProxy, mod_auth_openidc) is the benchmark issue's.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { startSelfBench } from './lib/okUpstream.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')
const quick = process.argv.includes('--quick')
const ROUNDS = quick ? 2 : 3
const SECONDS = quick ? 1 : 3
const CONNECTIONS = 32
const hasTaskset = spawnSync('taskset', ['-p', '-c', '0', String(process.pid)]).status === 0

interface Candidate {
  name: string
  env: Record<string, string>
  token: string | undefined
  child?: ChildProcess
  url?: string
  rps: number[]
  cpuUs: number[]
}

async function main(): Promise<void> {
  const { upstream, issuer, jwt, key, dir, base } = await startSelfBench('gh-bench-')
  const oidc = {
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: issuer.url,
    AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email',
    AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups',
  }
  const candidates: Candidate[] = [
    { name: 'anonymous pass-through', env: base, token: undefined, rps: [], cpuUs: [] },
    { name: 'API key', env: { ...base, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: key, AUTHENTICATION_APIKEY_USERS: 'bench' }, token: key, rps: [], cpuUs: [] },
    { name: 'OIDC JWT (cache warm)', env: { ...base, ...oidc }, token: jwt, rps: [], cpuUs: [] },
    { name: 'OIDC JWT (no cache)', env: { ...base, ...oidc }, token: jwt, rps: [], cpuUs: [] },
  ]
  try {
    for (const [i, c] of candidates.entries()) {
      const extra = c.name.includes('no cache') ? ['--config', path.join(dir, 'nocache.yaml')] : []
      if (extra.length > 0) (await import('node:fs')).writeFileSync(extra[1] as string, 'authentication:\n  tokenCache:\n    maxEntries: 0\n')
      await start(c, path.join(dir, `s${i}`), extra)
      // Proof before measuring: a bad credential is refused and a good one accepted.
      await prove(c)
    }
    for (let r = 0; r < ROUNDS; r++) for (const c of candidates) await measure(c)
    report(candidates)
  } finally {
    for (const c of candidates) c.child?.kill('SIGTERM')
    upstream.close()
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function start(c: Candidate, stateDir: string, args: string[]): Promise<void> {
  const cmd = hasTaskset ? 'taskset' : process.execPath
  const argv = hasTaskset ? ['-c', '1', process.execPath, BIN, 'serve', ...args] : [BIN, 'serve', ...args]
  const child = spawn(cmd, argv, {
    env: { PATH: process.env.PATH ?? '', GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', GATEHOUSE_STATE_DIR: stateDir, ...c.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  c.child = child
  c.url = await new Promise<string>((resolve, reject) => {
    let buf = ''
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString()
      const m = /"data":"(http:\/\/[^"]+)"/.exec(buf)
      if (m !== null) resolve(m[1] as string)
    })
    child.once('exit', (code) => reject(new Error(`${c.name}: gatehouse exited with ${code}`)))
  })
  child.stdout?.resume()
}

async function prove(c: Candidate): Promise<void> {
  const pool = new Pool(c.url as string)
  try {
    if (c.token !== undefined) {
      const bad = await pool.request({ path: '/x', method: 'GET', headers: { authorization: 'Bearer nope.nope.nope' } })
      await bad.body.dump()
      if (bad.statusCode !== 401) throw new Error(`${c.name}: a bad token got ${bad.statusCode}`)
    }
    const good = await pool.request({ path: '/x', method: 'GET', headers: c.token === undefined ? {} : { authorization: `Bearer ${c.token}` } })
    await good.body.dump()
    if (good.statusCode !== 200) throw new Error(`${c.name}: a good request got ${good.statusCode}`)
  } finally {
    await pool.close()
  }
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime (fields 14, 15)
}

async function measure(c: Candidate): Promise<void> {
  const pool = new Pool(c.url as string, { connections: CONNECTIONS, pipelining: 1 })
  const headers = c.token === undefined ? {} : { authorization: `Bearer ${c.token}` }
  const pid = c.child?.pid as number
  let n = 0
  let stop = false
  const worker = async (): Promise<void> => {
    while (!stop) {
      const r = await pool.request({ path: '/bench', method: 'GET', headers })
      await r.body.dump()
      if (r.statusCode === 200) n++
    }
  }
  // Warm up, then measure.
  stop = false
  setTimeout(() => (stop = true), 300)
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  n = 0
  stop = false
  const t0 = process.hrtime.bigint()
  const cpu0 = cpuTicks(pid)
  setTimeout(() => (stop = true), SECONDS * 1000)
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const ticks = cpuTicks(pid) - cpu0
  await pool.close()
  c.rps.push(n / secs)
  c.cpuUs.push(((ticks / 100) * 1e6) / n) // CLK_TCK is 100 on Linux
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

function report(cs: Candidate[]): void {
  const base = cs[0] as Candidate
  const baseRps = median(base.rps)
  const baseCpu = median(base.cpuUs)
  console.log(`\ngatehouse modes, HTTP/1.1 plain, ${CONNECTIONS} connections, ${ROUNDS} rounds × ${SECONDS} s, ${hasTaskset ? 'gatehouse pinned to CPU 1' : 'no taskset'}, node ${process.version}\n`)
  console.log('| mode | req/s (median) | req/s range | CPU µs/req | req/s vs pass-through | CPU vs pass-through |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const c of cs) {
    const rps = median(c.rps)
    const cpu = median(c.cpuUs)
    console.log(`| ${c.name} | ${rps.toFixed(0)} | ${Math.min(...c.rps).toFixed(0)}–${Math.max(...c.rps).toFixed(0)} | ${cpu.toFixed(1)} | ${((rps / baseRps) * 100).toFixed(0)}% | ${(cpu / baseCpu).toFixed(2)}× |`)
  }
}

await main()
