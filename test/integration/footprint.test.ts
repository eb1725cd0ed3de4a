/**
 * The footprint mechanisms of `gatehouse serve` (docs/benchmarks.md, "Footprint"), through the real
 * binary: the serving process keeps V8's young generation at the cap, and a data-plane process
 * loads the optional dependencies only when its configuration uses them (prom-client: at the
 * first scrape). Behaviour, not timing: what is checked is the new space's size and the list of
 * modules the process loaded.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { Agent, request } from 'undici'
import { SEMI_SPACE_CAP_MIB, youngGenerationSetByUser } from '../../src/bin/youngGeneration.ts'
import { ROOT, startServe, type ServeProcess } from '../helpers/cli.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'

const KEY = 'footprint-test-key-0123456789'

/**
 * A preload (NODE_OPTIONS=--import) that records every module the process loads: ES modules
 * through a loader hook, CommonJS ones (also those loaded with require on first use) from the
 * require cache when the process exits.
 */
function moduleRecorder(dir: string): { nodeOptions: string; loaded(): string[] } {
  const list = path.join(dir, 'modules.txt')
  writeFileSync(list, '')
  const hooks = path.join(dir, 'hooks.mjs')
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs'\nexport async function load(url, ctx, next) { appendFileSync(${JSON.stringify(list)}, url + '\\n'); return next(url, ctx) }\n`)
  const preload = path.join(dir, 'preload.mjs')
  writeFileSync(
    preload,
    [
      `import { appendFileSync } from 'node:fs'`,
      `import Module, { register } from 'node:module'`,
      `register(${JSON.stringify(pathToFileURL(hooks).href)})`,
      `process.on('exit', () => appendFileSync(${JSON.stringify(list)}, Object.keys(Module._cache).join('\\n') + '\\n'))`,
    ].join('\n'),
  )
  return { nodeOptions: `--import ${pathToFileURL(preload).href}`, loaded: () => readFileSync(list, 'utf8').split('\n').filter(Boolean) }
}

/**
 * The new space (MiB, both semi-spaces) of a node process that allocates with many survivors per
 * scavenge (which makes V8 grow the young generation to its maximum), yielding between chunks as
 * a server does; `cap` calls the built capYoungGeneration() first.
 */
function churnNewSpace(dir: string, cap: boolean, nodeArgs: string[] = []): number {
  const f = path.join(dir, 'churn.mjs')
  writeFileSync(
    f,
    [
      `import v8 from 'node:v8'`,
      `import { setImmediate as tick } from 'node:timers/promises'`,
      `import { capYoungGeneration } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/bin/youngGeneration.js')).href)}`,
      `if (process.argv[2] === 'cap') capYoungGeneration()`,
      `let keep = []`,
      `for (let chunk = 0; chunk < 300; chunk++) {`,
      `  for (let i = 0; i < 10000; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 20000) keep = [] }`,
      `  await tick()`,
      `}`,
      `console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576)`,
    ].join('\n'),
  )
  const r = spawnSync(process.execPath, [...nodeArgs, f, cap ? 'cap' : 'free'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  return Number(r.stdout.trim())
}

const OPTIONAL = /node_modules\/(undici|ldapts|prom-client|@redis\/client|@opentelemetry\/api)\//

async function stop(gh: ServeProcess): Promise<void> {
  gh.child.kill('SIGTERM')
  assert.equal(await gh.exited, 0)
}

describe('footprint of gatehouse serve', () => {
  let dir: string
  let issuer: TestIssuer
  const agent = new Agent({ connections: 8 })

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-footprint-'))
    issuer = await startIssuer({ audience: 'gatehouse' })
  })
  after(async () => {
    await agent.close()
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps V8 new space at the cap in the serving process, also after traffic', async () => {
    const gh = await startServe({ GATEHOUSE_STATE_DIR: path.join(dir, 's1'), GATEHOUSE_TLS_ENABLED: 'false', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'u' }, { cwd: dir })
    try {
      // Enough requests for many scavenges (each allocates tens of KiB).
      for (let i = 0; i < 40; i++) {
        await Promise.all(
          Array.from({ length: 50 }, async () => {
            const r = await request(`${gh.dataUrl}/x?i=${i}`, { headers: { authorization: `Bearer ${KEY}` }, dispatcher: agent })
            await r.body.text()
          }),
        )
      }
      const text = await (await request(`${gh.adminUrl}/metrics`, { dispatcher: agent })).body.text()
      const m = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(text)
      assert.ok(m !== null, 'the new space is reported at /metrics')
      // V8 reports both semi-spaces; Node 20's default would have grown them to 2 × 16 MiB at start.
      assert.ok(Number(m[1]) <= 2 * SEMI_SPACE_CAP_MIB * 1024 * 1024, `new space ${Number(m[1]) / 1048576} MiB`)
    } finally {
      await stop(gh)
    }
  })

  it('stops the young generation at the cap under allocation that grows it to the maximum without', () => {
    const cap = 2 * SEMI_SPACE_CAP_MIB
    const free = churnNewSpace(dir, false)
    assert.ok(free > cap, `the control grows past the cap (${free} MiB), so this test can fail`)
    assert.ok(churnNewSpace(dir, true) <= cap)
    // A user's own setting wins: the cap does nothing then.
    assert.ok(churnNewSpace(dir, true, ['--max-semi-space-size=16']) > cap)
  })

  it("leaves the young generation to a user's own node flags", () => {
    assert.equal(youngGenerationSetByUser([], ''), false)
    assert.equal(youngGenerationSetByUser([], '--max-old-space-size=512'), false)
    assert.equal(youngGenerationSetByUser([], '--max-semi-space-size=16'), true)
    assert.equal(youngGenerationSetByUser(['--max_semi_space_size=8'], ''), true)
    assert.equal(youngGenerationSetByUser(['--semi-space-growth-factor=3'], ''), true)
  })

  it('does not load undici, ldapts, Redis, or prom-client before the first scrape, in an API-key process', async () => {
    const rec = moduleRecorder(mkdtempSync(path.join(dir, 'rec-')))
    const gh = await startServe({ NODE_OPTIONS: rec.nodeOptions, GATEHOUSE_STATE_DIR: path.join(dir, 's2'), GATEHOUSE_TLS_ENABLED: 'false', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'u' }, { cwd: dir })
    const r = await request(`${gh.dataUrl}/x`, { headers: { authorization: `Bearer ${KEY}` }, dispatcher: agent })
    await r.body.text()
    assert.equal(r.statusCode, 200)
    await stop(gh)
    const loaded = rec.loaded()
    assert.ok(loaded.some((m) => m.includes('/dist/server/serve.js')), 'the recorder saw the server load')
    assert.deepEqual(loaded.filter((m) => OPTIONAL.test(m)), [])
  })

  it('loads undici when an OIDC issuer is configured (the recorder sees what is required on first use)', async () => {
    const rec = moduleRecorder(mkdtempSync(path.join(dir, 'rec-')))
    const gh = await startServe({ NODE_OPTIONS: rec.nodeOptions, GATEHOUSE_STATE_DIR: path.join(dir, 's3'), GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_METRICS_ENABLED: 'false', AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: issuer.url, AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub' }, { cwd: dir })
    await stop(gh)
    assert.ok(rec.loaded().some((m) => /node_modules\/undici\//.test(m)))
  })
})
