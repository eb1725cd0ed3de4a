/**
 * New TLS connections: full and resumed (session ticket) handshakes per second per core,
 * gatehouse against HAProxy, with an RSA-2048 and an ECDSA P-256 certificate.
 *
 *   npm run bench:handshake [-- --quick] [--rounds N] [--seconds N] [--clients N]
 *                           [--compare-bin <other build>/dist/bin/gatehouse.js]
 *
 * - Client: `openssl s_time` (OpenSSL's own handshake timer, C, cheap on the load core), `clients`
 *   copies at once, each one connection after another: `-new` makes every connection a full
 *   handshake, `-reuse` presents the session (TLS 1.3 ticket) of its first connection every
 *   time. Each connection sends one request (`-www /`: `GET / HTTP/1.0`, the server closes after
 *   the answer), so it is what a client does, and the proxy forwards it to the upstream.
 * - TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519 on both sides (the client offers only that
 *   suite; the negotiated suite and group are read back with s_client and printed).
 * - Server figure: CPU µs per connection of the proxy's process tree (user+sys from /proc ÷
 *   connections) → connections per second per core = 1e6 ÷ that. Client figure: connections/s.
 * - Proofs: one request through each candidate answers 200 with the upstream's body; in the
 *   resumed rows s_time marks every reused connection with `r` and the row says how many of the
 *   connections were resumptions (a row whose resumptions are not all of them is flagged).
 * - Proxies pinned to `proxyCpu`, clients to `loadCpu`. Same-noise rounds: every candidate is
 *   loaded at the same time on the same core (its own `clients` s_time copies), so whatever else
 *   runs on the machine costs them alike; the ratio is taken per round and shown as a range.
 *   (One candidate after another gave ratios 0.2 lower on this shared 2-CPU machine: the noise
 *   changes faster than a round.)
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ROOT, render } from './lib/candidates.ts'
import { startOkUpstream } from './lib/okUpstream.ts'
import { cpuDelta, cpuSnapshot, freePort, hasTaskset, killAllSync, pinSelf, startProc, stopAll, stopProc, tail, waitForPort, type Proc } from './lib/proc.ts'
import { median } from './lib/report.ts'

const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')
const SUITE = 'TLS_AES_128_GCM_SHA256'
/** Connections each candidate serves before anything is measured (see the warm-up). */
const WARM_CONNECTIONS = 3000

export interface HandshakeOptions {
  quick: boolean
  log(s: string): void
  loadCpu?: number
  proxyCpu?: number
  /** Scratch directory (certificates, configs, logs). */
  dir: string
  /** The upstream both proxies forward to (plain HTTP). */
  upUrl: string
  rounds?: number
  /** Seconds of load per measurement (s_time's -time, whole seconds). */
  seconds?: number
  /** s_time processes at once. */
  clients?: number
  /** Another gatehouse build to measure next to this one (before/after). */
  compareBin?: string
}

type KeyType = 'rsa' | 'ecdsa'
type Mode = 'full' | 'resumed'

interface Cert {
  certFile: string
  keyFile: string
  /** Certificate and key in one file (HAProxy's crt). */
  combinedFile: string
}

interface Started {
  proc: Proc
  port: number
}

interface Candidate {
  id: string
  name: string
  start(cert: Cert, key: KeyType): Promise<Started>
}

interface Sample {
  cpuUs: number
  conns: number
  reused: number
  clientRate: number
}

/** RSA 2048 or ECDSA P-256 self-signed certificate for 127.0.0.1, made with openssl. */
function makeCert(dir: string, key: KeyType): Cert {
  const certFile = path.join(dir, `${key}.crt`)
  const keyFile = path.join(dir, `${key}.key`)
  const newkey = key === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
  const r = spawnSync('openssl', ['req', '-x509', ...newkey, '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl req (${key}): ${r.stderr}`)
  const combinedFile = path.join(dir, `${key}.pem`)
  writeFileSync(combinedFile, readFileSync(certFile, 'utf8') + readFileSync(keyFile, 'utf8'), { mode: 0o600 })
  return { certFile, keyFile, combinedFile }
}

function gatehouse(id: string, name: string, bin: string, o: HandshakeOptions, upUrl: string): Candidate {
  return {
    id,
    name,
    async start(cert, key) {
      const port = await freePort()
      const stateDir = path.join(o.dir, `${id}-${key}-state`)
      mkdirSync(stateDir, { recursive: true })
      const env = {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        GATEHOUSE_PORT: String(port),
        GATEHOUSE_ADMIN_PORT: '0',
        GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
        GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
        GATEHOUSE_STATE_DIR: stateDir,
        GATEHOUSE_UPSTREAM_URL: upUrl,
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_TLS_CERT_FILE: cert.certFile,
        GATEHOUSE_TLS_KEY_FILE: cert.keyFile,
        GATEHOUSE_LOG_LEVEL: 'info',
      }
      const proc = startProc(`${id}-${key}`, [process.execPath, bin, 'serve'], { cpu: o.proxyCpu, env, logFile: path.join(o.dir, `${id}-${key}.log`) })
      await waitForPort(port, proc)
      return { proc, port }
    },
  }
}

function haproxy(o: HandshakeOptions, upPort: number): Candidate {
  return {
    id: 'haproxy',
    name: 'HAProxy 2.6 (nbthread 1)',
    async start(cert, key) {
      const port = await freePort()
      const cfg = render('haproxy-tls-handshake.cfg', { PORT: port, UP_PORT: upPort, CRT: cert.combinedFile }, path.join(o.dir, `haproxy-${key}.cfg`))
      const proc = startProc(`haproxy-${key}`, ['haproxy', '-db', '-f', cfg], { cpu: o.proxyCpu, logFile: path.join(o.dir, `haproxy-${key}.log`) })
      await waitForPort(port, proc)
      return { proc, port }
    },
  }
}

/** Run a command pinned to the load core; resolves with its stdout. */
function run(argv: string[], cpu: number | undefined, input?: string): Promise<string> {
  const cmd = cpu !== undefined && hasTaskset ? ['taskset', '-c', String(cpu), ...argv] : argv
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    c.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')))
    c.stderr.on('data', (d: Buffer) => (err += d.toString('latin1')))
    c.on('error', reject)
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(-400)}`))))
    c.stdin.end(input ?? '')
  })
}

/** One request through the candidate, and what TLS it negotiated (both must be the same for all). */
async function prove(port: number, o: HandshakeOptions, id: string): Promise<string> {
  const out = await run(['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_3', '-ciphersuites', SUITE, '-ign_eof'], o.loadCpu, 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n')
  if (!/HTTP\/1\.[01] 200/.test(out) || !/\r\n\r\nok/.test(out)) throw new Error(`${id}: the proof request did not get the upstream's 200 "ok":\n${out.slice(-600)}`)
  const suite = /Cipher is (\S+)/.exec(out)?.[1] ?? '?'
  const group = /(?:Server|Peer) Temp Key: ([^,\n]+)/.exec(out)?.[1] ?? '?'
  const version = /New, (TLSv[\d.]+)/.exec(out)?.[1] ?? '?'
  return `${version} ${suite} ${group}`
}

/** `clients` s_time processes at once for `seconds`; connections, resumptions, client rate. */
async function load(port: number, mode: Mode, o: HandshakeOptions, seconds: number, clients: number): Promise<{ conns: number; reused: number; clientRate: number }> {
  const t0 = process.hrtime.bigint()
  const outs = await Promise.all(
    Array.from({ length: clients }, () =>
      run(['openssl', 's_time', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-ciphersuites', SUITE, '-www', '/', mode === 'full' ? '-new' : '-reuse', '-time', String(seconds)], o.loadCpu),
    ),
  )
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  let conns = 0
  let reused = 0
  for (const out of outs) {
    const m = /(\d+) connections in [\d.]+s;/.exec(out)
    if (m === null) throw new Error(`s_time printed no count:\n${out.slice(-400)}`)
    conns += Number(m[1])
    // s_time prints one mark per connection: `r` when the session was resumed.
    reused += (out.split(/\n/).find((l) => /^[*r]+$/.test(l.trim())) ?? '').split('r').length - 1
  }
  return { conns, reused, clientRate: conns / wall }
}

const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
const range = (xs: number[], d = 0): string => (xs.length === 0 ? '—' : `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}`)

/** The benchmark; the markdown table, and bars of CPU µs per connection (median) for the chart. */
export async function runHandshakes(opts: HandshakeOptions): Promise<{ markdown: string; bars: { name: string; value: number }[] }> {
  const o = opts
  const rounds = o.rounds ?? (o.quick ? 2 : 5)
  const seconds = o.seconds ?? (o.quick ? 1 : 2)
  const clients = o.clients ?? 6
  const dir = path.join(o.dir, 'handshake')
  mkdirSync(dir, { recursive: true })
  const oo = { ...o, dir }
  const upPort = Number(new URL(o.upUrl).port)
  const candidates: Candidate[] = [gatehouse('gatehouse', 'gatehouse (1 process)', BIN, oo, o.upUrl), haproxy(oo, upPort)]
  if (o.compareBin !== undefined) candidates.push(gatehouse('gatehouse-compare', `gatehouse (${o.compareBin})`, o.compareBin, oo, o.upUrl))
  const lines: string[] = []
  const bars: { name: string; value: number }[] = []
  const negotiated = new Set<string>()
  lines.push(
    `TLS 1.3, ${SUITE}; ${clients} \`openssl s_time\` clients per candidate × ${seconds} s, ${rounds} same-noise rounds (all candidates loaded at once on one core); one \`GET /\` per connection (HTTP/1.0, the server closes). ` +
      `CPU µs per connection of the proxy process; per core = 1e6 ÷ µs. Ratio = gatehouse ÷ HAProxy connections per core, per round.`,
    '',
    '| certificate | handshake | candidate | CPU µs/conn (median, range) | conn/s per core (median) | client conn/s (median) | resumed | ratio to HAProxy (median, range) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  )
  for (const key of ['rsa', 'ecdsa'] as KeyType[]) {
    const cert = makeCert(dir, key)
    const started = new Map<string, Started>()
    try {
      for (const c of candidates) {
        const s = await c.start(cert, key)
        started.set(c.id, s)
        negotiated.add(`${c.id}: ${await prove(s.port, oo, c.id)}`)
      }
      // Warm-up, not measured: a fresh Node process runs a new connection's JavaScript cold and
      // spends seconds in V8's optimizing compiler (21% of its samples in the first 5 s of load,
      // 5% after), which HAProxy never pays and a long-running proxy paid long ago. Tiering
      // counts calls, so the warm-up is counted in connections (resumed ones: the same JS path).
      const warmEnd = Date.now() + (o.quick ? 12_000 : 20_000)
      for (let n = 0; n < WARM_CONNECTIONS && Date.now() < warmEnd; ) {
        const w = await Promise.all(candidates.map((c) => load((started.get(c.id) as Started).port, 'resumed', oo, 1, clients)))
        n += Math.min(...w.map((x) => x.conns))
      }
      for (const mode of ['full', 'resumed'] as Mode[]) {
        const samples = new Map<string, Sample[]>(candidates.map((c) => [c.id, []]))
        for (let r = 0; r < rounds; r++) {
          // The order rotates every round: the candidate whose clients start first measured up to
          // 1.3× (once 3×) dearer than the same build started later in the round.
          const all = candidates.map((_, i) => candidates[(i + r) % candidates.length] as Candidate).map((c) => ({ c, s: started.get(c.id) as Started }))
          const before = all.map(({ s }) => cpuSnapshot(s.proc.pid))
          const loads = await Promise.all(all.map(({ s }) => load(s.port, mode, oo, seconds, clients)))
          all.forEach(({ c, s }, i) => {
            const l = loads[i] as Awaited<ReturnType<typeof load>>
            const cpu = cpuDelta(before[i] as ReturnType<typeof cpuSnapshot>, cpuSnapshot(s.proc.pid))
            ;(samples.get(c.id) as Sample[]).push({ cpuUs: (cpu * 1e6) / Math.max(1, l.conns), conns: l.conns, reused: l.reused, clientRate: l.clientRate })
          })
          o.log(`handshake ${key} ${mode} round ${r + 1}/${rounds}: ${candidates.map((c) => `${c.id} ${fmt((samples.get(c.id) as Sample[])[r]?.cpuUs ?? 0)} µs`).join(', ')}`)
        }
        const ha = samples.get('haproxy') as Sample[]
        for (const c of candidates) {
          const xs = samples.get(c.id) as Sample[]
          const us = xs.map((x) => x.cpuUs)
          const conns = xs.reduce((a, x) => a + x.conns, 0)
          const reused = xs.reduce((a, x) => a + x.reused, 0)
          // Each s_time -reuse process makes one full handshake first, to get the session.
          const resumedCell = mode === 'full' ? (reused === 0 ? 'none' : `⚠ ${reused}`) : `${fmt(reused)}/${fmt(conns)}${reused + clients * rounds >= conns ? '' : ' ⚠'}`
          const ratios = c.id === 'haproxy' ? [] : xs.map((x, i) => (ha[i]?.cpuUs ?? NaN) / x.cpuUs)
          lines.push(
            `| ${key === 'rsa' ? 'RSA 2048' : 'ECDSA P-256'} | ${mode} | ${c.name} | ${fmt(median(us))} (${range(us)}) | ${fmt(1e6 / median(us))} | ${fmt(median(xs.map((x) => x.clientRate)))} | ${resumedCell} | ${c.id === 'haproxy' ? '1' : `${fmt(median(ratios), 2)} (${range(ratios, 2)})`} |`,
          )
          bars.push({ name: `${c.id} ${key} ${mode}`, value: Math.round(median(us)) })
        }
      }
    } finally {
      for (const s of started.values()) await stopProc(s.proc)
    }
  }
  lines.push('', `Negotiated (s_client): ${[...negotiated].join('; ')}.`)
  return { markdown: lines.join('\n'), bars }
}

// --- standalone ----------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i < 0 ? undefined : argv[i + 1]
  }
  const loadCpu = os.availableParallelism() > 1 ? 0 : undefined
  const proxyCpu = os.availableParallelism() > 1 ? 1 : undefined
  if (loadCpu !== undefined) pinSelf(loadCpu)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-handshake-'))
  process.on('SIGINT', () => {
    killAllSync()
    rmSync(dir, { recursive: true, force: true })
    process.exit(130)
  })
  const up = await startOkUpstream()
  try {
    const num = (n: string): number | undefined => (arg(n) === undefined ? undefined : Number(arg(n)))
    const r = await runHandshakes({ quick: argv.includes('--quick'), log: (s) => console.log(s), loadCpu, proxyCpu, dir, upUrl: up.url, rounds: num('--rounds'), seconds: num('--seconds'), clients: num('--clients'), compareBin: arg('--compare-bin') })
    console.log(`\n${r.markdown}`)
  } catch (e) {
    console.error(e)
    for (const f of ['gatehouse-rsa.log', 'haproxy-rsa.log']) console.error(tail(path.join(dir, 'handshake', f)))
    process.exitCode = 1
  } finally {
    await stopAll()
    up.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.filename === process.argv[1] || process.argv[1]?.endsWith('bench/handshake.ts')) await main()
