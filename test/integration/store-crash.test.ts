/**
 * kill -9 during heavy user creation through the real binary: every store file is still valid
 * JSON (the old or the new content, never torn), and gatehouse starts again on it.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { startServe } from '../helpers/cli.ts'

describe('state store durability', () => {
  it('kill -9 in the middle of creating users leaves a readable store', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-crash-'))
    const env = { GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: 'Crash-admin-1', GATEHOUSE_TLS_ENABLED: 'false' }
    try {
      const gh = await startServe(env, { cwd: dir })
      const agent = new Agent({ connections: 16 })
      const post = async (p: string, body: unknown, token?: string): Promise<{ status: number; json: () => Promise<unknown> }> => {
        const r = await request(`${gh.adminUrl}${p}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) }, dispatcher: agent })
        return { status: r.statusCode, json: () => r.body.json() }
      }
      const login = await post('/api/v2/login', { username: 'admin', password: 'Crash-admin-1' })
      const token = ((await login.json()) as { data: { access_token: string } }).data.access_token
      let created = 0
      let stop = false
      const worker = async (w: number): Promise<void> => {
        for (let i = 0; !stop; i++) {
          try {
            const r = await post('/api/v2/users', { username: `u${w}-${i}`, password: 'Crash-user-1', role: 'regular' }, token)
            if (r.status === 201) created++
          } catch {
            return // the process is gone
          }
        }
      }
      const workers = Array.from({ length: 8 }, (_, w) => worker(w))
      while (created < 40) await new Promise((r) => setTimeout(r, 20))
      gh.child.kill('SIGKILL')
      stop = true
      await Promise.all(workers)
      await gh.exited
      await agent.close()

      const storeDir = path.join(dir, 'state', 'store')
      for (const f of readdirSync(storeDir).filter((x) => x.endsWith('.json'))) {
        assert.doesNotThrow(() => JSON.parse(readFileSync(path.join(storeDir, f), 'utf8')), `${f} is readable`)
      }
      const users = JSON.parse(readFileSync(path.join(storeDir, 'users.json'), 'utf8')) as Record<string, unknown>
      assert.ok(Object.keys(users).length >= created + 1, `every acknowledged user (${created}) and admin are stored (found ${Object.keys(users).length})`)

      const again = await startServe(env, { cwd: dir })
      const r = await request(`${again.adminUrl}/api/v2/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'u0-0', password: 'Crash-user-1' }) })
      assert.equal(r.statusCode, 200)
      await r.body.dump()
      again.child.kill('SIGTERM')
      assert.equal(await again.exited, 0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
