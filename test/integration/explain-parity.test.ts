/**
 * `gatehouse explain` agrees with the server (issue: explain disagreed with the server). For
 * every authenticator — API key (also qdrant's `api-key` header), OIDC through the real test
 * issuer, local users' tokens (login and long-lived), anonymous on and off, a bad token, an
 * unknown `iss`, a revoked local token — and every profile (generic, weaviate, qdrant: a public
 * path, a read, a write; admin and read-only users), the real `gatehouse explain` binary is run
 * with the same configuration (same environment, same file, same state directory) as a running
 * gatehouse, and the same request is sent to that gatehouse. The decision (allow/deny, status,
 * reason, user) must agree, and a denied request must not have reached the recording upstream.
 *
 * Also: `--token-file` on the generated `<stateDir>/api-keys` (a comment line, then the key) and
 * on the CLI's `auth-token.json`; without a configuration file explain says so.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { baseEnv, BIN, ROOT, runCli } from '../helpers/cli.ts'
import { corruptSignature, startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY_ADMIN = 'parity-admin-key-0123456789'
const KEY_RO = 'parity-reader-key-0123456789'
const ADMIN_PW = 'Parity-Admin-1'
// Failed credentials would block 127.0.0.1 in the server (explain cannot see a server's
// in-memory counters, see docs/cli.md); the throttle has its own tests.
const YAML = 'authentication:\n  failureThrottle:\n    enabled: false\n'

type Profile = 'generic' | 'weaviate' | 'qdrant'

/** A public path, a read and a write per profile (SPEC §6). */
const REQUESTS: Record<Profile, [string, string][]> = {
  generic: [
    ['GET', '/v1/.well-known/openid-configuration'],
    ['GET', '/data/items'],
    ['POST', '/data/items'],
  ],
  weaviate: [
    ['GET', '/v1/.well-known/ready'],
    ['POST', '/v1/graphql'],
    ['POST', '/v1/objects'],
    ['GET', '/v1/meta'],
  ],
  qdrant: [
    ['GET', '/healthz'],
    ['POST', '/collections/c/points/search'],
    ['PUT', '/collections/c/points'],
  ],
}

interface Cred {
  readonly name: string
  /** A bearer token; undefined: no credential. */
  readonly token?: string
  /** Headers instead of a token (qdrant's api-key). */
  readonly headers?: Record<string, string>
}

interface Decision {
  decision: 'allow' | 'deny'
  status: number | undefined
  reason: string | undefined
  user: string | undefined
}

function envFor(profile: Profile, issuer: TestIssuer, up: RecordingUpstream, anonymous: boolean): Record<string, string> {
  return {
    GATEHOUSE_UPSTREAM_URL: up.url,
    GATEHOUSE_UPSTREAM_PROFILE: profile,
    AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: String(anonymous),
    AUTHENTICATION_APIKEY_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${KEY_ADMIN},${KEY_RO}`,
    AUTHENTICATION_APIKEY_USERS: 'alice,bob',
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: issuer.url,
    AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email',
    AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups',
    GATEHOUSE_LOCAL_ENABLED: 'true',
    GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW,
    AUTHORIZATION_ADMINLIST_ENABLED: 'true',
    AUTHORIZATION_ADMINLIST_USERS: 'alice,oidc-admin@example.com',
    AUTHORIZATION_ADMINLIST_READONLY_USERS: 'bob,oidc-reader@example.com',
    // Local users carry their role as a group (SPEC §6).
    AUTHORIZATION_ADMINLIST_GROUPS: 'admin',
    AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'readonly',
    ...(anonymous ? { AUTHORIZATION_ADMINLIST_READONLY_USERS: 'bob,oidc-reader@example.com,anonymous' } : {}),
  }
}

/** Run the real binary (asynchronously, so that two run at once on the two cores). */
function explainCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'explain', ...args], { env: baseEnv(env), cwd: ROOT })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function explained(method: string, p: string, cred: Cred, env: Record<string, string>): Promise<Decision> {
  const args = ['--method', method, '--path', p, '--json']
  if (cred.token !== undefined) args.push('--token', cred.token)
  for (const [k, val] of Object.entries(cred.headers ?? {})) args.push('--header', `${k}: ${val}`)
  if (cred.token === undefined && cred.headers === undefined) args.push('--anonymous')
  const r = await explainCli(args, env)
  assert.equal(r.code, 0, `explain ${method} ${p} as ${cred.name}: ${r.stderr}`)
  const j = JSON.parse(r.stdout) as { decision: 'allow' | 'deny'; status?: number; reason?: string; principal?: { user: string } }
  return { decision: j.decision, status: j.status, reason: j.reason, user: j.principal?.user }
}

async function served(gh: TestProxy, up: RecordingUpstream, method: string, p: string, cred: Cred): Promise<Decision & { upstreamSaw: number }> {
  up.reset()
  const r = await gh.request(p, { method, ...(cred.token === undefined ? {} : { token: cred.token }), ...(cred.headers === undefined ? {} : { headers: cred.headers }) })
  const seen = up.requests.length
  const forwardedUser = up.requests[0]?.headers['x-forwarded-user']
  if (r.status >= 400 && r.headers['content-type']?.includes('application/json') === true && seen === 0) {
    return { decision: 'deny', status: r.status, reason: (r.json() as { reason: string }).reason, user: undefined, upstreamSaw: seen }
  }
  // Allowed: forwarded (the upstream names the user it was told), or answered by gatehouse itself
  // (the discovery document, 200 or Weaviate's bare 404 when OIDC is off).
  return { decision: 'allow', status: seen === 0 ? r.status : undefined, reason: undefined, user: typeof forwardedUser === 'string' ? forwardedUser : undefined, upstreamSaw: seen }
}

describe('gatehouse explain agrees with a running gatehouse', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  const creds: Cred[] = []

  before(async () => {
    issuer = await startIssuer({ audience: 'gatehouse' })
    up = await startUpstream()
    const now = Math.floor(Date.now() / 1000)
    const oidcAdmin = await issuer.sign({ email: 'oidc-admin@example.com', groups: [] })
    const oidcReader = await issuer.sign({ email: 'oidc-reader@example.com' })
    const oidcNobody = await issuer.sign({ email: 'someone@example.com' })
    const oidcExpired = await issuer.sign({ email: 'oidc-admin@example.com', iat: now - 900, exp: now - 600 })
    const unknownIss = await issuer.sign({ iss: 'https://elsewhere.example', email: 'oidc-admin@example.com' })
    creds.push(
      { name: 'no credential' },
      { name: 'API key, admin', token: KEY_ADMIN },
      { name: 'API key, read-only', token: KEY_RO },
      { name: 'bad API key', token: 'parity-wrong-key-0123456789' },
      { name: 'OIDC, admin', token: oidcAdmin },
      { name: 'OIDC, read-only', token: oidcReader },
      { name: 'OIDC, on no list', token: oidcNobody },
      { name: 'OIDC, bad signature', token: corruptSignature(oidcAdmin) },
      { name: 'OIDC, expired', token: oidcExpired },
      { name: 'JWT of an unknown iss', token: unknownIss },
    )
    for (const t of [oidcAdmin, oidcReader, oidcNobody, oidcExpired, unknownIss, KEY_ADMIN, KEY_RO]) usedSecrets.add(t)
  })

  after(async () => {
    await issuer.close()
    await up.close()
  })

  const matrix: [Profile, boolean][] = [
    ['generic', false],
    ['weaviate', false],
    ['qdrant', false],
    ['weaviate', true],
  ]
  for (const [profile, anonymous] of matrix) {
    it(`${profile}, anonymous ${anonymous ? 'on' : 'off'}: every authenticator, public path, read and write`, async () => {
      const gh = await startProxy({ env: envFor(profile, issuer, up, anonymous), yaml: YAML, logLevel: 'debug' })
      try {
        // The CLI gets exactly the server's configuration: the same environment, the same file,
        // the same state directory.
        const env = { ...envFor(profile, issuer, up, anonymous), GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state'), GATEHOUSE_CONFIG: path.join(gh.dir, 'proxy.yaml') }
        const local = await localTokens(gh)
        const all: Cred[] = [
          ...creds,
          { name: 'local admin (login)', token: local.admin },
          { name: 'local read-only (login)', token: local.reader },
          { name: 'local read-only (long-lived)', token: local.longLived },
          { name: 'local regular user', token: local.regular },
          { name: 'local token, revoked', token: local.revoked },
          ...(profile === 'qdrant' ? [{ name: 'qdrant api-key header', headers: { 'api-key': KEY_RO } }] : []),
        ]
        // Anonymous on changes what a request without a credential gets, and nothing else: that
        // configuration is checked with a few credentials (the suite runs on two shared cores).
        const ANON_ON = new Set(['no credential', 'API key, read-only', 'bad API key', 'OIDC, bad signature', 'local read-only (login)'])
        const cases = all.filter((cred) => !anonymous || ANON_ON.has(cred.name)).flatMap((cred) => REQUESTS[profile].map(([method, p]) => ({ cred, method, p })))
        // Two explains at a time (two cores); the server requests one after another afterwards.
        const explains: Decision[] = new Array(cases.length)
        let next = 0
        await Promise.all(
          [0, 1].map(async () => {
            while (next < cases.length) {
              const i = next++
              const c = cases[i] as (typeof cases)[number]
              explains[i] = await explained(c.method, c.p, c.cred, env)
            }
          }),
        )
        const seenDecisions = new Set<string>()
        for (const [i, c] of cases.entries()) {
          const e = explains[i] as Decision
          const s = await served(gh, up, c.method, c.p, c.cred)
          const what = `${profile} ${c.method} ${c.p} as ${c.cred.name}`
          assert.equal(e.decision, s.decision, `${what}: explain ${JSON.stringify(e)}, server ${JSON.stringify(s)}`)
          if (s.decision === 'deny') {
            assert.equal(e.status, s.status, `${what}: status`)
            assert.equal(e.reason, s.reason, `${what}: reason`)
            assert.equal(s.upstreamSaw, 0, `${what}: a denied request reached the upstream`)
          } else if (s.upstreamSaw === 0) {
            assert.equal(e.status, s.status, `${what}: gatehouse's own answer`)
          } else {
            assert.equal(e.user, s.user, `${what}: the user the upstream was told`)
          }
          seenDecisions.add(`${e.decision} ${e.status ?? ''} ${e.reason ?? ''}`)
        }
        // The matrix covers allow, 401 and 403 (a matrix that only ever allowed could not fail).
        assert.ok([...seenDecisions].some((d) => d.startsWith('allow')), [...seenDecisions].join('; '))
        assert.ok([...seenDecisions].some((d) => d.startsWith('deny 401')), [...seenDecisions].join('; '))
        assert.ok([...seenDecisions].some((d) => d.startsWith('deny 403 ERR_FORBIDDEN')), [...seenDecisions].join('; '))
        assertNoSecretsInLogs(gh.logs, Object.values(local))
      } finally {
        await gh.stop()
      }
    })
  }

  it('a local account that must change its password: 403 on both sides, before anything else', async () => {
    const env0 = envFor('weaviate', issuer, up, false)
    delete (env0 as Partial<typeof env0>).GATEHOUSE_ADMIN_PASSWORD
    const gh = await startProxy({ env: env0, yaml: YAML })
    try {
      const env = { ...env0, GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state'), GATEHOUSE_CONFIG: path.join(gh.dir, 'proxy.yaml') }
      // The first admin's default password admin/admin must be changed first (SPEC §8).
      const r = await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: 'admin' }) })
      const token = (r.json() as { data: { access_token: string } }).data.access_token
      usedSecrets.add(token)
      for (const [method, p] of REQUESTS.weaviate.slice(1)) {
        const e = await explained(method, p, { name: 'must change', token }, env)
        const s = await served(gh, up, method, p, { name: 'must change', token })
        assert.deepEqual({ ...e, user: undefined }, { decision: 'deny', status: 403, reason: 'ERR_PASSWORD_CHANGE_REQUIRED', user: undefined })
        assert.deepEqual({ decision: s.decision, status: s.status, reason: s.reason, upstreamSaw: s.upstreamSaw }, { decision: 'deny', status: 403, reason: 'ERR_PASSWORD_CHANGE_REQUIRED', upstreamSaw: 0 })
      }
    } finally {
      await gh.stop()
    }
  })

  it('a CORS preflight is public and carries no identity on both sides; another OPTIONS is a read', async () => {
    const gh = await startProxy({ env: envFor('qdrant', issuer, up, false), yaml: YAML })
    try {
      const env = { ...envFor('qdrant', issuer, up, false), GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state'), GATEHOUSE_CONFIG: path.join(gh.dir, 'proxy.yaml') }
      const preflight = { origin: 'https://app.example', 'access-control-request-method': 'PUT' }
      const args = ['--method', 'OPTIONS', '--path', '/collections/c/points', '--json']
      const e = await explainCli([...args, '--header', `Origin: ${preflight.origin}`, '--header', 'Access-Control-Request-Method: PUT'], env)
      assert.equal(e.code, 0, e.stderr)
      const j = JSON.parse(e.stdout) as { decision: string; access: string; upstreamRequest?: { headers: string[] } }
      up.reset()
      const s = await gh.request('/collections/c/points', { method: 'OPTIONS', headers: preflight })
      assert.equal(s.status, 200)
      assert.equal(up.requests.length, 1)
      assert.equal(j.decision, 'allow')
      assert.equal(j.access, 'public')
      assert.equal(up.requests[0]?.headers['x-forwarded-user'], undefined, 'the server injected no identity')
      assert.ok(!(j.upstreamRequest?.headers ?? []).some((h) => /^x-forwarded-(user|groups|auth-method):/i.test(h)), `explain injects none either: ${JSON.stringify(j.upstreamRequest)}`)
      // Without Access-Control-Request-Method it is an ordinary OPTIONS: a read, 401 without a credential.
      const e2 = await explained('OPTIONS', '/collections/c/points', { name: 'plain OPTIONS', headers: { origin: preflight.origin } }, env)
      const s2 = await served(gh, up, 'OPTIONS', '/collections/c/points', { name: 'plain OPTIONS', headers: { origin: preflight.origin } })
      assert.deepEqual([e2.decision, e2.status, e2.reason], ['deny', 401, 'ERR_UNAUTHENTICATED'])
      assert.deepEqual([s2.decision, s2.status, s2.reason, s2.upstreamSaw], ['deny', 401, 'ERR_UNAUTHENTICATED', 0])
    } finally {
      await gh.stop()
    }
  })

  it('explain reads the state directory and never writes to it', async () => {
    const gh = await startProxy({ env: envFor('generic', issuer, up, false), yaml: YAML })
    try {
      const env = { ...envFor('generic', issuer, up, false), GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state'), GATEHOUSE_CONFIG: path.join(gh.dir, 'proxy.yaml') }
      const local = await localTokens(gh)
      // The OIDC keys the server persisted exist; explain fetches its own and must not touch them.
      const oidcDir = path.join(gh.dir, 'state', 'oidc')
      for (let i = 0; i < 100 && !(existsSync(oidcDir) && readdirSync(oidcDir).length > 0); i++) await new Promise((r) => setTimeout(r, 50))
      assert.ok(readdirSync(oidcDir).length > 0, 'the server persisted the issuer keys')
      const before = snapshot(path.join(gh.dir, 'state'))
      for (const token of [local.admin, await issuer.sign({ email: 'oidc-admin@example.com' })]) {
        const e = await explained('POST', '/data', { name: 'x', token }, env)
        assert.equal(e.decision, 'allow')
      }
      assert.deepEqual(snapshot(path.join(gh.dir, 'state')), before)
    } finally {
      await gh.stop()
    }
  })
})

describe('gatehouse explain --token-file and the configuration it read', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-explain-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('the generated api-keys file (a comment line, then the key) is judged as its key, as the server judges it', async () => {
    const stateDir = path.join(dir, 'state')
    const up = await startUpstream()
    const env = { GATEHOUSE_STATE_DIR: stateDir, GATEHOUSE_UPSTREAM_URL: up.url, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_USERS: 'demo' }
    const yamlText = 'authentication:\n  apikey:\n    generateIfMissing: true\n'
    const yaml = path.join(dir, 'gen.yaml')
    writeFileSync(yaml, yamlText)
    // Before the server's first start the file does not exist: one clear line, not a stack.
    const missing = runCli(['explain', '--method', 'GET', '--path', '/x', '--anonymous', '--config', yaml], { env })
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /api-keys does not exist; gatehouse serve creates it on its first start/)
    const gh = await startProxy({ env, yaml: yamlText })
    try {
      const keysFile = path.join(stateDir, 'api-keys')
      const key = readFileSync(keysFile, 'utf8').trim().split('\n').at(-1) as string
      usedSecrets.add(key)
      const r = runCli(['explain', '--method', 'GET', '--path', '/x', '--token-file', keysFile, '--config', yaml, '--json'], { env })
      assert.equal(r.code, 0, r.stderr)
      const j = JSON.parse(r.stdout) as { decision: string; principal?: { user: string } }
      assert.equal(j.decision, 'allow', r.stdout)
      assert.equal(j.principal?.user, 'demo')
      assert.ok(!r.stdout.includes(key) && !r.stderr.includes(key), 'the key is not echoed')
      const s = await gh.request('/x', { token: key })
      assert.equal(s.status, 200)
      assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'demo')
    } finally {
      await gh.stop()
      await up.close()
    }
  })

  it('a token file with several tokens, or none, is a usage error that says what to do', () => {
    const f = path.join(dir, 'two')
    writeFileSync(f, '# two keys\nk1-0123456789\nk2-0123456789\n')
    const r = runCli(['explain', '--method', 'GET', '--path', '/x', '--token-file', f], {})
    assert.equal(r.code, 2)
    assert.match(r.stderr, /holds 2 tokens; explain judges one: put it in a file of its own/)
    assert.ok(!r.stderr.includes('k1-0123456789'))
    writeFileSync(f, '# nothing\n\n')
    const none = runCli(['explain', '--method', 'GET', '--path', '/x', '--token-file', f], {})
    assert.equal(none.code, 2)
    assert.match(none.stderr, /holds no token/)
  })

  it('the CLI token file (auth-token.json) is judged as its access token', () => {
    const f = path.join(dir, 'auth-token.json')
    writeFileSync(f, JSON.stringify({ access_token: KEY_ADMIN, refresh_token: 'r-0123456789', token_type: 'Bearer' }))
    const env = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY_ADMIN, AUTHENTICATION_APIKEY_USERS: 'alice' }
    const r = runCli(['explain', '--method', 'GET', '--path', '/x', '--token-file', f, '--json'], { env })
    assert.equal(r.code, 0, r.stderr)
    assert.equal((JSON.parse(r.stdout) as { principal?: { user: string } }).principal?.user, 'alice')
  })

  it('without a configuration file explain says that only defaults and environment were read', () => {
    const r = runCli(['explain', '--method', 'GET', '--path', '/x', '--anonymous'], {})
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^configuration: +none: defaults and environment only \(name a file with --config FILE or GATEHOUSE_CONFIG/m)
    // ROOT holds the shipped proxy.yaml, which npm start reads: explain points at it.
    assert.match(r.stdout, /\.\/proxy\.yaml exists but is not read unless named/)
    // As after `npm start`'s first start: the generated key file exists.
    mkdirSync(path.join(dir, 'shipped'))
    writeFileSync(path.join(dir, 'shipped', 'api-keys'), '# generated\ngh_shipped-0123456789\n')
    const shipped = runCli(['explain', '--method', 'GET', '--path', '/x', '--anonymous', '--json', '--config', path.join(ROOT, 'proxy.yaml')], { env: { GATEHOUSE_STATE_DIR: path.join(dir, 'shipped') } })
    assert.equal(shipped.code, 0, shipped.stderr)
    const j = JSON.parse(shipped.stdout) as { config: string; decision: string; status: number }
    assert.equal(j.config, path.join(ROOT, 'proxy.yaml'))
    // The shipped configuration refuses anonymous requests, as `npm start` does.
    assert.equal(j.decision, 'deny')
    assert.equal(j.status, 401)
  })
})

/** Tokens of local users: the admin, a read-only user (login and long-lived), a regular user, a revoked one. */
async function localTokens(gh: TestProxy): Promise<Record<'admin' | 'reader' | 'longLived' | 'regular' | 'revoked', string>> {
  const login = async (username: string, password: string): Promise<string> => {
    const r = await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username, password }) })
    assert.equal(r.status, 200, r.text)
    return (r.json() as { data: { access_token: string } }).data.access_token
  }
  const admin = await login('admin', ADMIN_PW)
  const create = async (username: string, role: string): Promise<void> => {
    const r = await gh.admin('/api/v2/users', { method: 'POST', token: admin, body: JSON.stringify({ username, password: 'Parity-User-1', role }) })
    assert.equal(r.status, 201, r.text)
  }
  await create('rita', 'readonly')
  await create('greg', 'regular')
  await create('victor', 'admin')
  const reader = await login('rita', 'Parity-User-1')
  const lr = await gh.admin('/api/v2/users/tokens', { method: 'POST', token: reader, body: JSON.stringify({ access_token_timeout: '1h' }) })
  assert.equal(lr.status, 200, lr.text)
  const longLived = (lr.json() as { data: { access_token: string } }).data.access_token
  const regular = await login('greg', 'Parity-User-1')
  const revoked = await login('victor', 'Parity-User-1')
  assert.equal((await gh.admin('/api/v2/users/victor/revoke', { method: 'DELETE', token: admin })).status, 200)
  for (const t of [admin, reader, longLived, regular, revoked]) usedSecrets.add(t)
  return { admin, reader, longLived, regular, revoked }
}

/** Every file under `dir` with its size and modification time. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const f = path.join(d, name)
      const st = statSync(f)
      if (st.isDirectory()) walk(f)
      else out[path.relative(dir, f)] = `${st.size} ${st.mtimeMs}`
    }
  }
  walk(dir)
  return out
}
