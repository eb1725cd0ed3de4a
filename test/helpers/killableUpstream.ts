/**
 * An upstream in a child process of its own, so a test can SIGKILL it in the middle of a
 * transfer (the kernel then closes its sockets; nothing in the test process can soften the cut).
 *
 *   GET /download/<bytes>   stream that many bytes (Content-Length declared), with backpressure
 *   anything else           200 `ok`
 *
 * The child exits by itself when its stdin closes, so it never outlives a crashed test run.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface KillableUpstream {
  url: string
  port: number
  child: ChildProcess
  /** Resolves once the child has exited (with the signal that ended it, if any). */
  exited: Promise<NodeJS.Signals | null>
  /** SIGKILL the child and wait until it is gone. */
  kill(): Promise<void>
}

const CHILD = fileURLToPath(new URL('./killableUpstreamChild.ts', import.meta.url))

/** Start the child upstream and wait until it listens. */
export async function startKillableUpstream(): Promise<KillableUpstream> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, signal) => r(signal)))
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error('killable upstream did not start')), 10_000)
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString('utf8')
      const i = buf.indexOf('\n')
      if (i === -1) return
      clearTimeout(t)
      resolve((JSON.parse(buf.slice(0, i)) as { port: number }).port)
    })
    void exited.then(() => {
      clearTimeout(t)
      reject(new Error('killable upstream exited before it listened'))
    })
  })
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}
