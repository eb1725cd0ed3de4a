/**
 * The Weka-style administration CLI end to end: the real `gatehouse` binary against a real
 * `gatehouse serve` (local users on, admin/admin on first start, the self-signed certificate in
 * the state directory) in front of a recording upstream. Covers the forced first password
 * change, the token file, tokens on the data listener, password rules, user management,
 * long-lived tokens, revocation, lockout policy, login banner, TLS and CA certificates, the
 * transparent refresh of an expired access token, and that no token or password is printed.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { peerFingerprint, runCliAsync as runAsync, startServe, type CliRun as Run, type ServeProcess } from '../helpers/cli.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'

/** Every CLI output line of this file, checked at the end for secrets. */
const outputs: string[] = []
/** Passwords and tokens that must never be printed. */
const secrets = new Set<string>()

/** A request with a bearer token on a fresh connection; never throws on status. */
function get(url: string, ca: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { agent: false, ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

function post(url: string, ca: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', agent: false, ca, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

interface TokenFileJson {
  access_token: string
  refresh_token: string
  token_type: string
}

describe('gatehouse user / security against a real gatehouse', () => {
  let dir: string
  let state: string
  let home: string
  let selfSignedPem: string
  let up: RecordingUpstream
  let gh: ServeProcess
  let stopping = false
  const tokenFile = (): string => path.join(home, '.gatehouse', 'auth-token.json')
  const readTokens = (file = tokenFile()): TokenFileJson => {
    const t = JSON.parse(readFileSync(file, 'utf8')) as TokenFileJson
    secrets.add(t.access_token)
    secrets.add(t.refresh_token)
    return t
  }

  /** Run the CLI as the test user: HOME, the admin URL and the state directory (for trust). */
  async function cli(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
    const r = await runAsync(args, { HOME: home, GATEHOUSE_HOST: gh.adminUrl, GATEHOUSE_STATE_DIR: state, ...opts.env }, dir, opts.input)
    // generate-token prints a token on stdout by design; everything else is checked for secrets.
    outputs.push(`${args[1] === 'generate-token' ? '' : r.stdout}${r.stderr}`)
    return r
  }
  async function ok(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
    const r = await cli(args, opts)
    assert.equal(r.code, 0, `gatehouse ${args.join(' ')} failed:\n${r.stderr}${r.stdout}`)
    return r
  }
  async function fails(args: string[], message: RegExp, opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
    const r = await cli(args, opts)
    assert.notEqual(r.code, 0, `gatehouse ${args.join(' ')} should fail:\n${r.stdout}`)
    assert.match(r.stderr, message)
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('gatehouse'))
    assert.equal(errorLines.length, 1, `one error line, got:\n${r.stderr}`)
    return r
  }
  /** Call the data listener with a token; return the status and what the upstream saw. */
  async function dataCall(token: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> | undefined }> {
    up.reset()
    const r = await get(`${gh.dataUrl}/v1/objects`, selfSignedPem, token)
    return { status: r.status, headers: up.requests.at(-1)?.headers }
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-cli-admin-'))
    state = path.join(dir, 'state')
    home = path.join(dir, 'home')
    up = await startUpstream()
    gh = await startServe({ GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir })
    selfSignedPem = readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8')
    // A server that dies mid-suite would otherwise show up only as "connection refused".
    void gh.exited.then((code) => {
      if (!stopping) process.stderr.write(`gatehouse serve exited early (${code}):\n${gh.stderr.join('')}\n${gh.stdout.slice(-5).join('\n')}\n`)
    })
  })
  after(async () => {
    stopping = true
    gh.child.kill('SIGTERM')
    await gh.exited
    await up.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('--help works on every admin command and on the groups', async () => {
    const names = [
      'user login', 'user whoami', 'user add', 'user update', 'user list', 'user delete', 'user passwd', 'user generate-token', 'user revoke-tokens',
      'security lockout-config show', 'security lockout-config set', 'security lockout-config reset',
      'security login-banner show', 'security login-banner set', 'security login-banner reset', 'security login-banner enable', 'security login-banner disable',
      'security tls status', 'security tls set', 'security tls unset',
      'security ca-cert status', 'security ca-cert set', 'security ca-cert unset',
      'security signing-key status', 'security signing-key rotate',
    ]
    const runs = await Promise.all(names.map((n) => cli([...n.split(' '), '--help'])))
    runs.forEach((r, i) => {
      assert.equal(r.code, 0, names[i])
      assert.ok(r.stdout.startsWith(`gatehouse ${names[i]}`), `${names[i]}: ${r.stdout.slice(0, 80)}`)
      assert.match(r.stdout, /--host URL/)
    })
    const group = await ok(['security', 'tls', '--help'])
    assert.match(group.stdout, /gatehouse security tls set --certificate FILE --private-key FILE/)
    const top = await ok(['--help'])
    assert.match(top.stdout, /gatehouse user login \[USERNAME\] \[PASSWORD\]/)
    await fails(['security', 'tls', 'bogus'], /'security tls bogus' is not a command; try: gatehouse security tls status/)
  })

  it('refuses before login, and a wrong password says so without echoing it', async () => {
    await fails(['user', 'whoami'], /^gatehouse user whoami: not logged in; run gatehouse user login$/m)
    secrets.add('Wrong-pass1')
    await fails(['user', 'login', 'admin', 'Wrong-pass1'], /^gatehouse user login: Invalid username or password \(ERR_LOGIN_FAILED\)$/m)
  })

  it('first admin login: admin/admin must change the password (from stdin), then the token file works', async () => {
    secrets.add('First-pass1').add('Other-pass1')
    // A confirmation that does not match changes nothing.
    await fails(['user', 'login'], /the passwords do not match/, { input: 'admin\nadmin\nFirst-pass1\nOther-pass1\n' })
    const r = await ok(['user', 'login'], { input: 'admin\nadmin\nFirst-pass1\nFirst-pass1\n' })
    assert.match(r.stdout, /password changed for admin\nlogged in as admin\n$/)
    assert.match(r.stderr, /must be changed/)
    const st = statSync(tokenFile())
    assert.equal(st.mode & 0o777, 0o600)
    assert.equal(statSync(path.dirname(tokenFile())).mode & 0o777, 0o700)
    const t = readTokens()
    assert.deepEqual(Object.keys(t).sort(), ['access_token', 'refresh_token', 'token_type'])
    assert.equal(t.token_type, 'Bearer')

    const d = await dataCall(t.access_token)
    assert.equal(d.status, 200)
    assert.equal(d.headers?.['x-forwarded-user'], 'admin')
    assert.equal(d.headers?.['x-forwarded-auth-method'], 'local')
    assert.equal(d.headers?.['x-forwarded-groups'], 'admin')

    const [w, wj] = await Promise.all([
      ok(['user', 'whoami']),
      ok(['user', 'whoami', '--json']),
      // The old password is gone.
      fails(['user', 'login', 'admin', 'admin', '--path', path.join(dir, 'x.json')], /Invalid username or password/),
    ])
    assert.match(w.stdout, /^admin \(role admin, local user, uid .+, organization Root\)$/m)
    const who = JSON.parse(wj.stdout) as { username: string; role: string }
    assert.deepEqual([who.username, who.role], ['admin', 'admin'])
  })

  it('each password rule is refused with a message naming it', async () => {
    const cases: [string, RegExp][] = [
      ['Sh0rt!', /8 characters/],
      ['alllower1', /uppercase/],
      ['ALLUPPER1', /lowercase/],
      ['NoDigitsHere', /number or a special character/],
      [`Aa1${'x'.repeat(130)}`, /128 characters/],
    ]
    for (const [pw] of cases) secrets.add(pw)
    const runs = await Promise.all([
      ...cases.map(([pw, rule]) => fails(['user', 'add', 'weak', '--role', 'regular', '--password', pw], rule)),
      // Also through passwd (the current password is right, the new one is weak).
      fails(['user', 'passwd', 'short1A', '--current-password', 'First-pass1'], /8 characters.*ERR_WEAK_PASSWORD/),
      fails(['user', 'list', 'extra'], /this command takes no arguments/),
    ])
    for (const r of runs.slice(0, cases.length)) assert.match(r.stderr, /ERR_WEAK_PASSWORD/)
  })

  it('user add / list / delete, and roles are enforced', async () => {
    secrets.add('Alice-pass1').add('Bob-pass12')
    const [a] = await Promise.all([
      ok(['user', 'add', 'alice', '--role', 'readonly', '--password', 'Alice-pass1']),
      ok(['user', 'add', 'bob', '--role', 'regular'], { input: 'Bob-pass12\nBob-pass12\n' }),
    ])
    assert.match(a.stdout, /added user alice \(role readonly\)/)
    const bobFile = path.join(dir, 'bob.json')
    const aliceFile = path.join(dir, 'alice.json')
    const [list, listJson] = await Promise.all([
      ok(['user', 'list']),
      ok(['user', 'list', '--json']),
      fails(['user', 'add', 'alice', '--role', 'regular', '--password', 'Alice-pass1'], /ERR_USER_EXISTS/),
      fails(['user', 'add', 'carol', '--role', 'root', '--password', 'Carol-pass1'], /--role must be one of admin, readonly, regular/),
      ok(['user', 'login', 'bob', 'Bob-pass12', '--path', bobFile]),
      ok(['user', 'login', 'alice', 'Alice-pass1', '--path', aliceFile]),
    ])
    assert.match(list.stdout.split('\n')[0] ?? '', /^USERNAME\s+ROLE\s+UID/)
    assert.match(list.stdout, /^admin\s+admin\s/m)
    assert.match(list.stdout, /^alice\s+readonly\s/m)
    assert.match(list.stdout, /^bob\s+regular\s/m)
    const rows = JSON.parse(listJson.stdout) as { username: string; role: string }[]
    assert.deepEqual(rows.map((x) => `${x.username}:${x.role}`).sort(), ['admin:admin', 'alice:readonly', 'bob:regular'])
    readTokens(bobFile)
    readTokens(aliceFile)

    // bob (regular) may see himself, not list users; alice (readonly) may list, not add.
    await Promise.all([
      ok(['user', 'whoami', '--path', bobFile]),
      fails(['user', 'list', '--path', bobFile], /ERR_FORBIDDEN/),
      ok(['user', 'list', '--path', aliceFile]),
      fails(['user', 'add', 'x1', '--role', 'regular', '--password', 'Xx-pass123', '--path', aliceFile], /^gatehouse user add: forbidden: .*\(ERR_FORBIDDEN\)$/m),
    ])

    assert.match((await ok(['user', 'delete', 'bob'])).stdout, /deleted user bob/)
    const [after] = await Promise.all([
      ok(['user', 'list']),
      fails(['user', 'delete', 'bob'], /ERR_USER_NOT_FOUND/),
      fails(['user', 'delete', 'admin'], /you cannot delete yourself \(ERR_BAD_REQUEST\)$/m),
    ])
    assert.doesNotMatch(after.stdout, /^bob\s/m)
  })

  it('generate-token prints a long-lived token that works on the data listener', async () => {
    const [r, hour, forever] = await Promise.all([
      ok(['user', 'generate-token']),
      ok(['user', 'generate-token', '--access-token-timeout', '1h', '--json']),
      ok(['user', 'generate-token', '--access-token-timeout', 'infinite', '--json']),
      fails(['user', 'generate-token', '--access-token-timeout', 'soon'], /--access-token-timeout must be a duration/),
    ])
    const token = r.stdout.trim()
    assert.equal(r.stdout, `${token}\n`, 'the token only')
    secrets.add(token)
    const d = await dataCall(token)
    assert.equal(d.status, 200)
    assert.equal(d.headers?.['x-forwarded-user'], 'admin')
    assert.equal(d.headers?.['x-forwarded-auth-method'], 'local')
    const j = JSON.parse(hour.stdout) as { access_token: string; token_type: string; expires_in: number | null }
    const inf = JSON.parse(forever.stdout) as { access_token: string; expires_in: number | null }
    secrets.add(j.access_token).add(inf.access_token)
    assert.equal(j.token_type, 'Bearer')
    assert.equal(j.expires_in, 3600)
    assert.equal(inf.expires_in, null)
  })

  it('revoke-tokens kills the access, refresh and long-lived tokens at once; a login right after works', async () => {
    const aliceFile = path.join(dir, 'alice.json')
    const t = readTokens(aliceFile)
    const longLived = (await ok(['user', 'generate-token', '--path', aliceFile])).stdout.trim()
    secrets.add(longLived)
    assert.equal((await dataCall(t.access_token)).status, 200)
    assert.equal((await dataCall(longLived)).status, 200)

    assert.match((await ok(['user', 'revoke-tokens', 'alice'])).stdout, /revoked every token of alice/)
    assert.equal((await dataCall(t.access_token)).status, 401)
    assert.equal((await dataCall(longLived)).status, 401)
    const refresh = await post(`${gh.adminUrl}/api/v2/login/refresh`, selfSignedPem, { refresh_token: t.refresh_token })
    assert.equal(refresh.status, 401)
    assert.equal((JSON.parse(refresh.body) as { reason: string }).reason, 'ERR_INVALID_REFRESH_TOKEN')
    // Through the CLI: the access token is refused, the refresh too, and it says what to do.
    await fails(['user', 'whoami', '--path', aliceFile], /the session has expired or was revoked \(ERR_INVALID_REFRESH_TOKEN\); run gatehouse user login --path /)

    await ok(['user', 'login', 'alice', 'Alice-pass1', '--path', aliceFile])
    const t2 = readTokens(aliceFile)
    assert.equal((await dataCall(t2.access_token)).status, 200)
  })

  it('update --role: the role changes, the earlier tokens end, a new login carries the new role; not one’s own, not an unknown user or role', async () => {
    const aliceFile = path.join(dir, 'alice-role.json')
    await ok(['user', 'login', 'alice', 'Alice-pass1', '--path', aliceFile])
    const t = readTokens(aliceFile)
    assert.equal((await dataCall(t.access_token)).status, 200)
    assert.match((await ok(['user', 'update', 'alice', '--role', 'readonly'])).stdout, /user alice now has role readonly/)
    assert.equal((await dataCall(t.access_token)).status, 401, 'the old token carried the old role')
    assert.match((await ok(['user', 'list'])).stdout, /alice\s+readonly/)
    await ok(['user', 'login', 'alice', 'Alice-pass1', '--path', aliceFile])
    assert.match((await ok(['user', 'whoami', '--path', aliceFile])).stdout, /alice \(role readonly/)
    await fails(['user', 'update', 'alice', '--path', aliceFile, '--role', 'admin'], /admin role \(ERR_FORBIDDEN\)|forbidden/)
    await fails(['user', 'update', 'admin', '--role', 'readonly'], /you cannot change your own role/)
    await fails(['user', 'update', 'nobody', '--role', 'readonly'], /ERR_USER_NOT_FOUND/)
    await fails(['user', 'update', 'alice', '--role', 'root'], /--role must be one of admin, readonly, regular/)
    await ok(['user', 'update', 'alice', '--role', 'regular'])
    assert.match((await ok(['user', 'list'])).stdout, /alice\s+regular/)
  })

  it('passwd: own password (then logged in again), another user’s as admin, wrong current password', async () => {
    secrets.add('Second-pass1').add('Third-pass1').add('Alice-pass2').add('Nope-nope1')
    const before = readTokens()
    const r = await ok(['user', 'passwd', 'Second-pass1', '--current-password', 'First-pass1'])
    assert.match(r.stdout, /password changed for admin; logged in again/)
    const afterT = readTokens()
    assert.notEqual(afterT.access_token, before.access_token)
    assert.equal((await dataCall(before.access_token)).status, 401, 'the change revoked the earlier tokens')
    assert.equal((await dataCall(afterT.access_token)).status, 200)
    // Prompted: the current password, then the new one twice.
    await ok(['user', 'passwd'], { input: 'Second-pass1\nThird-pass1\nThird-pass1\n' })
    await Promise.all([
      ok(['user', 'passwd', 'Alice-pass2', '--username', 'alice']),
      fails(['user', 'passwd', 'Fourth-pass1', '--current-password', 'Nope-nope1'], /Invalid username or password \(ERR_LOGIN_FAILED\)/),
    ])
    await Promise.all([
      fails(['user', 'login', 'alice', 'Alice-pass1', '--path', path.join(dir, 'x.json')], /Invalid username or password/),
      ok(['user', 'login', 'alice', 'Alice-pass2', '--path', path.join(dir, 'alice.json')]),
    ])
  })

  it('lockout-config set / show / reset round-trip, and the lock it sets', async () => {
    const show0 = await ok(['security', 'lockout-config', 'show'])
    assert.match(show0.stdout, /failed attempts:\s+5\nlockout duration:\s+2m \(120 s\)/)
    const set1 = await ok(['security', 'lockout-config', 'set', '--failed-attempts', '3', '--lockout-duration', '45s', '--json'])
    assert.deepEqual(JSON.parse(set1.stdout), { failed_attempts: 3, lockout_duration: 45 })
    await ok(['security', 'lockout-config', 'set', '--lockout-duration', '90'])
    const [show1] = await Promise.all([
      ok(['security', 'lockout-config', 'show', '--json']),
      fails(['security', 'lockout-config', 'set', '--failed-attempts', '1'], /\(ERR_[A-Z_]+\)$/m),
      fails(['security', 'lockout-config', 'set'], /give --failed-attempts N and\/or --lockout-duration D/),
    ])
    assert.deepEqual(JSON.parse(show1.stdout), { failed_attempts: 3, lockout_duration: 90 })

    const x = path.join(dir, 'x.json')
    for (let i = 0; i < 2; i++) await fails(['user', 'login', 'alice', 'Wrong-pass1', '--path', x], /Invalid username or password/)
    await fails(['user', 'login', 'alice', 'Wrong-pass1', '--path', x], /Invalid username or password|ERR_ACCOUNT_LOCKED/)
    await fails(['user', 'login', 'alice', 'Alice-pass2', '--path', x], /ERR_ACCOUNT_LOCKED.*retry in \d+ s/)

    const reset = await ok(['security', 'lockout-config', 'reset'])
    assert.match(reset.stdout, /failed attempts:\s+5\nlockout duration:\s+2m \(120 s\)/)
    const [, show2] = await Promise.all([ok(['user', 'login', 'alice', 'Alice-pass2', '--path', x]), ok(['security', 'lockout-config', 'show', '--json'])])
    assert.deepEqual(JSON.parse(show2.stdout), { failed_attempts: 5, lockout_duration: 120 })
  })

  it('login-banner set / enable is printed by user login; disable / reset', async () => {
    const [show0] = await Promise.all([ok(['security', 'login-banner', 'show']), fails(['security', 'login-banner', 'set'], /give the banner TEXT/)])
    assert.match(show0.stdout, /^login banner: disabled/)
    await ok(['security', 'login-banner', 'set', 'Authorized use only. Activity is logged.'])
    const en = await ok(['security', 'login-banner', 'enable'])
    assert.match(en.stdout, /^login banner: enabled\nAuthorized use only\. Activity is logged\.$/m)
    const x = path.join(dir, 'x.json')
    const [login, prompted] = await Promise.all([
      ok(['user', 'login', 'alice', 'Alice-pass2', '--path', x]),
      // The banner shows before the prompts too (no credential needed to read it).
      ok(['user', 'login', '--path', path.join(dir, 'y.json')], { input: 'alice\nAlice-pass2\n' }),
    ])
    assert.match(login.stdout, /^Authorized use only\. Activity is logged\.\n\nlogged in as alice\n$/)
    assert.match(prompted.stdout, /^Authorized use only/)
    await ok(['security', 'login-banner', 'disable'])
    const [quiet] = await Promise.all([ok(['user', 'login', 'alice', 'Alice-pass2', '--path', x]), ok(['security', 'login-banner', 'reset'])])
    assert.doesNotMatch(quiet.stdout, /Authorized/)
    assert.deepEqual(JSON.parse((await ok(['security', 'login-banner', 'show', '--json'])).stdout), { text: '', enabled: false })
  })

  it('tls set presents a new certificate on both listeners at the next handshake; a mismatched key is refused; unset', async () => {
    const original = new X509Certificate(selfSignedPem).fingerprint256
    const [fp0, st0] = await Promise.all([peerFingerprint(gh.dataUrl), ok(['security', 'tls', 'status', '--json'])])
    assert.equal(fp0, original)
    const st = JSON.parse(st0.stdout) as { source: string; fingerprint256: string }
    assert.equal(st.source, 'self-signed')
    assert.equal(st.fingerprint256, original)

    const next = generateSelfSignedCertificate({ commonName: 'gatehouse cli rotation' })
    const other = generateSelfSignedCertificate({ commonName: 'gatehouse other' })
    const certFile = path.join(dir, 'new.crt')
    const keyFile = path.join(dir, 'new.key')
    const otherKey = path.join(dir, 'other.key')
    writeFileSync(certFile, next.certPem)
    writeFileSync(keyFile, next.keyPem, { mode: 0o600 })
    writeFileSync(otherKey, other.keyPem, { mode: 0o600 })
    secrets.add(next.keyPem).add(other.keyPem)
    const nextFp = new X509Certificate(next.certPem).fingerprint256

    const set = await ok(['security', 'tls', 'set', '--certificate', certFile, '--private-key', keyFile])
    assert.match(set.stdout, /sha256 fingerprint:\s+/)
    assert.deepEqual(await Promise.all([peerFingerprint(gh.dataUrl), peerFingerprint(gh.adminUrl)]), [nextFp, nextFp])

    const bundle = path.join(dir, 'bundle.pem')
    writeFileSync(bundle, `${selfSignedPem}\n${next.certPem}`)
    const ca = ['--ca', bundle]
    const [st2] = await Promise.all([
      ok(['security', 'tls', 'status', '--json', ...ca]),
      // The CLI verifies with the state directory alone: the server published what it serves (tls/served.crt).
      ok(['security', 'tls', 'status']),
      fails(['security', 'tls', 'set', '--certificate', certFile, '--private-key', otherKey, ...ca], /ERR_BAD_CERTIFICATE/),
      fails(['security', 'tls', 'set', '--certificate', certFile, '--private-key', path.join(dir, 'missing.key'), ...ca], /cannot read --private-key/),
    ])
    const st2j = JSON.parse(st2.stdout) as { source: string; fingerprint256: string }
    assert.equal(st2j.source, 'api')
    assert.equal(st2j.fingerprint256, nextFp)
    assert.deepEqual(await Promise.all([peerFingerprint(gh.dataUrl), peerFingerprint(gh.adminUrl)]), [nextFp, nextFp], 'the refused key left the certificate as it was')

    await ok(['security', 'tls', 'unset', ...ca])
    assert.deepEqual(await Promise.all([peerFingerprint(gh.dataUrl), peerFingerprint(gh.adminUrl)]), [original, original])
    assert.match((await ok(['security', 'tls', 'status'])).stdout, /source:\s+self-signed/)
  })

  it('ca-cert set / status / unset', async () => {
    const [st0] = await Promise.all([ok(['security', 'ca-cert', 'status']), fails(['security', 'ca-cert', 'set'], /--cert-file FILE is required/)])
    assert.match(st0.stdout, /CA certificate: not set/)
    const ca = generateSelfSignedCertificate({ commonName: 'gatehouse test CA' })
    const caFile = path.join(dir, 'outbound-ca.pem')
    writeFileSync(caFile, ca.certPem)
    const set = await ok(['security', 'ca-cert', 'set', '--cert-file', caFile])
    assert.match(set.stdout, /CA certificate: set/)
    const st = JSON.parse((await ok(['security', 'ca-cert', 'status', '--json'])).stdout) as { set: boolean; fingerprint256: string; subject: string }
    assert.equal(st.set, true)
    assert.equal(st.fingerprint256, new X509Certificate(ca.certPem).fingerprint256)
    const unset = await ok(['security', 'ca-cert', 'unset', '--json'])
    assert.equal((JSON.parse(unset.stdout) as { set: boolean }).set, false)
  })

  it('never printed a token or a password, and the server logged none', () => {
    const all = outputs.join('\n')
    for (const s of secrets) if (s.length >= 6) assert.ok(!all.includes(s), `a secret was printed: ${s.slice(0, 12)}…`)
    const logs = gh.stdout.join('\n') + gh.stderr.join('')
    for (const s of secrets) if (s.length >= 6) assert.ok(!logs.includes(s), `a secret was logged: ${s.slice(0, 12)}…`)
  })
})

describe('transparent refresh of an expired access token (accessTokenLifetime: 3s)', () => {
  let dir: string
  let state: string
  let up: RecordingUpstream
  let gh: ServeProcess
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-cli-refresh-'))
    state = path.join(dir, 'state')
    const cfg = path.join(dir, 'proxy.yaml')
    writeFileSync(cfg, 'authentication:\n  local:\n    enabled: true\n    accessTokenLifetime: 3s\n')
    up = await startUpstream()
    gh = await startServe({ GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir, args: ['--config', cfg] })
  })
  after(async () => {
    gh.child.kill('SIGTERM')
    await gh.exited
    await up.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('an expired access token is refreshed before the call and the token file rewritten', async () => {
    const env = { HOME: path.join(dir, 'home'), GATEHOUSE_HOST: gh.adminUrl, GATEHOUSE_STATE_DIR: state }
    const file = path.join(dir, 'home', '.gatehouse', 'auth-token.json')
    const login = await runAsync(['user', 'login'], env, dir, 'admin\nadmin\nFresh-pass1\nFresh-pass1\n')
    assert.equal(login.code, 0, login.stderr)
    const t1 = JSON.parse(readFileSync(file, 'utf8')) as TokenFileJson
    await new Promise((r) => setTimeout(r, 3500))
    const ca = readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8')
    assert.equal((await get(`${gh.dataUrl}/v1/objects`, ca, t1.access_token)).status, 401, 'the access token has expired')

    const w = await runAsync(['user', 'whoami'], env, dir)
    assert.equal(w.code, 0, w.stderr)
    assert.match(w.stdout, /^admin \(role admin/)
    const t2 = JSON.parse(readFileSync(file, 'utf8')) as TokenFileJson
    assert.notEqual(t2.access_token, t1.access_token)
    assert.notEqual(t2.refresh_token, t1.refresh_token, 'the refresh token rotated')
    assert.equal(statSync(file).mode & 0o777, 0o600)
    for (const s of [t1.access_token, t1.refresh_token, t2.access_token, t2.refresh_token, 'Fresh-pass1']) assert.ok(!(login.stdout + login.stderr + w.stdout + w.stderr).includes(s))
  })
})
