/**
 * The real `gatehouse` binary (SPEC §2, §3): config check / print, apikey generate, explain,
 * usage errors and --help, and serve refusing a bad config before it listens. Most cases are
 * configured by environment variables only, from an empty working directory (so no
 * proxy.yaml is picked up); a few use the YAML fixtures in test/fixtures/config/.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'

const FIXTURES = path.join(ROOT, 'test/fixtures/config')
const JANE_KEY = 'cli-jane-key-4e1b9c'
const IAN_KEY = 'cli-ian-key-7d20aa'
const SECRETS = [JANE_KEY, IAN_KEY, 'cli-dup-key-0f9e11', 'inline-plaintext-key-7f3a', 'fixture-key-one']

/** Weaviate's own API-key + admin-list example (weaviate profile). */
const WEAVIATE_EXAMPLE: Record<string, string> = {
  GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},${IAN_KEY}`,
  AUTHENTICATION_APIKEY_USERS: 'jane@doe.com,ian-smith',
  AUTHORIZATION_ADMINLIST_ENABLED: 'true',
  AUTHORIZATION_ADMINLIST_USERS: 'jane@doe.com',
  AUTHORIZATION_ADMINLIST_READONLY_USERS: 'ian-smith',
}

let EMPTY: string
before(() => {
  EMPTY = mkdtempSync(path.join(tmpdir(), 'gh-cli-test-'))
})
after(() => rmSync(EMPTY, { recursive: true, force: true }))

/** Run from an empty directory: defaults plus the given environment. */
function run(args: string[], env: Record<string, string> = {}, cwd?: string): { code: number; stdout: string; stderr: string } {
  return runCli(args, { env, cwd: cwd ?? EMPTY })
}

function assertNoSecrets(text: string, secrets: readonly string[] = SECRETS): void {
  for (const s of secrets) assert.ok(!text.includes(s), `secret ${s} was printed:\n${text}`)
}

/** The problem lines of a failed config check (two-space indented). */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('  '))
}

describe('gatehouse config check', () => {
  it('exits 0 on a valid env-only config', () => {
    const r = run(['config', 'check'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /configuration OK/)
    assertNoSecrets(r.stdout + r.stderr)
  })
  it('exits 0 with no configuration at all (defaults)', () => {
    const r = run(['config', 'check'])
    assert.equal(r.code, 0, r.stderr)
  })
  it('exits 0 on a valid YAML file plus env keys', () => {
    const r = run(['config', 'check', '--config', path.join(FIXTURES, 'valid.yaml')], { AUTHENTICATION_APIKEY_ALLOWED_KEYS: JANE_KEY })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /configuration OK \(.*valid\.yaml\)/)
  })

  // Every bad case of SPEC §3, driven by environment variables only.
  const cases: { name: string; env: Record<string, string>; key: string; message: RegExp; envName?: string }[] = [
    { name: 'API keys on, no key', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_USERS: 'u' }, key: 'authentication.apikey.allowedKeys', message: /need at least one valid allowed key/ },
    { name: 'an empty key', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},`, AUTHENTICATION_APIKEY_USERS: 'u' }, key: 'authentication.apikey.allowedKeys[1]', message: /keys cannot have length 0/, envName: 'AUTHENTICATION_APIKEY_ALLOWED_KEYS' },
    { name: 'a duplicate key', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'cli-dup-key-0f9e11,cli-dup-key-0f9e11', AUTHENTICATION_APIKEY_USERS: 'u' }, key: 'authentication.apikey.allowedKeys[1]', message: /keys must be unique/, envName: 'AUTHENTICATION_APIKEY_ALLOWED_KEYS' },
    {
      name: 'a plaintext key and its sha256 form',
      env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `cli-dup-key-0f9e11,sha256:${createHash('sha256').update('cli-dup-key-0f9e11').digest('hex')}`, AUTHENTICATION_APIKEY_USERS: 'u' },
      key: 'authentication.apikey.allowedKeys[1]',
      message: /keys must be unique/,
    },
    { name: 'no user', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: JANE_KEY }, key: 'authentication.apikey.users', message: /need at least one user/ },
    { name: 'an empty user', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},${IAN_KEY}`, AUTHENTICATION_APIKEY_USERS: 'jane,' }, key: 'authentication.apikey.users[1]', message: /users cannot have length 0/, envName: 'AUTHENTICATION_APIKEY_USERS' },
    { name: '2 users for 3 keys', env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},${IAN_KEY},cli-dup-key-0f9e11`, AUTHENTICATION_APIKEY_USERS: 'a,b' }, key: 'authentication.apikey.users', message: /length of users and keys must match, alternatively provide single user for all keys/, envName: 'AUTHENTICATION_APIKEY_USERS' },
    { name: 'OIDC without issuer', env: { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub', AUTHENTICATION_OIDC_CLIENT_ID: 'c' }, key: 'authentication.oidc.issuer', message: /missing required field 'issuer'/ },
    { name: 'OIDC without username claim', env: { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com', AUTHENTICATION_OIDC_CLIENT_ID: 'c' }, key: 'authentication.oidc.usernameClaim', message: /missing required field 'username_claim'/ },
    { name: 'OIDC without client id', env: { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub' }, key: 'authentication.oidc.clientId', message: /missing required field 'client_id'/ },
    { name: 'a user on both admin lists', env: { AUTHORIZATION_ADMINLIST_ENABLED: 'true', AUTHORIZATION_ADMINLIST_USERS: 'jane', AUTHORIZATION_ADMINLIST_READONLY_USERS: 'jane' }, key: 'authorization.adminlist.readonlyUsers', message: /admin list: subject 'jane' is present on both admin and read-only list/ },
    { name: 'a group on both admin lists', env: { AUTHORIZATION_ADMINLIST_ENABLED: 'true', AUTHORIZATION_ADMINLIST_GROUPS: 'ops', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'ops' }, key: 'authorization.adminlist.readonlyGroups', message: /admin list: subject 'ops' is present on both admin and read-only list/ },
    { name: 'GATEHOUSE_PORT=abc', env: { GATEHOUSE_PORT: 'abc' }, key: 'listen.port', message: /integer/, envName: 'GATEHOUSE_PORT' },
    { name: 'GATEHOUSE_TLS_ENABLED=maybe', env: { GATEHOUSE_TLS_ENABLED: 'maybe' }, key: 'tls.enabled', message: /boolean/, envName: 'GATEHOUSE_TLS_ENABLED' },
    { name: 'GATEHOUSE_UPSTREAM_PROFILE=mongo', env: { GATEHOUSE_UPSTREAM_PROFILE: 'mongo' }, key: 'upstream.profile', message: /generic, weaviate, qdrant/, envName: 'GATEHOUSE_UPSTREAM_PROFILE' },
    { name: 'tls cert without key', env: { GATEHOUSE_TLS_CERT_FILE: '/nonexistent/cert.pem' }, key: 'tls.', message: /set together/ },
  ]
  for (const c of cases) {
    it(`exits 2 and names the key: ${c.name}`, () => {
      const r = run(['config', 'check'], c.env)
      assert.equal(r.code, 2, `exit code; stderr:\n${r.stderr}`)
      const line = problemLines(r.stderr).find((l) => l.includes(c.key) && c.message.test(l))
      assert.ok(line !== undefined, `no problem line naming ${c.key} matching ${String(c.message)}:\n${r.stderr}`)
      if (c.envName !== undefined) assert.ok(line.includes(`env ${c.envName}`), `the line names env ${c.envName}: ${line}`)
      assert.match(line, /Fix: \S/, 'every problem has a remedy')
      assert.doesNotMatch(r.stdout, /configuration OK/)
      assertNoSecrets(r.stdout + r.stderr)
    })
  }

  it('lists every problem at once, with a count', () => {
    const r = run(['config', 'check'], {
      AUTHENTICATION_APIKEY_ENABLED: 'true',
      AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'cli-dup-key-0f9e11,,cli-dup-key-0f9e11',
      AUTHENTICATION_APIKEY_USERS: 'a,b',
      AUTHENTICATION_OIDC_ENABLED: 'true',
      AUTHORIZATION_ADMINLIST_ENABLED: 'true',
      AUTHORIZATION_ADMINLIST_USERS: 'x',
      AUTHORIZATION_ADMINLIST_READONLY_USERS: 'x',
    })
    assert.equal(r.code, 2)
    const lines = problemLines(r.stderr)
    assert.ok(lines.length >= 7, r.stderr)
    const m = /has (\d+) problems/.exec(r.stderr)
    assert.ok(m !== null, r.stderr)
    assert.equal(Number(m[1]), lines.length)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('reports a type error and a semantic error together (SPEC §3: all problems at once)', () => {
    const r = run(['config', 'check'], { GATEHOUSE_PORT: 'abc', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_USERS: 'u' })
    assert.equal(r.code, 2)
    assert.ok(problemLines(r.stderr).some((l) => l.includes('env GATEHOUSE_PORT')), r.stderr)
    assert.ok(problemLines(r.stderr).some((l) => l.includes('authentication.apikey.allowedKeys') && /need at least one valid allowed key/.test(l)), r.stderr)
  })

  it('YAML: API-key problems carry file:line of each entry', () => {
    const r = run(['config', 'check', '--config', 'test/fixtures/config/bad-apikey.yaml'], {}, ROOT)
    assert.equal(r.code, 2)
    const f = 'test/fixtures/config/bad-apikey.yaml'
    assert.match(r.stderr, new RegExp(`${f}:7: authentication\\.apikey\\.allowedKeys\\[1\\].*keys cannot have length 0`))
    assert.match(r.stderr, new RegExp(`${f}:8: authentication\\.apikey\\.allowedKeys\\[2\\].*keys must be unique`))
    assert.match(r.stderr, new RegExp(`${f}:9: authentication\\.apikey\\.users.*length of users and keys must match`))
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('YAML: an unknown key names file:line and suggests the right key', () => {
    const r = run(['config', 'check', '--config', path.join(FIXTURES, 'bad-mixed.yaml')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /bad-mixed\.yaml:4: upstream\.profle: unknown key\. Fix: did you mean upstream\.profile\?/)
  })

  it('YAML: the unknown key does not hide the other problems of the file', () => {
    const r = run(['config', 'check', '--config', path.join(FIXTURES, 'bad-mixed.yaml')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /bad-mixed\.yaml:4: upstream\.profle/)
    assert.match(r.stderr, /bad-mixed\.yaml:6: tls\.ciphers.*ECDHE-RSA-AES128-SHA/)
    assert.match(r.stderr, /authorization\.adminlist\.readonlyUsers.*subject 'jane' is present on both/)
    assert.match(r.stderr, /authorization\.adminlist\.readonlyGroups.*subject 'ops' is present on both/)
  })

  it('YAML: OIDC without issuer, username claim and client id: three problems', () => {
    const r = run(['config', 'check', '--config', path.join(FIXTURES, 'bad-oidc.yaml')])
    assert.equal(r.code, 2)
    assert.equal(problemLines(r.stderr).length, 3, r.stderr)
    assert.match(r.stderr, /authentication\.oidc\.issuer.*missing required field 'issuer'/)
    assert.match(r.stderr, /authentication\.oidc\.usernameClaim.*missing required field 'username_claim'/)
    assert.match(r.stderr, /authentication\.oidc\.clientId.*missing required field 'client_id'/)
  })

  it('GATEHOUSE_CONFIG names the file', () => {
    const r = run(['config', 'check'], { GATEHOUSE_CONFIG: path.join(FIXTURES, 'bad-apikey.yaml') })
    assert.equal(r.code, 2)
    assert.match(r.stderr, /bad-apikey\.yaml:7:/)
  })

  it('a --config file that does not exist exits 2', () => {
    const r = run(['config', 'check', '--config', 'nope.yaml'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /nope\.yaml/)
  })
})

describe('gatehouse config print', () => {
  const printDir = path.join(FIXTURES, 'print')
  const env = { AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},${IAN_KEY}`, AUTHENTICATION_APIKEY_USERS: 'jane@doe.com,ian-smith' }

  it('shows each value with its source: env NAME, proxy.yaml:<line>, default', () => {
    const r = run(['config', 'print', '--config', 'proxy.yaml'], env, printDir)
    assert.equal(r.code, 0, r.stderr)
    const row = (key: string): string => {
      const l = r.stdout.split('\n').find((x) => x.startsWith(`${key} `))
      assert.ok(l !== undefined, `no row for ${key}:\n${r.stdout}`)
      return l
    }
    assert.match(row('authentication.apikey.users'), /"jane@doe\.com","ian-smith".*# env AUTHENTICATION_APIKEY_USERS$/)
    assert.match(row('authentication.apikey.allowedKeys'), /# env AUTHENTICATION_APIKEY_ALLOWED_KEYS$/)
    assert.match(row('listen.port'), /9443\s+# proxy\.yaml:4$/)
    assert.match(row('upstream.profile'), /"weaviate"\s+# proxy\.yaml:7$/)
    assert.match(row('authorization.adminlist.readonlyUsers'), /# proxy\.yaml:15$/)
    assert.match(row('admin.port'), /14000\s+# default$/)
    assert.match(row('upstream.timeouts.connect'), /# default$/)
    assert.match(r.stdout, /authentication\.anonymous\.enabled \(effective\)\s+false/)
  })

  it('never prints an API key (env keys)', () => {
    const r = run(['config', 'print', '--config', 'proxy.yaml'], env, printDir)
    assert.equal(r.code, 0, r.stderr)
    assertNoSecrets(r.stdout + r.stderr)
    assert.match(r.stdout, /redacted/)
  })

  it('never prints an API key (--json)', () => {
    const r = run(['config', 'print', '--config', 'proxy.yaml', '--json'], env, printDir)
    assert.equal(r.code, 0, r.stderr)
    assertNoSecrets(r.stdout + r.stderr)
    const rows = JSON.parse(r.stdout) as { key: string; value: unknown; source: string }[]
    const by = new Map(rows.map((x) => [x.key, x]))
    assert.equal(by.get('authentication.apikey.users')?.source, 'env AUTHENTICATION_APIKEY_USERS')
    assert.equal(by.get('listen.port')?.source, 'proxy.yaml:4')
    assert.equal(by.get('listen.port')?.value, 9443)
    assert.equal(by.get('admin.port')?.source, 'default')
  })

  it('never prints inline YAML keys (plaintext or sha256 form)', () => {
    const r = run(['config', 'print', '--config', 'inline-keys.yaml'], {}, FIXTURES)
    assert.equal(r.code, 0, r.stderr)
    assertNoSecrets(r.stdout + r.stderr)
    assert.match(r.stdout, /authentication\.apikey\.allowedKeys\s+.*redacted.*# inline-keys\.yaml:8$/m)
  })

  it('an env-only configuration prints env sources and exits 0', () => {
    const r = run(['config', 'print'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /authorization\.adminlist\.readonlyUsers\s+\["ian-smith"\]\s+# env AUTHORIZATION_ADMINLIST_READONLY_USERS/)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('a bad configuration exits 2 and prints no configuration', () => {
    const r = run(['config', 'print'], { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE_KEY},${JANE_KEY}`, AUTHENTICATION_APIKEY_USERS: 'u' })
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assertNoSecrets(r.stdout + r.stderr)
  })
})

describe('gatehouse apikey generate', () => {
  const sha = (k: string): string => `sha256:${createHash('sha256').update(k).digest('hex')}`

  it('prints a gh_ key and its sha256 form', () => {
    const r = run(['apikey', 'generate'])
    assert.equal(r.code, 0, r.stderr)
    const key = /^key:\s+(\S+)$/m.exec(r.stdout)?.[1]
    const hash = /^sha256:\s+(sha256:[0-9a-f]{64})$/m.exec(r.stdout)?.[1]
    assert.ok(key !== undefined && hash !== undefined, r.stdout)
    assert.match(key, /^gh_[A-Za-z0-9_-]{40,}$/)
    assert.equal(hash, sha(key))
    assert.ok(!key.includes('.'), 'a generated key never looks like a JWT')
  })

  it('--json with --user', () => {
    const r = run(['apikey', 'generate', '--json', '--user', 'bob'])
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as { key: string; sha256: string; user?: string }
    assert.match(j.key, /^gh_/)
    assert.equal(j.sha256, sha(j.key))
    assert.equal(j.user, 'bob')
  })

  it('every run gives a new key', () => {
    const a = JSON.parse(run(['apikey', 'generate', '--json']).stdout) as { key: string }
    const b = JSON.parse(run(['apikey', 'generate', '--json']).stdout) as { key: string }
    assert.notEqual(a.key, b.key)
  })

  it('the generated sha256 form is accepted by config check and the key authenticates in explain', () => {
    const j = JSON.parse(run(['apikey', 'generate', '--json']).stdout) as { key: string; sha256: string }
    const env = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: j.sha256, AUTHENTICATION_APIKEY_USERS: 'gen-user' }
    assert.equal(run(['config', 'check'], env).code, 0)
    const e = run(['explain', '--method', 'GET', '--path', '/x', '--token', j.key, '--json'], env)
    assert.equal(e.code, 0, e.stderr)
    const out = JSON.parse(e.stdout) as { decision: string; principal?: { user: string } }
    assert.equal(out.decision, 'allow')
    assert.equal(out.principal?.user, 'gen-user')
  })
})

describe('gatehouse explain (Weaviate example)', () => {
  const decision = (stdout: string): string => /^decision:\s+(.*)$/m.exec(stdout)?.[1] ?? `(no decision line)\n${stdout}`

  it('jane may POST /v1/objects (allow)', () => {
    const r = run(['explain', '--method', 'POST', '--path', '/v1/objects', '--token', JANE_KEY], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(decision(r.stdout), /^allow/)
    assert.match(r.stdout, /user=jane@doe\.com/)
    assert.match(r.stdout, /authenticator:\s+apikey/)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('ian may not POST /v1/objects (deny 403)', () => {
    const r = run(['explain', '--method', 'POST', '--path', '/v1/objects', '--token', IAN_KEY], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(decision(r.stdout), /^deny — 403 ERR_FORBIDDEN/)
    assert.match(r.stdout, /user=ian-smith/)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('ian may POST /v1/graphql (a read), token read from --token-file', () => {
    const tokenFile = path.join(EMPTY, 'ian.token')
    writeFileSync(tokenFile, `${IAN_KEY}\n`, { mode: 0o600 })
    const r = run(['explain', '--method', 'POST', '--path', '/v1/graphql', '--token-file', tokenFile], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(decision(r.stdout), /^allow/)
    assert.match(r.stdout, /user=ian-smith/)
    assert.match(r.stdout, /is a read/)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('ian may not POST /v1/graphql/../objects: judged on the normalized path', () => {
    const r = run(['explain', '--method', 'POST', '--path', '/v1/graphql/../objects', '--token', IAN_KEY], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /normalized path:\s+\/v1\/objects/)
    assert.match(decision(r.stdout), /^deny — 403/)
  })

  it('a wrong key is 401 (--json)', () => {
    const r = run(['explain', '--method', 'POST', '--path', '/v1/graphql', '--token', 'not-a-valid-key-123', '--json'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as Record<string, unknown>
    assert.equal(j.decision, 'deny')
    assert.equal(j.status, 401)
    assert.equal(j.reason, 'ERR_INVALID_API_KEY')
    assert.equal(j.principal, undefined)
    assert.ok(!r.stdout.includes('not-a-valid-key-123'), 'the token is not echoed')
  })

  it('--json for an allowed request names the principal, rule and access', () => {
    const r = run(['explain', '--method', 'POST', '--path', '/v1/objects', '--token', JANE_KEY, '--json'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as { decision: string; access: string; authenticator: string; principal: { user: string; method: string }; normalizedPath: string }
    assert.equal(j.decision, 'allow')
    assert.equal(j.access, 'write')
    assert.equal(j.authenticator, 'apikey')
    assert.equal(j.principal.user, 'jane@doe.com')
    assert.equal(j.principal.method, 'apikey')
    assert.equal(j.normalizedPath, '/v1/objects')
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('--anonymous without anonymous access is 401 listing the methods', () => {
    const r = run(['explain', '--method', 'GET', '--path', '/v1/schema', '--anonymous'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(decision(r.stdout), /^deny — 401 ERR_UNAUTHENTICATED: anonymous access not enabled\. Please authenticate through one of the available methods: \[API-keys\]/)
  })

  it('an ambiguous path is 400', () => {
    const r = run(['explain', '--method', 'GET', '--path', '/v1/a%2Fb', '--token', JANE_KEY], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 0, r.stderr)
    assert.match(decision(r.stdout), /^deny — 400 ERR_BAD_PATH/)
  })

  it('without --method or --path: exit 2 with one line', () => {
    const r = run(['explain', '--path', '/v1/objects'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 2)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
  })

  it('--token and --anonymous together: exit 2', () => {
    const r = run(['explain', '--method', 'GET', '--path', '/', '--token', JANE_KEY, '--anonymous'], WEAVIATE_EXAMPLE)
    assert.equal(r.code, 2)
    assertNoSecrets(r.stdout + r.stderr)
  })

  it('with a bad configuration: exit 2', () => {
    const r = run(['explain', '--method', 'GET', '--path', '/'], { GATEHOUSE_PORT: 'abc' })
    assert.equal(r.code, 2)
    assert.match(r.stderr, /GATEHOUSE_PORT/)
  })
})

describe('usage errors and --help', () => {
  it('an unknown command exits 2 with one line on stderr', () => {
    const r = run(['frobnicate'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    const lines = r.stderr.split('\n').filter((l) => l !== '')
    assert.equal(lines.length, 1, r.stderr)
    assert.match(lines[0] as string, /frobnicate/)
  })
  it('an unknown subcommand exits 2 with one line', () => {
    const r = run(['config', 'frobnicate'])
    assert.equal(r.code, 2)
    assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr)
  })
  it('an unknown option exits 2 with one line', () => {
    const r = run(['config', 'check', '--frobnicate'])
    assert.equal(r.code, 2)
    assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr)
    assert.match(r.stderr, /frobnicate/)
  })
  it('gatehouse --help exits 0 and lists the commands', () => {
    const r = run(['--help'])
    assert.equal(r.code, 0)
    for (const c of ['serve', 'config check', 'config print', 'apikey generate', 'explain']) assert.ok(r.stdout.includes(c), c)
  })
  for (const cmd of [['serve'], ['config', 'check'], ['config', 'print'], ['apikey', 'generate'], ['explain']]) {
    it(`gatehouse ${cmd.join(' ')} --help exits 0 with its usage`, () => {
      const r = run([...cmd, '--help'], { GATEHOUSE_PORT: 'abc' })
      assert.equal(r.code, 0, r.stderr)
      assert.ok(r.stdout.includes(`gatehouse ${cmd.join(' ')}`), r.stdout)
      assert.equal(r.stderr, '')
    })
  }
})

describe('gatehouse serve with a bad configuration', () => {
  it('exits 2 before listening (env)', () => {
    const r = run(['serve'], { GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_STATE_DIR: path.join(EMPTY, 'state'), AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_USERS: 'u' })
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assert.ok(!r.stdout.includes('gatehouse is ready'), r.stdout)
    assert.match(r.stderr, /authentication\.apikey\.allowedKeys.*need at least one valid allowed key/)
  })
  it('exits 2 before listening (YAML)', () => {
    const r = run(['serve', '--config', path.join(FIXTURES, 'bad-apikey.yaml')], { GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_STATE_DIR: path.join(EMPTY, 'state') })
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assert.ok(!r.stdout.includes('gatehouse is ready'), r.stdout)
    assert.match(r.stderr, /bad-apikey\.yaml:7:/)
    assertNoSecrets(r.stdout + r.stderr)
  })
})
