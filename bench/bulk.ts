/**
 * Bulk bodies: one large body streamed through each proxy, both ways, plain and over TLS, against
 * a direct connection to the same upstream.
 *
 *   npm run bench:bulk [-- --quick] [--size-mib N] [--rounds N] [--no-tls] [--only download|upload]
 *                      [--no-nginx] [--compare-bin <other build>/dist/bin/gatehouse.js]
 *
 * - Download origin: nginx serving a file from the run's temp dir with sendfile (plain, and a TLS
 *   listener for the direct TLS baseline): the fastest origin this machine has, so the direct
 *   connection is the ceiling.
 * - Upload sink: a raw `net`/`tls` server in its own Node process (`--sink`) that reads the body by
 *   its Content-Length, counts it (and hashes it when asked) and answers only once the last byte
 *   has arrived. Not nginx: nginx answers a body it discards (`return`) before reading it, which
 *   a proxy rightly turns into a cut upload, and its other handlers spool the body to disk.
 * - Client: curl (`-T` with Content-Length for uploads), output to /dev/null; its own timing.
 * - Candidates: the direct connection, gatehouse (API key, the real binary, one process), nginx
 *   proxy_pass with its default buffering, nginx with `proxy_buffering off;
 *   proxy_request_buffering off`. Proxies on `proxyCpu`, client and upstreams on `loadCpu`; rounds
 *   interleaved across candidates. Over TLS the proxies terminate TLS and talk plain HTTP to the
 *   upstream; the direct TLS baseline is the upstream itself serving TLS.
 * - Proofs: every run checks the status and the exact byte count (curl's, and the sink's for
 *   uploads); one extra run per direction and candidate checks a SHA-256 of the whole body.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { generateSelfSignedCertificate } from '../src/tls/selfsigned.ts'
import { ROOT, render } from './lib/candidates.ts'
import { cpuDelta, cpuSnapshot, freePort, killAllSync, pinSelf, rssSampler, startProc, stopAll, stopProc, tail, treeRss, waitForPort, type Proc } from './lib/proc.ts'
import { median } from './lib/report.ts'

const MiB = 1024 * 1024
const API_KEY = 'bench-bulk-api-key-0123456789abcdef'
const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')

export interface BulkOptions {
  quick: boolean
  log(s: string): void
  /** CPU of the client and the upstreams (default 0). */
  loadCpu?: number
  /** CPU of the proxies (default 1). */
  proxyCpu?: number
  /** A scratch directory (the body file, configs, logs); the caller removes it. */
  dir: string
  tlsFiles?: { certFile: string; keyFile: string }
  /** Body size (default 1 GiB, 256 MiB when quick). */
  sizeBytes?: number
  /** Timed rounds per candidate (default 3, 1 when quick). */
  rounds?: number
  /** Measure over TLS too (default true). */
  tls?: boolean
  /** Only these directions (default both). */
  directions?: Direction[]
  /** Leave the nginx candidates out (A/B runs of gatehouse builds). */
  noNginx?: boolean
  /** Another build's `dist/bin/gatehouse.js`, run as an extra candidate (before/after comparisons). */
  compareBin?: string
}

type Direction = 'download' | 'upload'

interface Cand {
  id: string
  name: string
  /** The proxy's process (undefined: the direct connection). */
  proc: Proc | undefined
  url: string
  auth: boolean
}

interface Run {
  seconds: number
  cpu: number
  rssGrowth: number
}

// --- the upload sink (its own process) ---------------------------------------------------

/**
 * The sink: HTTP/1.1 requests with Content-Length, body counted (hashed when the target contains
 * `digest`), answered after the last byte with `<bytes> <sha256 or ->`. Keep-alive.
 */
function runSink(port: number, tlsPort: number, certFile: string, keyFile: string): void {
  const serve = (socket: net.Socket): void => {
    let head = ''
    let left = -1
    let bytes = 0
    let hash: ReturnType<typeof createHash> | undefined
    const answer = (status: string, body: string): void => {
      socket.write(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
    }
    const onBody = (b: Buffer): Buffer | undefined => {
      const take = Math.min(left, b.length)
      bytes += take
      left -= take
      hash?.update(take === b.length ? b : b.subarray(0, take))
      if (left > 0) return undefined
      answer('200 OK', `${bytes} ${hash === undefined ? '-' : hash.digest('hex')}`)
      left = -1
      head = ''
      return take < b.length ? b.subarray(take) : undefined
    }
    socket.on('data', (d: Buffer) => {
      let rest: Buffer | undefined = d
      while (rest !== undefined) {
        if (left >= 0) {
          rest = onBody(rest)
          continue
        }
        head += rest.toString('latin1')
        rest = undefined
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) {
          if (head.length > 16_384) socket.destroy()
          return
        }
        const lines = head.slice(0, end).split('\r\n')
        const after = Buffer.from(head.slice(end + 4), 'latin1')
        const target = lines[0]?.split(' ')[1] ?? ''
        const cl = lines.find((l) => l.toLowerCase().startsWith('content-length:'))
        if (cl === undefined) {
          answer('411 Length Required', 'content-length required')
          socket.end()
          return
        }
        left = Number(cl.slice(15).trim())
        bytes = 0
        hash = target.includes('digest') ? createHash('sha256') : undefined
        if (left === 0) rest = onBody(Buffer.alloc(0))
        else if (after.length > 0) rest = after
      }
    })
    socket.on('error', () => socket.destroy())
  }
  net.createServer(serve).listen(port, '127.0.0.1')
  tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, serve).listen(tlsPort, '127.0.0.1')
}

// --- the client ----------------------------------------------------------------------------

interface CurlResult {
  status: number
  bytes: number
  seconds: number
  body: string
  digest: string | undefined
}

/** One transfer with curl; `digest` hashes a download (upload digests are the sink's). */
function curl(dir: Direction, url: string, o: { auth: boolean; file: string; cacert: string | undefined; digest: boolean; timeoutS: number; cpu: number }): Promise<CurlResult> {
  const args = ['-sS', '--max-time', String(o.timeoutS), '-H', 'Expect:']
  if (o.auth) args.push('-H', `authorization: Bearer ${API_KEY}`)
  if (o.cacert !== undefined) args.push('--cacert', o.cacert)
  if (dir === 'upload') {
    args.push('-X', 'POST', '-T', o.file, '-H', 'content-type: application/octet-stream', '-o', '-', '-w', '%{stderr}%{http_code} %{size_upload} %{time_total}', `${url}/upload${o.digest ? '?digest=1' : ''}`)
  } else {
    args.push('-o', o.digest ? '-' : '/dev/null', '-w', '%{stderr}%{http_code} %{size_download} %{time_total}', `${url}/bulk.bin`)
  }
  const cmd = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0 ? ['taskset', '-c', String(o.cpu), 'curl', ...args] : ['curl', ...args]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    const hash = dir === 'download' && o.digest ? createHash('sha256') : undefined
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => {
      if (hash !== undefined) hash.update(d)
      else if (out.length < 4096) out += d.toString('utf8')
    })
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code) => {
      const m = /(\d{3}) (\d+) ([\d.]+)\s*$/.exec(err)
      if (code !== 0 || m === null) {
        reject(new Error(`curl ${dir} ${url}: exit ${code}: ${err.trim().slice(-300)}`))
        return
      }
      resolve({ status: Number(m[1]), bytes: Number(m[2]), seconds: Number(m[3]), body: out.trim(), digest: hash?.digest('hex') })
    })
  })
}

// --- candidates ----------------------------------------------------------------------------

async function startGatehouse(bin: string, dir: string, id: string, upUrl: string, tlsFiles: { certFile: string; keyFile: string } | undefined, cpu: number): Promise<{ proc: Proc; port: number }> {
  const logFile = path.join(dir, `${id}.out`)
  const tlsEnv: Record<string, string> = tlsFiles !== undefined ? { GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_TLS_CERT_FILE: tlsFiles.certFile, GATEHOUSE_TLS_KEY_FILE: tlsFiles.keyFile } : { GATEHOUSE_TLS_ENABLED: 'false' }
  const port = await freePort()
  const proc = startProc(id, [process.execPath, bin, 'serve'], {
    cpu,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_ADMIN_PORT: '0',
      GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
      GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
      GATEHOUSE_STATE_DIR: path.join(dir, `${id}-state`),
      GATEHOUSE_UPSTREAM_URL: upUrl,
      GATEHOUSE_UPSTREAM_PROFILE: 'generic',
      GATEHOUSE_LOG_LEVEL: 'info',
      AUTHENTICATION_APIKEY_ENABLED: 'true',
      AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY,
      AUTHENTICATION_APIKEY_USERS: 'bench-bulk',
      ...tlsEnv,
    },
    logFile,
  })
  await waitForPort(port, proc, 20_000)
  return { proc, port }
}

async function startNginxProxy(dir: string, id: string, upPort: number, buffered: boolean, tlsFiles: { certFile: string; keyFile: string } | undefined, cpu: number): Promise<{ proc: Proc; port: number }> {
  const d = path.join(dir, id)
  mkdirSync(d, { recursive: true, mode: 0o755 })
  const port = await freePort()
  const conf = render(
    'nginx-bulk.conf',
    {
      DIR: d,
      PORT: port,
      UP_PORT: upPort,
      NGINX_SSL: tlsFiles !== undefined ? ' ssl' : '',
      NGINX_TLS: tlsFiles !== undefined ? `    ssl_certificate ${tlsFiles.certFile};\n    ssl_certificate_key ${tlsFiles.keyFile};\n    ssl_protocols TLSv1.2 TLSv1.3;` : '',
      BUFFERING: buffered ? '' : 'proxy_buffering off; proxy_request_buffering off;',
    },
    path.join(d, 'nginx.conf'),
  )
  const proc = startProc(id, ['nginx', '-p', `${d}/`, '-c', conf, '-e', path.join(d, 'nginx-error.log')], { cpu, logFile: path.join(d, 'nginx.out') })
  await waitForPort(port, proc)
  return { proc, port }
}

// --- the run -------------------------------------------------------------------------------

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : '–')

/** Run the bulk benchmark; returns the markdown tables and a bar per candidate (MiB/s). */
export async function runBulk(opts: BulkOptions): Promise<{ markdown: string; bars: { name: string; value: number }[] }> {
  const loadCpu = opts.loadCpu ?? 0
  const proxyCpu = opts.proxyCpu ?? 1
  const size = opts.sizeBytes ?? (opts.quick ? 256 * MiB : 1024 * MiB)
  const rounds = opts.rounds ?? (opts.quick ? 1 : 3)
  // Bounded, but generous: on a shared machine a 1 GiB TLS transfer measured 50 s.
  const timeoutS = Math.max(60, Math.ceil(size / (4 * MiB)))
  const dir = path.join(opts.dir, 'bulk')
  mkdirSync(path.join(dir, 'www'), { recursive: true, mode: 0o755 })
  let tlsFiles = opts.tlsFiles
  // The origin and the sink always have a TLS listener too (cheap, and one config).
  if (tlsFiles === undefined) {
    const cert = generateSelfSignedCertificate({ commonName: 'gatehouse bulk bench', days: 2 })
    tlsFiles = { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') }
    writeFileSync(tlsFiles.certFile, cert.certPem, { mode: 0o644 })
    writeFileSync(tlsFiles.keyFile, cert.keyPem, { mode: 0o600 })
  }

  // The body: a random MiB repeated (incompressible for any layer that might try), hashed as written.
  const file = path.join(dir, 'www', 'bulk.bin')
  const block = randomBytes(MiB)
  const h = createHash('sha256')
  const fd = openSync(file, 'w', 0o644)
  for (let off = 0; off < size; off += MiB) {
    const b = size - off >= MiB ? block : block.subarray(0, size - off)
    writeSync(fd, b)
    h.update(b)
  }
  closeSync(fd)
  const fileDigest = h.digest('hex')
  opts.log(`bulk: ${fmt(size / MiB, 0)} MiB body, ${rounds} round(s), proxies on CPU ${proxyCpu}, client and upstreams on CPU ${loadCpu}`)

  // Upstreams on the load core.
  const upPort = await freePort()
  const upTlsPort = await freePort()
  const origin = startProc(
    'bulk-origin',
    ['nginx', '-p', `${dir}/`, '-c', render('nginx-bulk-upstream.conf', { DIR: dir, PORT: upPort, TLS_PORT: upTlsPort, CERT: tlsFiles.certFile, KEY: tlsFiles.keyFile }, path.join(dir, 'origin.conf')), '-e', path.join(dir, 'origin-error.log')],
    { cpu: loadCpu, logFile: path.join(dir, 'origin.out') },
  )
  const sinkPort = await freePort()
  const sinkTlsPort = await freePort()
  const sink = startProc('bulk-sink', [process.execPath, '--import', 'tsx', path.join(ROOT, 'bench/bulk.ts'), '--sink', String(sinkPort), String(sinkTlsPort), tlsFiles.certFile, tlsFiles.keyFile], { cpu: loadCpu, logFile: path.join(dir, 'sink.out'), cwd: ROOT })
  await waitForPort(upPort, origin)
  await waitForPort(sinkPort, sink)
  await waitForPort(sinkTlsPort, sink)

  const sections: string[] = []
  const bars: { name: string; value: number }[] = []
  const modes = opts.tls === false ? [false] : [false, true]
  try {
    for (const overTls of modes) {
      const rows: string[] = []
      for (const direction of opts.directions ?? (['download', 'upload'] as Direction[])) {
        const up = direction === 'download' ? { port: upPort, tlsPort: upTlsPort } : { port: sinkPort, tlsPort: sinkTlsPort }
        const sch = overTls ? 'https' : 'http'
        const serverTls = overTls ? tlsFiles : undefined
        const tag = `${direction}-${sch}`
        const cands: Cand[] = [{ id: 'direct', name: overTls ? 'direct (the upstream serving TLS)' : 'direct (no proxy)', proc: undefined, url: `${sch}://127.0.0.1:${overTls ? up.tlsPort : up.port}`, auth: false }]
        try {
          const gh = await startGatehouse(BIN, dir, `gh-${tag}`, `http://127.0.0.1:${up.port}`, serverTls, proxyCpu)
          cands.push({ id: 'gatehouse', name: 'gatehouse API key', proc: gh.proc, url: `${sch}://127.0.0.1:${gh.port}`, auth: true })
          if (opts.compareBin !== undefined) {
            const b = await startGatehouse(opts.compareBin, dir, `ghb-${tag}`, `http://127.0.0.1:${up.port}`, serverTls, proxyCpu)
            cands.push({ id: 'gatehouse-b', name: `gatehouse API key (${opts.compareBin})`, proc: b.proc, url: `${sch}://127.0.0.1:${b.port}`, auth: true })
          }
          if (opts.noNginx !== true) {
          const nb = await startNginxProxy(dir, `nginx-buf-${tag}`, up.port, true, serverTls, proxyCpu)
          cands.push({ id: 'nginx', name: 'nginx proxy_pass (default buffering)', proc: nb.proc, url: `${sch}://127.0.0.1:${nb.port}`, auth: false })
          const nu = await startNginxProxy(dir, `nginx-unbuf-${tag}`, up.port, false, serverTls, proxyCpu)
          cands.push({ id: 'nginx-unbuf', name: 'nginx proxy_pass (buffering off)', proc: nu.proc, url: `${sch}://127.0.0.1:${nu.port}`, auth: false })
          }
          const co = { auth: false, file, cacert: overTls ? tlsFiles.certFile : undefined, timeoutS, cpu: loadCpu }

          // Proof: the whole body, hashed, through every candidate; then a warm-up (not timed).
          for (const c of cands) {
            const r = await curl(direction, c.url, { ...co, auth: c.auth, digest: true })
            const digest = direction === 'download' ? r.digest : r.body.split(' ')[1]
            const bytes = direction === 'download' ? r.bytes : Number(r.body.split(' ')[0])
            if (r.status !== 200 || bytes !== size || digest !== fileDigest) throw new Error(`bulk ${tag} ${c.name}: proof failed (status ${r.status}, ${bytes} bytes, digest ${digest?.slice(0, 12)} vs ${fileDigest.slice(0, 12)})`)
          }
          opts.log(`bulk ${tag}: digest and byte count proven for ${cands.length} candidates`)

          const runs = new Map<string, Run[]>(cands.map((c) => [c.id, []]))
          for (let round = 0; round < rounds; round++) {
            for (const c of cands) {
              const pid = c.proc?.pid
              const before = pid === undefined ? 0 : treeRss(pid)
              const rss = pid === undefined ? undefined : rssSampler(pid, 50)
              const cpu0 = pid === undefined ? undefined : cpuSnapshot(pid)
              const r = await curl(direction, c.url, { ...co, auth: c.auth, digest: false })
              const cpu = cpu0 === undefined || pid === undefined ? NaN : cpuDelta(cpu0, cpuSnapshot(pid))
              const peak = rss === undefined ? NaN : rss.stop()
              const bytes = direction === 'download' ? r.bytes : Number(r.body.split(' ')[0])
              if (r.status !== 200 || bytes !== size || r.bytes !== size) throw new Error(`bulk ${tag} ${c.name}: status ${r.status}, ${bytes} bytes of ${size}`)
              runs.get(c.id)?.push({ seconds: r.seconds, cpu, rssGrowth: peak - before })
              opts.log(`bulk ${tag} round ${round + 1}: ${c.name}: ${r.seconds.toFixed(2)} s, ${fmt(size / MiB / r.seconds, 0)} MiB/s, CPU ${fmt(cpu, 2)} s, RSS +${fmt((peak - before) / MiB)} MiB`)
            }
          }
          const directS = median((runs.get('direct') ?? []).map((x) => x.seconds))
          for (const c of cands) {
            const rs = runs.get(c.id) ?? []
            const s = median(rs.map((x) => x.seconds))
            const mibs = rs.map((x) => size / MiB / x.seconds)
            const ratios = rs.map((x) => directS / x.seconds)
            const cpu = median(rs.map((x) => x.cpu))
            const growth = Math.max(...rs.map((x) => x.rssGrowth))
            rows.push(
              `| ${direction} | ${c.name} | ${s.toFixed(2)} | ${fmt(size / MiB / s, 0)} (${fmt(Math.min(...mibs), 0)}–${fmt(Math.max(...mibs), 0)}) | ${c.id === 'direct' ? '1.00×' : `${fmt(directS / s, 2)}× (${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)})`} | ${fmt(cpu, 2)} | ${fmt(cpu / (size / (1024 * MiB)), 2)} | ${c.id === 'direct' ? '–' : fmt(growth / MiB)} |`,
            )
            bars.push({ name: `${c.name}, ${direction}${overTls ? ', TLS' : ''}`, value: size / MiB / s })
          }
        } finally {
          for (const c of cands) if (c.proc !== undefined) await stopProc(c.proc)
        }
      }
      sections.push(
        [
          `#### ${overTls ? 'Over TLS (the proxies terminate TLS, plain HTTP to the upstream)' : 'Plain HTTP'}`,
          '',
          '| direction | candidate | seconds (median) | MiB/s (range) | × direct (range) | proxy CPU s | CPU s per GiB | RSS growth MiB (max) |',
          '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
          ...rows,
        ].join('\n'),
      )
    }
  } finally {
    await stopProc(sink)
    await stopProc(origin)
  }
  const header = `${fmt(size / MiB, 0)} MiB each way, curl on CPU ${loadCpu} with the upstream (nginx sendfile for downloads, a Node byte-counting sink for uploads), each proxy alone on CPU ${proxyCpu}; ${rounds} interleaved round(s); status, byte count and SHA-256 proven per candidate.`
  return { markdown: [header, ...sections].join('\n\n'), bars }
}


// --- standalone ----------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--sink') {
    runSink(Number(argv[1]), Number(argv[2]), argv[3] as string, argv[4] as string)
    return
  }
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i < 0 ? undefined : argv[i + 1]
  }
  const quick = argv.includes('--quick')
  pinSelf(0)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-bulk-'))
  const stop = (): void => {
    killAllSync()
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('SIGINT', () => {
    stop()
    process.exit(130)
  })
  try {
    const sizeMiB = arg('--size-mib')
    const rounds = arg('--rounds')
    const r = await runBulk({
      quick,
      log: (s) => console.log(s),
      dir,
      tls: !argv.includes('--no-tls'),
      sizeBytes: sizeMiB === undefined ? undefined : Number(sizeMiB) * MiB,
      rounds: rounds === undefined ? undefined : Number(rounds),
      directions: arg('--only') === undefined ? undefined : [arg('--only') as Direction],
      noNginx: argv.includes('--no-nginx'),
      compareBin: arg('--compare-bin'),
    })
    console.log(`\n${r.markdown}`)
  } catch (e) {
    console.error(e)
    for (const f of ['gh-download-http.out', 'gh-upload-http.out']) console.error(tail(path.join(dir, 'bulk', f)))
    process.exitCode = 1
  } finally {
    await stopAll()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.filename === process.argv[1] || process.argv[1]?.endsWith('bench/bulk.ts')) await main()
