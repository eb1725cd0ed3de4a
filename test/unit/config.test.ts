/**
 * Configuration loading (SPEC §3, W1–W5, W13, W21): Weaviate's environment parsing, the
 * anonymous rule, every validation case, YAML locations, unknown keys, strict GATEHOUSE_
 * variables and sources. Every call passes an explicit `env` (never process.env) and a `cwd`
 * with no proxy.yaml in it.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { anonymousEnabled } from '../../src/compose.ts'
import { loadConfig, type LoadResult } from '../../src/config/load.ts'
import type { Config, Problem } from '../../src/config/types.ts'

const DIR = mkdtempSync(path.join(tmpdir(), 'gh-config-test-'))
after(() => rmSync(DIR, { recursive: true, force: true }))

let fileNo = 0
/** Write a YAML file into the temp dir; returns its absolute path. */
function yamlFile(text: string): string {
  const f = path.join(DIR, `c${++fileNo}.yaml`)
  writeFileSync(f, text)
  return f
}

function load(env: Record<string, string>, configPath?: string): LoadResult {
  return loadConfig({ configPath, env, cwd: DIR })
}

function ok(env: Record<string, string>, configPath?: string): Config {
  const r = load(env, configPath)
  assert.deepEqual(r.problems.map((p) => `${p.path}: ${p.message}`), [], 'expected no problems')
  assert.ok(r.config !== undefined)
  return r.config
}

/** Find a problem whose path equals (or starts with, for `prefix`) and whose message matches. */
function findProblem(problems: readonly Problem[], p: string | RegExp, message: RegExp): Problem {
  const hit = problems.find((x) => (typeof p === 'string' ? x.path === p : p.test(x.path)) && message.test(x.message))
  assert.ok(hit !== undefined, `no problem at ${String(p)} matching ${String(message)}; got:\n${problems.map((x) => `  ${x.path}: ${x.message}`).join('\n')}`)
  return hit
}

function bad(env: Record<string, string>, p: string | RegExp, message: RegExp, configPath?: string): Problem {
  const r = load(env, configPath)
  assert.equal(r.config, undefined, 'a config with problems yields no config')
  return findProblem(r.problems, p, message)
}

const APIKEY = { AUTHENTICATION_APIKEY_ENABLED: 'true' }
const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`

describe('defaults', () => {
  it('an empty environment and no file is a valid config with the documented defaults', () => {
    const c = ok({})
    assert.equal(c.configFile, undefined)
    assert.equal(c.listen.port, 8443)
    assert.equal(c.admin.port, 14000)
    assert.equal(c.tls.enabled, true)
    assert.equal(c.upstream.url, 'echo:')
    assert.equal(c.upstream.profile, 'generic')
    assert.equal(c.authentication.apikey.enabled, false)
    assert.equal(c.authentication.oidc.enabled, false)
    assert.equal(c.authorization.adminlist.enabled, false)
  })
})

describe('W1: Weaviate boolean env vars', () => {
  for (const v of ['true', 'TRUE', 'True', 'on', 'ON', 'enabled', 'Enabled', '1']) {
    it(`${JSON.stringify(v)} is true`, () => {
      assert.equal(ok({ AUTHORIZATION_ADMINLIST_ENABLED: v }).authorization.adminlist.enabled, true)
    })
  }
  for (const v of ['yes', 'YES', 'TRUE ', ' true', 'true\n', '', 'false', '0', 'off', 'y', 't', '2', 'enable', 'truee']) {
    it(`${JSON.stringify(v)} is false (and not a problem)`, () => {
      assert.equal(ok({ AUTHORIZATION_ADMINLIST_ENABLED: v }).authorization.adminlist.enabled, false)
    })
  }
  it('a Weaviate false overrides a YAML true', () => {
    const f = yamlFile('authorization:\n  adminlist:\n    enabled: true\n')
    assert.equal(ok({ AUTHORIZATION_ADMINLIST_ENABLED: 'yes' }, f).authorization.adminlist.enabled, false)
    assert.equal(ok({}, f).authorization.adminlist.enabled, true)
  })
  it('applies to every Weaviate flag', () => {
    const c = ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k', AUTHENTICATION_APIKEY_USERS: 'u', AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'On' })
    assert.equal(c.authentication.apikey.enabled, true)
    assert.equal(c.authentication.anonymous.enabled, true)
    assert.equal(ok({ AUTHENTICATION_APIKEY_ENABLED: 'yes', AUTHENTICATION_APIKEY_ALLOWED_KEYS: '' }).authentication.apikey.enabled, false)
    assert.equal(ok({ AUTHENTICATION_OIDC_ENABLED: 'TRUE ' }).authentication.oidc.enabled, false)
  })
})

describe('W2: Weaviate list env vars', () => {
  it('splits on "," without trimming: "a, b" gives "a" and " b"', () => {
    const c = ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'key-a, key-b', AUTHENTICATION_APIKEY_USERS: 'jane, ian' })
    assert.deepEqual(c.authentication.apikey.allowedKeys, ['key-a', ' key-b'])
    assert.deepEqual(c.authentication.apikey.users, ['jane', ' ian'])
  })
  it('admin lists are split untrimmed too', () => {
    const c = ok({ AUTHORIZATION_ADMINLIST_ENABLED: 'true', AUTHORIZATION_ADMINLIST_USERS: 'a, b', AUTHORIZATION_ADMINLIST_READONLY_USERS: 'c ,d', AUTHORIZATION_ADMINLIST_GROUPS: 'g1,g2', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: ' r' })
    assert.deepEqual(c.authorization.adminlist.users, ['a', ' b'])
    assert.deepEqual(c.authorization.adminlist.readonlyUsers, ['c ', 'd'])
    assert.deepEqual(c.authorization.adminlist.groups, ['g1', 'g2'])
    assert.deepEqual(c.authorization.adminlist.readonlyGroups, [' r'])
  })
  it('OIDC scopes are split untrimmed', () => {
    const c = ok({ AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub', AUTHENTICATION_OIDC_CLIENT_ID: 'wv', AUTHENTICATION_OIDC_SCOPES: 'openid, email' })
    assert.deepEqual(c.authentication.oidc.scopes, ['openid', ' email'])
  })
  it('a set-but-empty list gives [""] (then reported as an empty key/user)', () => {
    const r = load({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: '', AUTHENTICATION_APIKEY_USERS: '' })
    assert.deepEqual(r.values.get('authentication.apikey.allowedKeys'), [''])
    assert.deepEqual(r.values.get('authentication.apikey.users'), [''])
    findProblem(r.problems, /^authentication\.apikey\.allowedKeys/, /^keys cannot have length 0/)
    findProblem(r.problems, /^authentication\.apikey\.users/, /^users cannot have length 0/)
  })
  it('lists are read only when their flag is effectively true', () => {
    const c = ok({ AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1', AUTHENTICATION_APIKEY_USERS: 'u1', AUTHORIZATION_ADMINLIST_USERS: 'a', AUTHENTICATION_OIDC_ISSUER: 'https://x' })
    assert.deepEqual(c.authentication.apikey.allowedKeys, [])
    assert.deepEqual(c.authentication.apikey.users, [])
    assert.deepEqual(c.authorization.adminlist.users, [])
    assert.equal(c.authentication.oidc.issuer, '')
    const r = load({ AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1' })
    assert.deepEqual(r.sources.get('authentication.apikey.allowedKeys'), { kind: 'default' })
  })
  it('a Weaviate-false flag ("yes") means the lists are not read', () => {
    const c = ok({ AUTHENTICATION_APIKEY_ENABLED: 'yes', AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1', AUTHENTICATION_APIKEY_USERS: 'u1' })
    assert.deepEqual(c.authentication.apikey.allowedKeys, [])
  })
  it('a flag enabled in the YAML makes the env lists readable', () => {
    const f = yamlFile('authentication:\n  apikey:\n    enabled: true\n')
    const c = ok({ AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2', AUTHENTICATION_APIKEY_USERS: 'u' }, f)
    assert.deepEqual(c.authentication.apikey.allowedKeys, ['k1', 'k2'])
  })
  it('a flag enabled in the YAML but disabled by env: the env lists are not read', () => {
    const f = yamlFile('authorization:\n  adminlist:\n    enabled: true\n    users: [yaml-admin]\n')
    const c = ok({ AUTHORIZATION_ADMINLIST_ENABLED: 'false', AUTHORIZATION_ADMINLIST_USERS: 'env-admin' }, f)
    assert.equal(c.authorization.adminlist.enabled, false)
    assert.deepEqual(c.authorization.adminlist.users, ['yaml-admin'])
  })
  it('an env key list replaces the YAML keys and clears allowedKeysFile', () => {
    const f = yamlFile('authentication:\n  apikey:\n    enabled: true\n    allowedKeys: [yaml-key]\n    allowedKeysFile: does-not-exist.txt\n    users: [u]\n')
    const r = load({ AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'env-key' }, f)
    assert.deepEqual(r.problems, [], 'the missing keys file is not a problem once the env list replaces it')
    assert.deepEqual(r.config?.authentication.apikey.allowedKeys, ['env-key'])
    assert.equal(r.config?.authentication.apikey.allowedKeysFile, undefined)
    assert.equal(r.sources.get('authentication.apikey.allowedKeysFile')?.kind, 'derived')
    // without the env list the file is read and its absence is a problem
    findProblem(load({}, f).problems, 'authentication.apikey.allowedKeysFile', /not found/)
  })
  it('an allowedKeysFile is read: one key per line, comments and blanks ignored', () => {
    const keys = path.join(DIR, 'keys.txt')
    writeFileSync(keys, '# comment\nfile-key-1\n\n  file-key-2  \n')
    const f = yamlFile(`authentication:\n  apikey:\n    enabled: true\n    allowedKeysFile: ${keys}\n    users: [a, b]\n`)
    ok({}, f)
    const f3 = yamlFile(`authentication:\n  apikey:\n    enabled: true\n    allowedKeysFile: ${keys}\n    users: [a, b, c]\n`)
    findProblem(load({}, f3).problems, 'authentication.apikey.users', /^length of users and keys must match/)
  })
})

describe('W3: the anonymous rule (anonymousEnabled)', () => {
  const withKeys = { ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k', AUTHENTICATION_APIKEY_USERS: 'u' }
  const withOidc = { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub', AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'true' }
  it('no method enabled: anonymous on', () => assert.equal(anonymousEnabled(ok({})), true))
  it('no method enabled, anonymous explicitly false: still on (with a warning)', () => {
    const r = load({ AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'false' })
    assert.ok(r.config !== undefined)
    assert.equal(anonymousEnabled(r.config), true)
    assert.ok(r.warnings.some((w) => /anonymous/.test(w)))
    const f = yamlFile('authentication:\n  anonymous:\n    enabled: false\n')
    assert.equal(anonymousEnabled(ok({}, f)), true)
  })
  it('API keys enabled: anonymous off unless explicitly enabled', () => {
    assert.equal(anonymousEnabled(ok(withKeys)), false)
    assert.equal(anonymousEnabled(ok({ ...withKeys, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true' })), true)
    assert.equal(anonymousEnabled(ok({ ...withKeys, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'enabled' })), true)
    assert.equal(anonymousEnabled(ok({ ...withKeys, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'yes' })), false)
    assert.equal(anonymousEnabled(ok({ ...withKeys, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'false' })), false)
  })
  it('OIDC enabled: anonymous off unless explicitly enabled', () => {
    assert.equal(anonymousEnabled(ok(withOidc)), false)
    assert.equal(anonymousEnabled(ok({ ...withOidc, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: '1' })), true)
  })
  it('anonymous enabled in the YAML with API keys on', () => {
    const f = yamlFile('authentication:\n  anonymous:\n    enabled: true\n')
    assert.equal(anonymousEnabled(ok(withKeys, f)), true)
  })
})

describe('SPEC §3 / W5: API key validation (each problem names its key path)', () => {
  it('API keys on with zero keys (variable unset)', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_USERS: 'u' }, 'authentication.apikey.allowedKeys', /^need at least one valid allowed key/)
  })
  it('an empty key (doubled comma)', () => {
    const p = bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,,k2', AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys cannot have length 0/)
    assert.deepEqual(p.source, { kind: 'env', name: 'AUTHENTICATION_APIKEY_ALLOWED_KEYS' })
  })
  it('an empty key (trailing comma)', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,', AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys cannot have length 0/)
  })
  it('duplicate keys', () => {
    const p = bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'dup-key,other,dup-key', AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys must be unique/)
    assert.ok(!String(p.value).includes('dup-key'), 'the duplicate key itself is not shown')
  })
  it('a plaintext key and its sha256 form are duplicates', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: `dup-key,${sha('dup-key')}`, AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys must be unique/)
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${sha('dup-key')},dup-key`, AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys must be unique/)
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${sha('dup-key')},${sha('dup-key').toUpperCase().replace('SHA256', 'sha256')}`, AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /^keys must be unique/)
  })
  it('keys differing only in whitespace are different keys (untrimmed)', () => {
    ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1, k1', AUTHENTICATION_APIKEY_USERS: 'u' })
  })
  it('a malformed sha256: key', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'sha256:abc', AUTHENTICATION_APIKEY_USERS: 'u' }, /^authentication\.apikey\.allowedKeys/, /64 hex/)
  })
  it('zero users', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1' }, 'authentication.apikey.users', /^need at least one user/)
  })
  it('an empty user', () => {
    const p = bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2', AUTHENTICATION_APIKEY_USERS: 'a,' }, /^authentication\.apikey\.users/, /^users cannot have length 0/)
    assert.deepEqual(p.source, { kind: 'env', name: 'AUTHENTICATION_APIKEY_USERS' })
  })
  it('2 users for 3 keys', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2,k3', AUTHENTICATION_APIKEY_USERS: 'a,b' }, 'authentication.apikey.users', /^length of users and keys must match, alternatively provide single user for all keys/)
  })
  it('4 users for 3 keys', () => {
    bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2,k3', AUTHENTICATION_APIKEY_USERS: 'a,b,c,d' }, 'authentication.apikey.users', /^length of users and keys must match/)
  })
  it('one user for 3 keys is valid, and so is one user per key; duplicate users are allowed', () => {
    ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2,k3', AUTHENTICATION_APIKEY_USERS: 'only' })
    ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2,k3', AUTHENTICATION_APIKEY_USERS: 'a,b,c' })
    ok({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1,k2', AUTHENTICATION_APIKEY_USERS: 'same,same' })
  })
  it('API keys off: no key checks at all', () => {
    ok({ AUTHENTICATION_APIKEY_ENABLED: 'false' })
  })
  it('YAML: problems point at the file and line of the offending list entry', () => {
    const f = yamlFile(['authentication:', '  apikey:', '    enabled: true', '    allowedKeys:', '      - k1', '      - ""', '      - k1', '    users: [a, b]', ''].join('\n'))
    const r = load({}, f)
    const empty = findProblem(r.problems, 'authentication.apikey.allowedKeys[1]', /^keys cannot have length 0/)
    assert.deepEqual(empty.source, { kind: 'file', file: f, line: 6 })
    const dup = findProblem(r.problems, 'authentication.apikey.allowedKeys[2]', /^keys must be unique/)
    assert.deepEqual(dup.source, { kind: 'file', file: f, line: 7 })
    const users = findProblem(r.problems, 'authentication.apikey.users', /^length of users and keys must match/)
    assert.deepEqual(users.source, { kind: 'file', file: f, line: 8 })
  })
})

describe('SPEC §3 / W13: OIDC validation', () => {
  const base = { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com/realms/x', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email', AUTHENTICATION_OIDC_CLIENT_ID: 'weaviate' }
  it('a complete OIDC config is valid', () => {
    ok(base)
  })
  it('without issuer', () => {
    const { AUTHENTICATION_OIDC_ISSUER: _, ...env } = base
    bad(env, 'authentication.oidc.issuer', /^missing required field 'issuer'/)
  })
  it('with an empty issuer', () => {
    bad({ ...base, AUTHENTICATION_OIDC_ISSUER: '' }, 'authentication.oidc.issuer', /^missing required field 'issuer'/)
  })
  it('without username claim', () => {
    const { AUTHENTICATION_OIDC_USERNAME_CLAIM: _, ...env } = base
    bad(env, 'authentication.oidc.usernameClaim', /^missing required field 'username_claim'/)
  })
  it('without client id', () => {
    const { AUTHENTICATION_OIDC_CLIENT_ID: _, ...env } = base
    const p = bad(env, 'authentication.oidc.clientId', /^missing required field 'client_id': either set a client_id or explicitly disable the check with 'skip_client_id_check: true'/)
    assert.match(p.remedy, /SKIP_CLIENT_ID_CHECK|skipClientIdCheck/)
  })
  it('without client id but with skipClientIdCheck: valid', () => {
    const { AUTHENTICATION_OIDC_CLIENT_ID: _, ...env } = base
    ok({ ...env, AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'true' })
    const f = yamlFile('authentication:\n  oidc:\n    enabled: true\n    issuer: https://idp.example.com\n    usernameClaim: sub\n    skipClientIdCheck: true\n')
    ok({}, f)
  })
  it('skipClientIdCheck "yes" is not true (W1): still missing client id', () => {
    const { AUTHENTICATION_OIDC_CLIENT_ID: _, ...env } = base
    bad({ ...env, AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'yes' }, 'authentication.oidc.clientId', /^missing required field 'client_id'/)
  })
  it('OIDC on with nothing else: all three problems at once', () => {
    const r = load({ AUTHENTICATION_OIDC_ENABLED: 'true' })
    findProblem(r.problems, 'authentication.oidc.issuer', /issuer/)
    findProblem(r.problems, 'authentication.oidc.usernameClaim', /username_claim/)
    findProblem(r.problems, 'authentication.oidc.clientId', /client_id/)
  })
  it('OIDC variables are not read when OIDC is off', () => {
    const c = ok({ AUTHENTICATION_OIDC_ISSUER: 'https://x', AUTHENTICATION_OIDC_CLIENT_ID: 'c', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub' })
    assert.equal(c.authentication.oidc.clientId, '')
    assert.equal(c.authentication.oidc.usernameClaim, '')
  })
  it('symmetric or none algorithms are refused', () => {
    const f = yamlFile('authentication:\n  oidc:\n    algorithms: [RS256, HS256, none]\n')
    const r = load(base, f)
    findProblem(r.problems, 'authentication.oidc.algorithms[1]', /asymmetric/)
    findProblem(r.problems, 'authentication.oidc.algorithms[2]', /asymmetric/)
  })
})

describe('SPEC §3 / W21: admin list validation', () => {
  const al = { AUTHORIZATION_ADMINLIST_ENABLED: 'true' }
  it('a subject on both the admin and the read-only list', () => {
    const p = bad({ ...al, AUTHORIZATION_ADMINLIST_USERS: 'jane,ian', AUTHORIZATION_ADMINLIST_READONLY_USERS: 'ian' }, /^authorization\.adminlist\.(readonlyUsers|users)/, /^admin list: subject 'ian' is present on both admin and read-only list$/)
    assert.equal(p.source?.kind, 'env')
  })
  it('a group on both lists', () => {
    bad({ ...al, AUTHORIZATION_ADMINLIST_GROUPS: 'ops', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'viewers,ops' }, /^authorization\.adminlist\.(readonlyGroups|groups)/, /^admin list: subject 'ops' is present on both admin and read-only list$/)
  })
  it('a user name equal to a group name is not an overlap', () => {
    ok({ ...al, AUTHORIZATION_ADMINLIST_USERS: 'ops', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'ops' })
  })
  it('matching is exact: "ian" and " ian" do not overlap', () => {
    ok({ ...al, AUTHORIZATION_ADMINLIST_USERS: 'jane, ian', AUTHORIZATION_ADMINLIST_READONLY_USERS: 'ian' })
  })
  it('the overlap is not checked when the admin list is off (its lists are not even read)', () => {
    const f = yamlFile('authorization:\n  adminlist:\n    enabled: false\n    users: [x]\n    readonlyUsers: [x]\n')
    ok({}, f)
  })
  it('YAML: the problem carries the file and line', () => {
    const f = yamlFile(['authorization:', '  adminlist:', '    enabled: true', '    users: [jane]', '    readonlyUsers: [jane]', ''].join('\n'))
    const p = findProblem(load({}, f).problems, /^authorization\.adminlist\.(readonlyUsers|users)/, /subject 'jane' is present on both/)
    assert.equal(p.source?.kind, 'file')
    assert.ok(p.source?.kind === 'file' && (p.source.line === 4 || p.source.line === 5), `line ${JSON.stringify(p.source)}`)
  })
})

describe('SPEC §3: all problems are reported at once', () => {
  it('a config with 4 different semantic mistakes yields at least 4 problems', () => {
    const r = load({
      AUTHENTICATION_APIKEY_ENABLED: 'true',
      AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'a,,a',
      AUTHENTICATION_APIKEY_USERS: 'u1,u2',
      AUTHENTICATION_OIDC_ENABLED: 'true',
      AUTHORIZATION_ADMINLIST_ENABLED: 'true',
      AUTHORIZATION_ADMINLIST_USERS: 'x',
      AUTHORIZATION_ADMINLIST_READONLY_USERS: 'x',
    })
    assert.equal(r.config, undefined)
    assert.ok(r.problems.length >= 4, `got ${r.problems.length}`)
    findProblem(r.problems, /^authentication\.apikey\.allowedKeys/, /length 0/)
    findProblem(r.problems, /^authentication\.apikey\.allowedKeys/, /unique/)
    findProblem(r.problems, 'authentication.apikey.users', /must match/)
    findProblem(r.problems, 'authentication.oidc.issuer', /issuer/)
    findProblem(r.problems, /^authorization\.adminlist/, /both admin and read-only/)
  })
  it('type mistakes and semantic mistakes are reported together', () => {
    // SPEC §3: "All problems are reported at once". A bad GATEHOUSE_PORT must not hide the
    // missing API keys (and vice versa): the user would fix one, rerun, and meet the next.
    const r = load({ GATEHOUSE_PORT: 'abc', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_USERS: 'u' })
    findProblem(r.problems, 'listen.port', /integer/)
    findProblem(r.problems, 'authentication.apikey.allowedKeys', /^need at least one valid allowed key/)
  })
  it('YAML: an unknown key, a wrong type and a semantic mistake in one file are all reported', () => {
    const f = yamlFile(['upstream:', '  profle: weaviate', 'listen:', '  port: high', 'authorization:', '  adminlist:', '    enabled: true', '    users: [x]', '    readonlyUsers: [x]', ''].join('\n'))
    const r = load({}, f)
    findProblem(r.problems, 'upstream.profle', /unknown key/)
    findProblem(r.problems, 'listen.port', /integer/)
    findProblem(r.problems, /^authorization\.adminlist/, /both admin and read-only/)
  })
})

describe('YAML problems carry file and line', () => {
  it('an unknown key (typo) with a "did you mean" remedy', () => {
    const f = yamlFile(['listen:', '  port: 8443', 'upstream:', '  url: "echo:"', '  profle: weaviate', ''].join('\n'))
    const p = bad({}, 'upstream.profle', /unknown key/, f)
    assert.deepEqual(p.source, { kind: 'file', file: f, line: 5 })
    assert.match(p.remedy, /did you mean upstream\.profile\?/)
  })
  it('an unknown top-level key with a suggestion, and one without', () => {
    const f = yamlFile(['lisen:', '  port: 1', 'zzzzzzzzzzzz: 1', ''].join('\n'))
    const r = load({}, f)
    const a = findProblem(r.problems, 'lisen', /unknown key/)
    assert.match(a.remedy, /did you mean listen\?/)
    assert.deepEqual(a.source, { kind: 'file', file: f, line: 1 })
    const b = findProblem(r.problems, 'zzzzzzzzzzzz', /unknown key/)
    assert.doesNotMatch(b.remedy, /did you mean/)
    assert.deepEqual(b.source, { kind: 'file', file: f, line: 3 })
  })
  it('a nested unknown key', () => {
    const f = yamlFile(['authentication:', '  apikey:', '    enabled: true', '    allowedkeys: [k]', ''].join('\n'))
    const p = findProblem(load({}, f).problems, 'authentication.apikey.allowedkeys', /unknown key/)
    assert.match(p.remedy, /authentication\.apikey\.allowedKeys/)
    assert.deepEqual(p.source, { kind: 'file', file: f, line: 4 })
  })
  it('wrong types: string for int, "yes" for bool, scalar for list, scalar for group, bad enum', () => {
    const f = yamlFile(
      [
        'listen:',
        '  port: "abc"', // 2
        'authentication:',
        '  apikey:',
        '    enabled: yes', // 5
        '    users: jane', // 6
        'tls: on', // 7
        'upstream:',
        '  profile: mongo', // 9
        'log:',
        '  level: loud', // 11
        ''
      ].join('\n'),
    )
    const r = load({}, f)
    const line = (p: Problem): number | undefined => (p.source?.kind === 'file' ? p.source.line : undefined)
    assert.equal(line(findProblem(r.problems, 'listen.port', /integer/)), 2)
    assert.equal(line(findProblem(r.problems, 'authentication.apikey.enabled', /true or false/)), 5)
    assert.equal(line(findProblem(r.problems, 'authentication.apikey.users', /list/)), 6)
    assert.equal(line(findProblem(r.problems, 'tls', /mapping/)), 7)
    assert.equal(line(findProblem(r.problems, 'upstream.profile', /generic, weaviate, qdrant/)), 9)
    assert.equal(line(findProblem(r.problems, 'log.level', /one of/)), 11)
  })
  it('an out-of-range port', () => {
    const f = yamlFile('listen:\n  port: 70000\n')
    findProblem(load({}, f).problems, 'listen.port', /between 0 and 65535/)
  })
  it('a YAML syntax error has source kind file and the right line', () => {
    const f = yamlFile(['listen:', '  port: 8443', '  address: a', ' address: b', 'log:', '  level: info', ''].join('\n'))
    const r = load({}, f)
    assert.ok(r.problems.length >= 1)
    const p = r.problems[0] as Problem
    assert.equal(p.source?.kind, 'file')
    assert.deepEqual(p.source, { kind: 'file', file: f, line: 4 })
    assert.match(p.message, /YAML/)
  })
  it('a duplicate key is a YAML error at the second occurrence', () => {
    const f = yamlFile(['listen:', '  port: 8443', 'listen:', '  port: 1', ''].join('\n'))
    const p = findProblem(load({}, f).problems, /.*/, /unique|duplicate/i)
    assert.deepEqual(p.source, { kind: 'file', file: f, line: 3 })
  })
  it('a file that is not a mapping', () => {
    const f = yamlFile('- a\n- b\n')
    assert.ok(load({}, f).problems.length >= 1)
  })
  it('an empty file is fine (defaults)', () => {
    ok({}, yamlFile(''))
  })
  it('a missing --config file is a problem', () => {
    const r = load({}, path.join(DIR, 'nope.yaml'))
    assert.ok(r.problems.some((p) => /does not exist/.test(p.message)))
  })
})

describe('strict GATEHOUSE_ variables', () => {
  it('GATEHOUSE_PORT=abc is a problem naming GATEHOUSE_PORT', () => {
    const p = bad({ GATEHOUSE_PORT: 'abc' }, 'listen.port', /integer/)
    assert.deepEqual(p.source, { kind: 'env', name: 'GATEHOUSE_PORT' })
    assert.match(p.remedy, /GATEHOUSE_PORT/)
    assert.equal(p.value, '"abc"')
  })
  for (const v of ['-1', '70000', '1.5', '8443x', '', '0x10']) {
    it(`GATEHOUSE_PORT=${JSON.stringify(v)} is a problem`, () => {
      bad({ GATEHOUSE_PORT: v }, 'listen.port', /integer/)
    })
  }
  it('GATEHOUSE_PORT=9000 and GATEHOUSE_ADMIN_PORT=0 are read', () => {
    const c = ok({ GATEHOUSE_PORT: '9000', GATEHOUSE_ADMIN_PORT: '0' })
    assert.equal(c.listen.port, 9000)
    assert.equal(c.admin.port, 0)
  })
  it('GATEHOUSE_ADMIN_PORT=x is a problem naming it', () => {
    const p = bad({ GATEHOUSE_ADMIN_PORT: 'x' }, 'admin.port', /integer/)
    assert.deepEqual(p.source, { kind: 'env', name: 'GATEHOUSE_ADMIN_PORT' })
  })
  it('GATEHOUSE_TLS_ENABLED=maybe is a problem naming it', () => {
    const p = bad({ GATEHOUSE_TLS_ENABLED: 'maybe' }, 'tls.enabled', /boolean/)
    assert.deepEqual(p.source, { kind: 'env', name: 'GATEHOUSE_TLS_ENABLED' })
    assert.match(p.remedy, /GATEHOUSE_TLS_ENABLED/)
  })
  it('GATEHOUSE_TLS_ENABLED accepts true/false spellings', () => {
    assert.equal(ok({ GATEHOUSE_TLS_ENABLED: 'false' }).tls.enabled, false)
    assert.equal(ok({ GATEHOUSE_TLS_ENABLED: '0' }).tls.enabled, false)
    assert.equal(ok({ GATEHOUSE_TLS_ENABLED: 'true' }).tls.enabled, true)
  })
  it('tls.enabled false is allowed with a warning', () => {
    const r = load({ GATEHOUSE_TLS_ENABLED: 'false' })
    assert.ok(r.warnings.some((w) => /tls/i.test(w)))
  })
  it('GATEHOUSE_UPSTREAM_PROFILE must be a known profile', () => {
    const p = bad({ GATEHOUSE_UPSTREAM_PROFILE: 'mongo' }, 'upstream.profile', /generic, weaviate, qdrant/)
    assert.deepEqual(p.source, { kind: 'env', name: 'GATEHOUSE_UPSTREAM_PROFILE' })
    assert.equal(ok({ GATEHOUSE_UPSTREAM_PROFILE: 'qdrant' }).upstream.profile, 'qdrant')
  })
  it('GATEHOUSE_LOG_LEVEL must be a level', () => {
    bad({ GATEHOUSE_LOG_LEVEL: 'verbose' }, 'log.level', /one of/)
  })
  it('GATEHOUSE_UPSTREAM_URL must be an http(s) URL or echo:', () => {
    bad({ GATEHOUSE_UPSTREAM_URL: 'ftp://x' }, 'upstream.url', /http/)
    bad({ GATEHOUSE_UPSTREAM_URL: 'http://user:pw@x' }, 'upstream.url', /credentials/)
    assert.equal(ok({ GATEHOUSE_UPSTREAM_URL: 'http://weaviate:8080' }).upstream.url, 'http://weaviate:8080')
  })
  it('env over YAML', () => {
    const f = yamlFile('listen:\n  port: 1234\n')
    assert.equal(ok({}, f).listen.port, 1234)
    assert.equal(ok({ GATEHOUSE_PORT: '4321' }, f).listen.port, 4321)
  })
})

describe('TLS validation', () => {
  it('tls.certFile without keyFile', () => {
    const cert = path.join(DIR, 'cert.pem')
    writeFileSync(cert, 'x')
    const r = load({ GATEHOUSE_TLS_CERT_FILE: cert })
    const p = findProblem(r.problems, /^tls\.(certFile|keyFile)$/, /certFile and tls\.keyFile must be set together/)
    assert.ok(p.remedy.length > 0)
  })
  it('tls.keyFile without certFile', () => {
    findProblem(load({ GATEHOUSE_TLS_KEY_FILE: path.join(DIR, 'key.pem') }).problems, /^tls\.(certFile|keyFile)$/, /set together/)
  })
  it('an unreadable certificate pair', () => {
    findProblem(load({ GATEHOUSE_TLS_CERT_FILE: path.join(DIR, 'none.crt'), GATEHOUSE_TLS_KEY_FILE: path.join(DIR, 'none.key') }).problems, 'tls.certFile', /cannot read/)
  })
  it('a cipher list with a CBC suite is rejected', () => {
    const f = yamlFile('tls:\n  ciphers: ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256\n')
    const p = findProblem(load({}, f).problems, 'tls.ciphers', /ECDHE-RSA-AES128-SHA256/)
    assert.deepEqual(p.source, { kind: 'file', file: f, line: 2 })
  })
  for (const c of ['AES128-SHA', 'ECDHE-RSA-AES256-SHA', 'DES-CBC3-SHA', 'RC4-SHA', 'AES128-GCM-SHA256', 'ALL', 'DEFAULT']) {
    it(`cipher ${c} is rejected`, () => {
      findProblem(load({}, yamlFile(`tls:\n  ciphers: "${c}"\n`)).problems, 'tls.ciphers', /AEAD/)
    })
  }
  it('an AEAD ECDHE list (with TLS 1.3 suites) is accepted', () => {
    ok({}, yamlFile('tls:\n  ciphers: TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305\n'))
  })
  it('minVersion is TLSv1.2 or TLSv1.3 only', () => {
    findProblem(load({}, yamlFile('tls:\n  minVersion: TLSv1.1\n')).problems, 'tls.minVersion', /one of/)
    assert.equal(ok({}, yamlFile('tls:\n  minVersion: TLSv1.3\n')).tls.minVersion, 'TLSv1.3')
  })
})

describe('sources', () => {
  it('records default, file line and env NAME', () => {
    const f = yamlFile(['listen:', '  address: 127.0.0.1', '  port: 9443', 'authentication:', '  apikey:', '    enabled: true', '    users: [yaml-user]', ''].join('\n'))
    const r = load({ AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'k1', GATEHOUSE_PORT: '9999' }, f)
    assert.deepEqual(r.problems, [])
    assert.deepEqual(r.sources.get('admin.port'), { kind: 'default' })
    assert.deepEqual(r.sources.get('listen.address'), { kind: 'file', file: f, line: 2 })
    assert.deepEqual(r.sources.get('authentication.apikey.enabled'), { kind: 'file', file: f, line: 6 })
    assert.deepEqual(r.sources.get('authentication.apikey.users'), { kind: 'file', file: f, line: 7 })
    assert.deepEqual(r.sources.get('listen.port'), { kind: 'env', name: 'GATEHOUSE_PORT' })
    assert.deepEqual(r.sources.get('authentication.apikey.allowedKeys'), { kind: 'env', name: 'AUTHENTICATION_APIKEY_ALLOWED_KEYS' })
    assert.equal(r.values.get('listen.port'), 9999)
    assert.equal(r.config?.configFile, f)
  })
  it('env problems carry the variable name', () => {
    const p = bad({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'a,b,c', AUTHENTICATION_APIKEY_USERS: 'x,y' }, 'authentication.apikey.users', /must match/)
    assert.deepEqual(p.source, { kind: 'env', name: 'AUTHENTICATION_APIKEY_USERS' })
  })
  it('relative paths in the YAML resolve against the YAML file’s directory', () => {
    const f = yamlFile('stateDir: ./my-state\n')
    assert.equal(ok({}, f).stateDir, path.join(DIR, 'my-state'))
  })
  it('GATEHOUSE_CONFIG names the file when no configPath is given', () => {
    const f = yamlFile('listen:\n  port: 7777\n')
    const r = loadConfig({ env: { GATEHOUSE_CONFIG: f }, cwd: DIR })
    assert.equal(r.config?.listen.port, 7777)
  })
  it('secret values are never copied into problems', () => {
    const r = load({ ...APIKEY, AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'very-secret-key-1,very-secret-key-1', AUTHENTICATION_APIKEY_USERS: 'u' })
    assert.ok(r.problems.length > 0)
    for (const p of r.problems) assert.ok(!JSON.stringify(p).includes('very-secret-key-1'), JSON.stringify(p))
  })
})

describe('console and browser sign-in keys (SPEC §10)', () => {
  const OIDC = { AUTHENTICATION_OIDC_ENABLED: 'true', AUTHENTICATION_OIDC_ISSUER: 'https://idp.example.com', AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub', AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse' }
  it('defaults: console on with a 30 min idle timeout and a 12 h lifetime; browser sign-in off', () => {
    const c = ok({})
    assert.deepEqual(c.console, { enabled: true, idleTimeout: 1_800_000, absoluteLifetime: 43_200_000 })
    assert.equal(c.authentication.oidc.browserLogin.enabled, false)
    assert.equal(c.authentication.oidc.browserLogin.cookieName, '__Host-gatehouse-session')
  })
  it('GATEHOUSE_CONSOLE_IDLE_TIMEOUT sets the idle timeout; a lifetime shorter than it is a problem', () => {
    assert.equal(ok({ GATEHOUSE_CONSOLE_IDLE_TIMEOUT: '3s' }).console.idleTimeout, 3000)
    bad({ GATEHOUSE_CONSOLE_IDLE_TIMEOUT: '13h' }, 'console.absoluteLifetime', /shorter than console.idleTimeout/)
    assert.throws(() => ok({ GATEHOUSE_CONSOLE_IDLE_TIMEOUT: '13h' }))
    const f = yamlFile('console:\n  idleTimeout: 2h\n  absoluteLifetime: 1h\n')
    bad({}, 'console.absoluteLifetime', /shorter/, f)
  })
  it('browser sign-in needs an identity provider or local users, and a client id', () => {
    bad({ GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true' }, 'authentication.oidc.browserLogin.enabled', /needs an identity provider/)
    const c = ok({ GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true', ...OIDC, GATEHOUSE_OIDC_CLIENT_SECRET: 's3cret' })
    assert.equal(c.authentication.oidc.browserLogin.clientSecret, 's3cret')
    ok({ GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true', GATEHOUSE_LOCAL_ENABLED: 'true' })
    bad({ GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true', ...OIDC, AUTHENTICATION_OIDC_CLIENT_ID: '', AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'true' }, 'authentication.oidc.clientId', /client id registered/)
  })
  it('a bad redirect URL, cookie name or scope, and two secrets, are each named', () => {
    const f = yamlFile(['authentication:', '  oidc:', '    browserLogin:', '      enabled: true', '      clientSecret: a', '      clientSecretFile: /nonexistent/secret', '      redirectUrl: https://gh.example.com/callback', '      cookieName: "bad name"', '      scopes: [openid, "a\\"b"]', ''].join('\n'))
    const r = load(OIDC, f)
    const paths = r.problems.map((p) => p.path).sort()
    assert.deepEqual(paths, ['authentication.oidc.browserLogin.clientSecretFile', 'authentication.oidc.browserLogin.clientSecretFile', 'authentication.oidc.browserLogin.cookieName', 'authentication.oidc.browserLogin.redirectUrl', 'authentication.oidc.browserLogin.scopes[1]'])
    for (const p of r.problems) assert.ok(!JSON.stringify(p).includes('"a"'), 'the inline secret is never echoed')
  })
  it('a cookie name of gatehouse’s own (console, flow) is refused', () => {
    for (const name of ['__Host-gatehouse-console', '__Host-gatehouse-flow', '__HOST-GATEHOUSE-CONSOLE-LOGIN']) {
      const f = yamlFile(`authentication:\n  oidc:\n    browserLogin:\n      enabled: true\n      cookieName: ${name}\n`)
      bad(OIDC, 'authentication.oidc.browserLogin.cookieName', /one of gatehouse’s own cookies/, f)
    }
  })
  it('a cookie name without __Host- is a warning, not a problem', () => {
    const f = yamlFile('authentication:\n  oidc:\n    browserLogin:\n      enabled: true\n      cookieName: gh_session\n')
    const r = load(OIDC, f)
    assert.deepEqual(r.problems, [])
    assert.ok(r.warnings.some((w) => /no __Host- prefix/.test(w)), r.warnings.join('\n'))
  })
})
