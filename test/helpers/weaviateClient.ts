/**
 * Run one of the weaviate-client fixtures (test/fixtures/weaviate-client/*.ts) in a child process
 * against a running gatehouse: the client trusts gatehouse's certificate through
 * NODE_EXTRA_CA_CERTS, and prints one JSON line with what it saw. Bounded to 30 s.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { ROOT } from './cli.ts'
import type { TestProxy } from './proxy.ts'

/** Run `fixture` (a file name in test/fixtures/weaviate-client) with `env`; resolve its last JSON line. */
export function runWeaviateFixture(fixture: string, gh: TestProxy, env: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fixtures/weaviate-client', fixture)], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: gh.server.cert?.certFile ?? '', GH_PORT: new URL(gh.url).port, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.once('exit', (code) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(line) as Record<string, unknown>)
      } catch {
        reject(new Error(`weaviate-client run exited ${code}:\n${out}\n${err}`))
      }
    })
  })
}
