/**
 * Child processes for the peer benchmark: spawn each server as its own process group (so the
 * harness, not the terminal, decides when it stops), pin it with taskset, read the CPU time and
 * RSS of its whole process tree from /proc, and kill every process the harness started — by PID,
 * also on errors and SIGINT.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readdirSync, readFileSync, truncateSync } from 'node:fs'
import net from 'node:net'

/** Clock ticks per second for /proc/<pid>/stat (getconf CLK_TCK; 100 on every Linux we run on). */
const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const n = Number(r.stdout?.trim())
  return Number.isFinite(n) && n > 0 ? n : 100
})()

export const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0

/** One process the harness started (the root of a process tree). */
export interface Proc {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  /** File receiving stdout and stderr. */
  readonly logFile: string
  exited: boolean
  exitCode: number | null
}

const running = new Set<Proc>()

/** Start `argv` in its own process group, optionally pinned to `cpu`, output appended to `logFile`. */
export function startProc(name: string, argv: string[], opts: { cpu?: number; env?: NodeJS.ProcessEnv; logFile: string; cwd?: string }): Proc {
  const cmd = opts.cpu !== undefined && hasTaskset ? ['taskset', '-c', String(opts.cpu), ...argv] : argv
  const fd = openSync(opts.logFile, 'a')
  const child = spawn(cmd[0] as string, cmd.slice(1), {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', fd, fd],
    detached: true,
  })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd.join(' ')}`)
  const p: Proc = { name, child, pid: child.pid, logFile: opts.logFile, exited: false, exitCode: null }
  child.on('exit', (code) => {
    p.exited = true
    p.exitCode = code
    running.delete(p)
  })
  child.on('error', () => {
    p.exited = true
  })
  running.add(p)
  return p
}

/** The pids of `root` and all its descendants (from /proc/<pid>/stat ppid fields). */
export function treePids(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8')
    } catch {
      continue
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    const list = children.get(ppid) ?? []
    list.push(Number(d))
    children.set(ppid, list)
  }
  const out: number[] = []
  const stack = [root]
  while (stack.length > 0) {
    const pid = stack.pop() as number
    if (!existsSync(`/proc/${pid}`)) continue
    out.push(pid)
    for (const c of children.get(pid) ?? []) stack.push(c)
  }
  return out
}

/** user+system CPU seconds of one process (all its threads); 0 when it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK // utime + stime (stat fields 14, 15)
  } catch {
    return 0
  }
}

/** A CPU-time snapshot of a process tree, per pid (so a child that appears later counts from 0). */
export type CpuSnapshot = Map<number, number>

export function cpuSnapshot(root: number): CpuSnapshot {
  return new Map(treePids(root).map((p) => [p, cpuSeconds(p)]))
}

/** CPU seconds the tree used between two snapshots. */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): number {
  let s = 0
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0)
  return s
}

/** Sum of VmRSS (bytes) over the process tree (or over `pids` when given). */
export function treeRss(root: number, pids = treePids(root)): number {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m !== null) kb += Number(m[1])
    } catch {
      /* gone */
    }
  }
  return kb * 1024
}

/**
 * Sample the tree's RSS every `everyMs` until stopped; returns the peak. The tree is listed once
 * (a full /proc scan) and then only its pids are read, to keep the sampler cheap on the load core.
 */
export function rssSampler(root: number, everyMs = 100): { stop(): number } {
  const pids = treePids(root)
  let peak = treeRss(root, pids)
  const t = setInterval(() => {
    peak = Math.max(peak, treeRss(root, pids))
  }, everyMs)
  return {
    stop() {
      clearInterval(t)
      return Math.max(peak, treeRss(root))
    },
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function signalTree(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig)
    } catch {
      /* already gone */
    }
  }
}

/** Stop one process tree: SIGTERM to the group and every pid in the tree, SIGKILL what is left after `graceMs`. */
export async function stopProc(p: Proc, graceMs = 3000): Promise<void> {
  const pids = treePids(p.pid)
  try {
    process.kill(-p.pid, 'SIGTERM')
  } catch {
    /* no such group */
  }
  signalTree(pids, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline && pids.some((pid) => existsSync(`/proc/${pid}`) && !isZombie(pid))) await sleep(50)
  const left = pids.filter((pid) => existsSync(`/proc/${pid}`) && !isZombie(pid))
  if (left.length > 0) signalTree(left, 'SIGKILL')
  running.delete(p)
}

function isZombie(pid: number): boolean {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return f.slice(f.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/** Stop every process still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => stopProc(p)))
}

/** Last resort (process 'exit'): SIGKILL every tree we started, synchronously. */
export function killAllSync(): void {
  for (const p of running) {
    const pids = treePids(p.pid)
    try {
      process.kill(-p.pid, 'SIGKILL')
    } catch {
      /* gone */
    }
    signalTree(pids, 'SIGKILL')
  }
  running.clear()
}

/** A free TCP port on 127.0.0.1 (bound and released; the servers bind it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Wait until 127.0.0.1:`port` accepts connections, or throw (with the log's tail) after `timeoutMs`. */
export async function waitForPort(port: number, p: Proc | undefined, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (p?.exited === true) throw new Error(`${p.name} exited (code ${p.exitCode}) before listening:\n${tail(p.logFile)}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`${p?.name ?? 'server'}: nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms${p === undefined ? '' : `:\n${tail(p.logFile)}`}`)
}

/** The last lines of a log file. */
export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Pin this process, all its threads, to `cpu` (no-op without taskset). */
export function pinSelf(cpu: number): boolean {
  return hasTaskset && spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' }).status === 0
}

/**
 * Seconds one CPU spent running processes since boot (user+nice+system from /proc/stat; interrupt
 * time is left out as it is not charged to any process either way).
 */
export function coreBusy(cpu: number): number {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `))
  if (line === undefined) return 0
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0)) / CLK_TCK
}

/** Empty a log file between measurements (O_APPEND writers make truncation safe); absent is fine. */
export function truncateQuiet(file: string): void {
  try {
    truncateSync(file, 0)
  } catch {
    /* not created yet */
  }
}
