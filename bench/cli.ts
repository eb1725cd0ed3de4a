/**
 * CLI start-up benchmark: how long each `gatehouse` command takes from spawn to exit, against a
 * real running gatehouse (the admin commands log in to it once, then reuse the token file).
 *
 *   npm run bench:cli                 # builds, then 20 runs of each command
 *   node --import tsx bench/cli.ts --runs 50 [--bin dist/bin/gatehouse.js] [--json]
 *
 * Every run is a fresh process (spawnSync), timed from spawn to exit with hrtime, the way a
 * shell script calling the CLI sees it. `node -e 0` is timed alongside as the floor no command
 * can go under. Reports the median and p90 per command. Timings are never asserted (the machine
 * is shared); docs/benchmarks.md records runs.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

const ROOT = path.resolve(import.meta.dirname, '..')
const { values: opts } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, bin: { type: 'string', default: path.join(ROOT, 'dist/bin/gatehouse.js') }, json: { type: 'boolean' } },
})
const RUNS = Math.max(1, Number(opts.runs))
const BIN = path.resolve(opts.bin as string)
const PASSWORD = 'Bench-Passw0rd'

const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-cli-'))
const stateDir = path.join(dir, 'state')
const keysFile = path.join(dir, 'api-keys')
writeFileSync(keysFile, '# bench key\ngh_bench-cli-key-0123456789\n', { mode: 0o600 })

// A real server: TLS with its self-signed certificate (which the CLI trusts through
// GATEHOUSE_STATE_DIR), local users, API keys.
const serverEnv: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: dir,
  GATEHOUSE_STATE_DIR: stateDir,
  GATEHOUSE_PORT: '0',
  GATEHOUSE_ADMIN_PORT: '0',
  GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
  GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
  GATEHOUSE_UPSTREAM_URL: 'echo:',
  GATEHOUSE_LOCAL_ENABLED: 'true',
  GATEHOUSE_ADMIN_PASSWORD: PASSWORD,
  GATEHOUSE_LOG_LEVEL: 'warn',
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_USERS: 'bench',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'gh_bench-cli-key-0123456789',
}
const server = spawn(process.execPath, [BIN, 'serve'], { env: { ...serverEnv, GATEHOUSE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] })
const adminUrl = await new Promise<string>((resolve, reject) => {
  let buf = ''
  const t = setTimeout(() => reject(new Error('gatehouse did not become ready in 20 s')), 20_000)
  server.stdout.on('data', (d: Buffer) => {
    buf += d.toString('utf8')
    const line = buf.split('\n').find((l) => l.includes('"gatehouse is ready"'))
    if (line === undefined) return
    clearTimeout(t)
    resolve((JSON.parse(line) as { admin: string }).admin)
  })
  server.once('exit', (code) => reject(new Error(`gatehouse exited with ${code} before it was ready`)))
})
server.stdout.resume()

const cliEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, GATEHOUSE_STATE_DIR: stateDir, GATEHOUSE_HOST: adminUrl, GATEHOUSE_TOKEN_FILE: path.join(dir, 'auth-token.json') }
const login = spawnSync(process.execPath, [BIN, 'user', 'login', 'admin', PASSWORD], { env: cliEnv, encoding: 'utf8' })
if (login.status !== 0) throw new Error(`login failed: ${login.stderr}`)

interface Case {
  readonly name: string
  readonly argv: string[]
  readonly env?: NodeJS.ProcessEnv
}
const gh = (...a: string[]): string[] => [BIN, ...a]
const CASES: Case[] = [
  { name: 'node -e 0 (floor)', argv: ['-e', '0'] },
  { name: '--help', argv: gh('--help') },
  { name: 'user --help', argv: gh('user', 'whoami', '--help') },
  { name: 'apikey generate', argv: gh('apikey', 'generate') },
  { name: 'config check (env only)', argv: gh('config', 'check'), env: serverEnv },
  { name: 'config check --config proxy.yaml', argv: gh('config', 'check', '--config', path.join(ROOT, 'proxy.yaml')) },
  { name: 'user whoami', argv: gh('user', 'whoami') },
  { name: 'user list', argv: gh('user', 'list') },
  { name: 'security lockout-config show', argv: gh('security', 'lockout-config', 'show') },
  { name: 'security login-banner show', argv: gh('security', 'login-banner', 'show') },
  { name: 'security tls status', argv: gh('security', 'tls', 'status') },
  { name: 'security ca-cert status', argv: gh('security', 'ca-cert', 'status') },
  { name: 'explain (API key)', argv: gh('explain', '--method', 'GET', '--path', '/x', '--token-file', keysFile), env: serverEnv },
]

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number
}

const rows: { name: string; median: number; p90: number; min: number }[] = []
try {
  for (const c of CASES) {
    const env = { ...cliEnv, ...c.env }
    // One untimed run warms the file-system cache (and checks that the command works).
    const warm = spawnSync(process.execPath, c.argv, { env, cwd: dir, encoding: 'utf8' })
    if (warm.status !== 0) throw new Error(`${c.name} failed (${warm.status}): ${warm.stderr}`)
    const ms: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const t0 = process.hrtime.bigint()
      spawnSync(process.execPath, c.argv, { env, cwd: dir, stdio: 'ignore' })
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    rows.push({ name: c.name, median: quantile(ms, 0.5), p90: quantile(ms, 0.9), min: Math.min(...ms) })
    if (opts.json !== true) process.stderr.write('.')
  }
} finally {
  server.kill('SIGTERM')
  await new Promise((r) => server.once('exit', r))
  rmSync(dir, { recursive: true, force: true })
}

if (opts.json === true) process.stdout.write(`${JSON.stringify({ node: process.version, runs: RUNS, rows }, null, 2)}\n`)
else {
  const f = (n: number): string => n.toFixed(0).padStart(6)
  process.stdout.write(`\n${RUNS} runs each, Node ${process.version}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg()[0]?.toFixed(2)}\n\n`)
  process.stdout.write('| command | median ms | p90 ms | min ms |\n| --- | ---: | ---: | ---: |\n')
  for (const r of rows) process.stdout.write(`| \`${r.name}\` | ${f(r.median)} | ${f(r.p90)} | ${f(r.min)} |\n`)
}
