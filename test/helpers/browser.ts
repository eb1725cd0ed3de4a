/**
 * Real-browser tests: Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run`) driven by
 * playwright-core, which never downloads a browser of its own.
 *
 * Policy when Chromium is missing: the browser tests FAIL with a message saying how to install
 * it. They never skip: CI installs Chromium, so a skip could only hide a broken CI.
 *
 * Each launch gets a fresh `--user-data-dir` in a temporary directory (removed on close) and is
 * ended by its process id on close, even when the test failed half-way or Chromium hangs.
 * Certificates are trusted per key (`--ignore-certificate-errors-spki-list`), never by a
 * blanket `--ignore-certificate-errors`.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { X509Certificate, createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

/** The system Chromium the tests drive; `GATEHOUSE_CHROMIUM` overrides it (another path). */
export const CHROMIUM_PATH = process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium'

/** Screenshots into tracked files (docs/images/) only when asked, so CI never rewrites them. */
export const SCREENSHOTS_WANTED = process.env.GATEHOUSE_SCREENSHOTS === '1'

/** Throw (fail the test) when the system Chromium is missing, saying how to install it. */
export function requireChromium(): void {
  if (existsSync(CHROMIUM_PATH)) return
  throw new Error(
    `Chromium not found at ${CHROMIUM_PATH}. The browser tests drive Debian's Chromium and never download one: ` +
      'install it with `apt-get install -y --no-install-recommends chromium` (`.ci/run` does this), ' +
      'or set GATEHOUSE_CHROMIUM to another Chromium binary.',
  )
}

/**
 * base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in a PEM text (the leaf of a
 * chain file) — the form `--ignore-certificate-errors-spki-list` takes.
 */
export function spkiHash(pem: string): string {
  const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
  return createHash('sha256').update(der).digest('base64')
}

export interface TestBrowser {
  /** The browser's one context (its profile is the temporary user-data-dir). */
  context: BrowserContext
  /** Chromium's main process id, the leader of its process group. */
  pid: number
  userDataDir: string
  /** A new tab whose console messages and uncaught errors are collected (for failure messages). */
  newPage(): Promise<{ page: Page; console: string[] }>
  /** Close the browser, kill its process group if it does not go within 5 s, remove the profile. */
  close(): Promise<void>
}

export interface LaunchOptions {
  /** PEM certificates (or chain files: the first certificate counts) whose keys Chromium trusts. */
  trustCertificates?: readonly string[]
  /** Launch timeout; default 20 s. */
  timeoutMs?: number
}

// The flags the machine notes give: without the background-networking ones Chromium keeps
// opening connections that this machine's closed network refuses, and looks up Google's hosts
// at every start. --no-proxy-server: a proxy from the environment never sees test traffic.
const FLAGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-proxy-server',
]

const live = new Set<number>()
// A test process that dies on an uncaught error still takes its browsers with it.
process.once('exit', () => {
  for (const pid of live) killGroup(pid)
})

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL') // playwright spawns Chromium as a process-group leader
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Playwright does not expose the browser's pid; find it as our own child whose command line
 * names this launch's (unique) user-data-dir.
 */
function findPid(userDataDir: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid !== process.pid) continue
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (cmdline.includes(`--user-data-dir=${userDataDir}`)) return Number(entry)
    } catch {
      // the process ended while we looked
    }
  }
  return undefined
}

/** Launch headless Chromium with a fresh profile. Fails (never skips) when Chromium is missing. */
export async function launchBrowser(opts: LaunchOptions = {}): Promise<TestBrowser> {
  requireChromium()
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'gh-chromium-'))
  const args = [...FLAGS]
  const keys = (opts.trustCertificates ?? []).map(spkiHash)
  // Honoured by Chromium only together with an explicit --user-data-dir, which we always have.
  if (keys.length > 0) args.push(`--ignore-certificate-errors-spki-list=${keys.join(',')}`)
  let context: BrowserContext
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      // The setuid/namespace sandbox cannot start as root: --no-sandbox only then.
      chromiumSandbox: process.getuid?.() !== 0,
      args,
      timeout: opts.timeoutMs ?? 20_000,
      viewport: { width: 900, height: 560 },
    })
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true })
    throw err
  }
  const pid = findPid(userDataDir)
  if (pid === undefined) {
    await context.close().catch(() => {})
    rmSync(userDataDir, { recursive: true, force: true })
    throw new Error(`Chromium started but its process (child of ${process.pid} with ${userDataDir}) was not found in /proc`)
  }
  live.add(pid)
  let closed = false
  return {
    context,
    pid,
    userDataDir,
    async newPage() {
      const page = await context.newPage()
      const messages: string[] = []
      page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`))
      page.on('pageerror', (e) => messages.push(`pageerror: ${e.message}`))
      return { page, console: messages }
    },
    async close() {
      if (closed) return
      closed = true
      const stop = new AbortController()
      const timer = sleep(5000, undefined, { signal: stop.signal }).catch(() => {})
      await Promise.race([context.close().catch(() => {}), timer])
      stop.abort()
      // Whatever close() did, the group ends here: a hung browser or a leftover renderer too.
      if (alive(pid)) killGroup(pid)
      for (let i = 0; i < 50 && alive(pid); i++) await sleep(100)
      live.delete(pid)
      rmSync(userDataDir, { recursive: true, force: true })
    },
  }
}

/** One request as Chromium's network layer saw it, including what it withheld from the page. */
export interface NetworkRecord {
  url: string
  method: string
  /** `Preflight` for CORS preflights, `Fetch`, `Document`, … */
  type: string | undefined
  /** The status on the wire; set even when CORS kept the response from the page. */
  status: number | undefined
  headers: Record<string, string>
  /** Chromium's CORS verdict when it blocked the response (e.g. `MissingAllowOriginHeader`). */
  corsError: string | undefined
  errorText: string | undefined
}

/**
 * Record every request of a page through the DevTools protocol. Playwright's own `response`
 * event never fires for a response CORS blocked, and preflights are not reported at all; the
 * protocol reports both, with the status on the wire.
 */
export async function recordNetwork(page: Page): Promise<NetworkRecord[]> {
  const cdp = await page.context().newCDPSession(page)
  const records: NetworkRecord[] = []
  const byId = new Map<string, NetworkRecord>()
  const get = (id: string): NetworkRecord => {
    let r = byId.get(id)
    if (r === undefined) {
      r = { url: '', method: '', type: undefined, status: undefined, headers: {}, corsError: undefined, errorText: undefined }
      byId.set(id, r)
      records.push(r)
    }
    return r
  }
  cdp.on('Network.requestWillBeSent', (e) => {
    const r = get(e.requestId)
    r.url = e.request.url
    r.method = e.request.method
    r.type ??= e.type
  })
  cdp.on('Network.responseReceivedExtraInfo', (e) => {
    const r = get(e.requestId)
    r.status = e.statusCode
    r.headers = Object.fromEntries(Object.entries(e.headers).map(([k, v]) => [k.toLowerCase(), String(v)]))
  })
  cdp.on('Network.responseReceived', (e) => {
    const r = get(e.requestId)
    r.type = e.type
    r.status ??= e.response.status
  })
  cdp.on('Network.loadingFailed', (e) => {
    const r = get(e.requestId)
    r.errorText = e.errorText
    r.corsError = e.corsErrorStatus?.corsError
  })
  await cdp.send('Network.enable')
  return records
}

/** Save a PNG of the page's viewport to `file`, creating its directory. */
export async function screenshot(page: Page, file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true })
  await page.screenshot({ path: file, type: 'png' })
}
