/**
 * Weaviate's own API-key + admin-list example, verbatim, through the real `gatehouse serve`
 * configured by environment variables only (as the acceptance check does), in front of a real
 * recording upstream.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const JANE = 'jane-secret-key'
const IAN = 'ian-secret-key'

describe('Weaviate example: keys jane/ian, admin jane, read-only ian (weaviate profile)', () => {
  let up: RecordingUpstream
  let gh: ServeProcess
  let dir: string
  let agent: Agent

  before(async () => {
    usedSecrets.add(JANE).add(IAN)
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-wv-'))
    gh = await startServe(
      {
        GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        GATEHOUSE_LOG_LEVEL: 'trace',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE},${IAN}`,
        AUTHENTICATION_APIKEY_USERS: 'jane@doe.com,ian-smith',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'jane@doe.com',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'ian-smith',
      },
      { cwd: dir },
    )
    const ca = readFileSync(path.join(dir, 'state/tls/self-signed.crt'), 'utf8')
    agent = new Agent({ connect: { ca } })
  })

  after(async () => {
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    await agent.close()
    await up.close()
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
    rmSync(dir, { recursive: true, force: true })
  })

  async function call(method: string, p: string, key?: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
    const r = await request(`${gh.dataUrl}${p}`, {
      method: method as 'GET',
      headers: key === undefined ? {} : { authorization: `Bearer ${key}` },
      body: method === 'GET' || method === 'HEAD' ? undefined : '{}',
      dispatcher: agent,
    })
    return { status: r.statusCode, body: await r.body.text(), headers: r.headers }
  }

  it('jane (admin) may write: POST /v1/objects reaches the upstream as jane@doe.com', async () => {
    up.reset()
    const r = await call('POST', '/v1/objects', JANE)
    assert.equal(r.status, 200)
    assert.equal(up.requests.length, 1)
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'jane@doe.com')
    assert.equal(up.requests[0]?.headers['x-forwarded-auth-method'], 'apikey')
    assert.equal(up.requests[0]?.headers.authorization, undefined, 'the client key is not passed upstream by default')
  })

  it('ian (read-only) may read: GET /v1/schema and POST /v1/graphql', async () => {
    up.reset()
    assert.equal((await call('GET', '/v1/schema', IAN)).status, 200)
    assert.equal((await call('POST', '/v1/graphql', IAN)).status, 200)
    assert.equal(up.requests.length, 2)
    assert.deepEqual(up.requests.map((r) => r.headers['x-forwarded-user']), ['ian-smith', 'ian-smith'])
  })

  for (const [method, p] of [['POST', '/v1/objects'], ['DELETE', '/v1/schema/Article'], ['PUT', '/v1/objects/Article/1'], ['PATCH', '/v1/objects/Article/1'], ['POST', '/v1/batch/objects']] as const) {
    it(`ian may not ${method} ${p}: 403 and the upstream sees nothing`, async () => {
      up.reset()
      const r = await call(method, p, IAN)
      assert.equal(r.status, 403)
      assert.equal(JSON.parse(r.body).reason, 'ERR_FORBIDDEN')
      assert.equal(up.requests.length, 0)
    })
  }

  it('nobody else gets in: a wrong key is 401 with invalid_token; no key is 401 listing the methods', async () => {
    up.reset()
    const wrong = await call('GET', '/v1/schema', 'not-a-key-of-ours')
    assert.equal(wrong.status, 401)
    assert.equal(JSON.parse(wrong.body).reason, 'ERR_INVALID_API_KEY')
    assert.match(String(wrong.headers['www-authenticate']), /error="invalid_token"/)
    const none = await call('GET', '/v1/schema')
    assert.equal(none.status, 401)
    assert.equal(JSON.parse(none.body).message, 'anonymous access not enabled. Please authenticate through one of the available methods: [API-keys]')
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="gatehouse"')
    assert.equal(none.headers['content-type'], 'application/json')
    assert.equal(none.headers['cache-control'], 'no-store')
    assert.equal(up.requests.length, 0)
  })

  it('public Weaviate paths need no key; /v1/meta needs a key but no role', async () => {
    up.reset()
    assert.equal((await call('GET', '/v1/.well-known/ready')).status, 200)
    assert.equal((await call('GET', '/v1/.well-known/live')).status, 200)
    assert.equal((await call('GET', '/v1/meta')).status, 401)
    assert.equal(up.requests.length, 2)
  })

  it('one access line per request, with user, status and reason, and no key', async () => {
    // Access lines are written in batches, flushed at least every 250 ms.
    const lines = (): Record<string, unknown>[] => gh.stdout.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    for (let i = 0; i < 40 && lines().length < 13; i++) await new Promise((r) => setTimeout(r, 50))
    const access = lines()
    assert.equal(access.length, 13, `one line for each of the 13 requests above: ${access.map((a) => `${a.method} ${a.path} ${a.status}`).join('; ')}`)
    const denied = access.find((a) => a.status === 403)
    assert.equal(denied?.user, 'ian-smith')
    assert.equal(denied?.reason, 'ERR_FORBIDDEN')
    for (const a of access) for (const k of ['requestId', 'method', 'path', 'status', 'durationMs']) assert.ok(k in a, `access line lacks ${k}`)
  })
})
