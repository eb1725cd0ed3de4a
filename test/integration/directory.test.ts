/**
 * Directory users end to end (issue 16, SPEC §12): a real OpenLDAP (Debian's slapd, StartTLS
 * with a test CA; test/helpers/slapd.ts), the real `gatehouse serve` binary, the real CLI
 * (`gatehouse user login`, `whoami`, `list`, `revoke-tokens`, `user ldap …`), and a recording
 * upstream on the data listener. Directory roles map to the data listener's admin list exactly as
 * local roles do (`groups: [admin]`, `readonlyGroups: [readonly]`).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { runCliAsync, startServe, type CliRun, type ServeProcess } from '../helpers/cli.ts'
import { PEOPLE, startSlapd, type RunningSlapd } from '../helpers/slapd.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Local-admin-pw-1'
const CLASH_LOCAL_PW = 'Clash-local-pw-1'

interface Res {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

function call(url: string, ca: string, method: string, opts: { headers?: Record<string, string>; body?: string; token?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }), ...(opts.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(opts.body)) }), ...opts.headers }
    const r = https.request(url, { method, ca, agent: false, headers }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    r.on('error', reject)
    r.end(opts.body)
  })
}

describe('directory users (LDAP) through the real binary and CLI', { timeout: 180_000 }, () => {
  let ldap: RunningSlapd
  let up: RecordingUpstream
  let gh: ServeProcess
  let dir: string
  let state: string
  let home: string
  let ca: string
  let stopping = false
  /** Every password and token of this file: none may show in CLI output or the server's log. */
  const secrets = new Set<string>([ADMIN_PW, CLASH_LOCAL_PW, ...Object.values(PEOPLE)])
  const outputs: string[] = []

  const admin = (p: string, method = 'GET', body?: unknown, token?: string): Promise<Res> =>
    call(`${gh.adminUrl}${p}`, ca, method, { ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }), ...(token === undefined ? {} : { token }) })
  const login = async (username: string, password: string): Promise<Res> => {
    const r = await admin('/api/v2/login', 'POST', { username, password })
    if (r.status === 200) {
      const d = JSON.parse(r.body).data
      secrets.add(d.access_token).add(d.refresh_token)
    }
    return r
  }
  const tokensOf = (r: Res): { access: string; refresh: string } => {
    assert.equal(r.status, 200, r.body)
    const d = JSON.parse(r.body).data
    return { access: d.access_token, refresh: d.refresh_token }
  }
  const refresh = (t: string): Promise<Res> => admin('/api/v2/login/refresh', 'POST', { refresh_token: t })
  const data = async (token: string, method = 'GET'): Promise<{ status: number; user?: string; groups?: string; method?: string }> => {
    up.reset()
    const r = await call(`${gh.dataUrl}/v1/objects`, ca, method, { token, ...(method === 'GET' ? {} : { body: '{}', headers: { 'content-type': 'application/json' } }) })
    const h = up.requests.at(-1)?.headers
    return { status: r.status, user: h?.['x-forwarded-user'] as string | undefined, groups: h?.['x-forwarded-groups'] as string | undefined, method: h?.['x-forwarded-auth-method'] as string | undefined }
  }
  async function cli(args: string[], opts: { input?: string; file?: string } = {}): Promise<CliRun> {
    const env: Record<string, string> = { HOME: home, GATEHOUSE_HOST: gh.adminUrl, GATEHOUSE_STATE_DIR: state, ...(opts.file === undefined ? {} : { GATEHOUSE_TOKEN_FILE: opts.file }) }
    const r = await runCliAsync(args, env, dir, opts.input)
    outputs.push(r.stdout + r.stderr)
    return r
  }
  const tokenFile = (name: string): string => path.join(dir, `${name}.json`)
  const accessIn = (file: string): string => {
    const t = JSON.parse(readFileSync(file, 'utf8')) as { access_token: string; refresh_token: string }
    secrets.add(t.access_token).add(t.refresh_token)
    return t.access_token
  }

  before(async () => {
    ldap = await startSlapd()
    secrets.add(ldap.readerPassword).add(ldap.rootPassword)
    dir = mkdtempSync(path.join(tmpdir(), 'gh-directory-'))
    state = path.join(dir, 'state')
    home = path.join(dir, 'home')
    up = await startUpstream()
    writeFileSync(path.join(dir, 'proxy.yaml'), `authentication:
  local:
    enabled: true
    lockout:
      failedAttempts: 3
      lockoutDuration: 30s
    loginThrottle:
      maxFailures: 10000
  ldap:
    enabled: true
    urls: [${ldap.ldapUrl}]
    bindDn: ${ldap.readerDn}
    userBaseDn: ou=people,${ldap.baseDn}
    groupBaseDn: ou=groups,${ldap.baseDn}
    roleGroups:
      admin: gh-admins
      regular: gh-users
      readonly: gh-readonly
    caFile: ${ldap.caFile}
    timeouts:
      connect: 1s
      operation: 2s
authorization:
  adminlist:
    enabled: true
    groups: [admin]
    readonlyGroups: [readonly]
`)
    gh = await startServe({ GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, GATEHOUSE_LDAP_BIND_PASSWORD: ldap.readerPassword }, { cwd: dir, args: ['--config', path.join(dir, 'proxy.yaml')] })
    ca = readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8')
    void gh.exited.then((code) => {
      if (!stopping) process.stderr.write(`gatehouse serve exited early (${code}):\n${gh.stderr.join('')}\n${gh.stdout.slice(-5).join('\n')}\n`)
    })
  })
  after(async () => {
    stopping = true
    gh?.child.kill('SIGTERM')
    await gh?.exited
    await up?.close()
    await ldap?.close()
    // Never a password or token in what the CLI printed or the server logged.
    const logs = `${gh?.stdout.join('\n')}${gh?.stderr.join('')}`
    for (const s of secrets) {
      assert.ok(!logs.includes(s), `a secret appears in the server log: ${s.slice(0, 4)}…`)
      for (const o of outputs) assert.ok(!o.includes(s), `a secret appears in CLI output: ${s.slice(0, 4)}…`)
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('a directory admin, regular and read-only user each sign in with gatehouse user login and get exactly their rights', async () => {
    for (const [name, role] of [['alice', 'admin'], ['bob', 'regular'], ['carol', 'readonly']] as const) {
      const r = await cli(['user', 'login', name, PEOPLE[name], '--path', tokenFile(name)])
      assert.equal(r.code, 0, `${name}: ${r.stderr}`)
      const w = await cli(['user', 'whoami', '--json'], { file: tokenFile(name) })
      assert.equal(w.code, 0, w.stderr)
      const me = JSON.parse(w.stdout)
      assert.equal(me.username, name)
      assert.equal(me.role, role)
      assert.equal(me.source, 'ldap')
    }
    const alice = accessIn(tokenFile('alice'))
    const bob = accessIn(tokenFile('bob'))
    const carol = accessIn(tokenFile('carol'))
    // Data listener: admin reads and writes; readonly only reads; regular (like a local regular user) neither.
    assert.deepEqual(await data(alice, 'POST'), { status: 200, user: 'alice', groups: 'admin', method: 'local' })
    assert.equal((await data(carol)).status, 200)
    assert.equal((await data(carol, 'POST')).status, 403)
    assert.equal((await data(bob)).status, 403)
    // Admin API: the admin lists users (with their source), the read-only user may read, the regular user may not.
    const list = await admin('/api/v2/users', 'GET', undefined, alice)
    assert.equal(list.status, 200, list.body)
    const rows = JSON.parse(list.body).data as { username: string; source: string; role: string }[]
    assert.deepEqual(rows.filter((u) => u.source === 'ldap').map((u) => [u.username, u.role]).sort(), [['alice', 'admin'], ['bob', 'regular'], ['carol', 'readonly']])
    assert.equal(rows.find((u) => u.username === 'admin')?.source, 'local')
    assert.equal((await admin('/api/v2/users', 'GET', undefined, carol)).status, 200)
    assert.equal((await admin('/api/v2/users', 'GET', undefined, bob)).status, 403)
    const cliList = await cli(['user', 'list'], { file: tokenFile('alice') })
    assert.equal(cliList.code, 0, cliList.stderr)
    assert.match(cliList.stdout, /alice\s.*ldap/)
    assert.match(cliList.stdout, /admin\s.*local/)
  })

  it('a user in two role groups gets the highest; in none, or disabled (moved out of the user base), may not sign in', async () => {
    const frank = tokensOf(await login('frank', PEOPLE.frank))
    assert.equal((await data(frank.access, 'POST')).groups, 'admin')
    const erin = await login('erin', PEOPLE.erin)
    assert.equal(erin.status, 403)
    assert.equal(JSON.parse(erin.body).reason, 'ERR_DIRECTORY_NO_ROLE')
    const dave = await login('dave', PEOPLE.dave)
    assert.equal(dave.status, 401)
    assert.equal(JSON.parse(dave.body).message, 'Invalid username or password')
  })

  it('an empty password and injection strings never sign anyone in', async () => {
    const empty = await login('alice', '')
    assert.equal(empty.status, 400, 'refused before any bind')
    const names = ['*', ')(uid=*', '\\00', '\u0000', 'admin)(|(uid=*', 'alice)(uid=*', 'al*', '*)(objectClass=*', 'ALICE', 'alice ', 'uid=alice,ou=people,dc=example,dc=org']
    for (const name of names) {
      for (const pw of [PEOPLE.alice, '*']) {
        const r = await login(name, pw)
        assert.ok(r.status === 401 || r.status === 400, `${JSON.stringify(name)}: ${r.status} ${r.body}`)
      }
    }
    // The failures above counted against those names only: alice still signs in.
    assert.equal((await login('alice', PEOPLE.alice)).status, 200)
  })

  it('wrong passwords lock a directory name exactly like a local one (429 with Retry-After, the right password included)', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await login('clash-free-name-never', 'Wrong-pass-1')).status, 401)
    for (let i = 0; i < 3; i++) assert.equal((await login('carol', `Wrong-pass-${i}`)).status, 401)
    const locked = await login('carol', PEOPLE.carol)
    assert.equal(locked.status, 429)
    assert.ok(Number(locked.headers['retry-after']) > 0)
    assert.equal((await login('clash-free-name-never', 'Wrong-pass-1')).status, 429, 'an unknown name locks alike')
    // An admin's unlock (the lockout reset) lets carol in again.
    const a = tokensOf(await login('admin', ADMIN_PW))
    assert.equal((await admin('/api/v2/lockoutPolicy', 'DELETE', undefined, a.access)).status, 200)
    assert.equal((await login('carol', PEOPLE.carol)).status, 200)
  })

  it('removing a user from the role group stops the next refresh; a new group changes the role at the refresh', async () => {
    const bob = tokensOf(await login('bob', PEOPLE.bob))
    const next = tokensOf(await refresh(bob.refresh))
    ldap.modify(`dn: cn=gh-users,ou=groups,${ldap.baseDn}\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=people,${ldap.baseDn}\n`)
    const r = await refresh(next.refresh)
    assert.equal(r.status, 401)
    assert.equal(JSON.parse(r.body).reason, 'ERR_INVALID_REFRESH_TOKEN')
    assert.equal((await login('bob', PEOPLE.bob)).status, 403, 'and no sign-in either')
    // carol, read-only, is made an admin: her refresh carries the new role.
    const carol = tokensOf(await login('carol', PEOPLE.carol))
    assert.equal((await data(carol.access, 'POST')).status, 403)
    ldap.modify(`dn: cn=gh-admins,ou=groups,${ldap.baseDn}\nchangetype: modify\nadd: member\nmember: uid=carol,ou=people,${ldap.baseDn}\n`)
    const promoted = tokensOf(await refresh(carol.refresh))
    assert.deepEqual(await data(promoted.access, 'POST'), { status: 200, user: 'carol', groups: 'admin', method: 'local' })
    assert.equal((await data(carol.access)).status, 401, 'the token with the old role is revoked by the role change')
    ldap.modify(`dn: cn=gh-admins,ou=groups,${ldap.baseDn}\nchangetype: modify\ndelete: member\nmember: uid=carol,ou=people,${ldap.baseDn}\n`)
    ldap.modify(`dn: cn=gh-users,ou=groups,${ldap.baseDn}\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,${ldap.baseDn}\n`)
  })

  it('revoke-tokens works for a directory user (CLI); long-lived tokens and password changes are for local users', async () => {
    const bob = tokensOf(await login('bob', PEOPLE.bob))
    assert.equal((await admin('/api/v2/users/whoami', 'GET', undefined, bob.access)).status, 200)
    const r = await cli(['user', 'revoke-tokens', 'bob'], { file: tokenFile('alice') })
    assert.equal(r.code, 0, r.stderr)
    assert.equal((await admin('/api/v2/users/whoami', 'GET', undefined, bob.access)).status, 401)
    assert.equal((await refresh(bob.refresh)).status, 401)
    const again = tokensOf(await login('bob', PEOPLE.bob))
    assert.equal((await admin('/api/v2/users/whoami', 'GET', undefined, again.access)).status, 200)
    assert.equal((await admin('/api/v2/users/tokens', 'POST', {}, again.access)).status, 403)
    const pw = await admin('/api/v2/users/password', 'PUT', { old_password: PEOPLE.bob, new_password: 'New-bob-pass-1' }, again.access)
    assert.equal(pw.status, 400)
    assert.match(JSON.parse(pw.body).message, /directory/)
  })

  it('a local user whose name is also in the directory is refused with a clear error after the right password', async () => {
    const a = tokensOf(await login('admin', ADMIN_PW))
    assert.equal((await admin('/api/v2/users', 'POST', { username: 'clash', password: CLASH_LOCAL_PW, role: 'regular' }, a.access)).status, 201)
    const right = await login('clash', CLASH_LOCAL_PW)
    assert.equal(right.status, 409)
    assert.equal(JSON.parse(right.body).reason, 'ERR_DIRECTORY_NAME_CLASH')
    const wrong = await login('clash', 'Wrong-pass-9')
    assert.equal(wrong.status, 401, 'a wrong password learns nothing about the clash')
    assert.equal((await login('clash', PEOPLE.clash)).status, 401, 'the local user holds the name: the directory password is not tried')
    assert.equal((await admin('/api/v2/users/clash', 'DELETE', undefined, a.access)).status, 200)
  })

  it('the console signs a directory user in (raw HTTPS form post)', async () => {
    const page = await call(`${gh.adminUrl}/ui/login`, ca, 'GET')
    assert.equal(page.status, 200)
    const loginCookie = (page.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-gatehouse-console-login='))?.split(';')[0] as string
    const csrf = (/name="_csrf" value="([^"]+)"/.exec(page.body) as RegExpExecArray)[1] as string
    secrets.add(loginCookie.split('=')[1] as string).add(csrf)
    const body = new URLSearchParams({ _csrf: csrf, username: 'alice', password: PEOPLE.alice }).toString()
    const r = await call(`${gh.adminUrl}/ui/login`, ca, 'POST', { body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', origin: new URL(gh.adminUrl).origin, cookie: loginCookie } })
    assert.equal(r.status, 303, r.body.slice(0, 300))
    const session = (r.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-gatehouse-console='))?.split(';')[0] as string
    assert.ok(session !== undefined)
    secrets.add(session.split('=')[1] as string)
    const status = await call(`${gh.adminUrl}/ui/status`, ca, 'GET', { headers: { cookie: session } })
    assert.equal(status.status, 200)
    assert.match(status.body, /alice/)
  })

  it('gatehouse user ldap show / update / disable / enable / reset (admin only; the reader password is never shown)', async () => {
    const shown = await cli(['user', 'ldap', 'show', '--json'], { file: tokenFile('alice') })
    assert.equal(shown.code, 0, shown.stderr)
    const s = JSON.parse(shown.stdout)
    assert.equal(s.source, 'config')
    assert.equal(s.bind_password_set, true)
    assert.ok(!shown.stdout.includes(ldap.readerPassword))
    assert.equal(s.admin_group, 'gh-admins')
    const human = await cli(['user', 'ldap', 'show'], { file: tokenFile('alice') })
    assert.match(human.stdout, /reader password set:\s+yes/)
    const carol = tokensOf(await login('carol', PEOPLE.carol))
    assert.equal((await admin('/api/v2/ldap', 'GET', undefined, carol.access)).status, 403, 'read-only users may not read the directory settings')

    // ldaps:// with the test CA instead of StartTLS.
    const up1 = await cli(['user', 'ldap', 'update', '--server-uri', ldap.ldapsUrl, '--json'], { file: tokenFile('alice') })
    assert.equal(up1.code, 0, up1.stderr)
    assert.equal(JSON.parse(up1.stdout).source, 'store')
    assert.deepEqual(JSON.parse(up1.stdout).urls, [ldap.ldapsUrl])
    assert.equal((await login('bob', PEOPLE.bob)).status, 200, 'sign-in over ldaps')
    // A bad setting is refused with its name; nothing changes.
    const bad = await cli(['user', 'ldap', 'update', '--server-uri', 'http://127.0.0.1:1'], { file: tokenFile('alice') })
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /urls: "http:\/\/127.0.0.1:1" is not ldaps/)

    const off = await cli(['user', 'ldap', 'disable', '--json'], { file: tokenFile('alice') })
    assert.equal(off.code, 0, off.stderr)
    assert.equal(JSON.parse(off.stdout).enabled, false)
    assert.equal((await login('bob', PEOPLE.bob)).status, 401, 'disabled: directory users cannot sign in')
    assert.equal((await login('admin', ADMIN_PW)).status, 200)
    assert.equal((await cli(['user', 'ldap', 'enable'], { file: tokenFile('alice') })).code, 0)
    assert.equal((await login('bob', PEOPLE.bob)).status, 200)

    const reset = await cli(['user', 'ldap', 'reset', '--json'], { file: tokenFile('alice') })
    assert.equal(reset.code, 0, reset.stderr)
    assert.equal(JSON.parse(reset.stdout).source, 'config')
    assert.deepEqual(JSON.parse(reset.stdout).urls, [ldap.ldapUrl])
    assert.equal((await login('bob', PEOPLE.bob)).status, 200, 'StartTLS again, from the configuration')
    // The audit trail names each change, never the password.
    const audits = gh.stdout.filter((l) => l.includes('"ldap.changed"'))
    assert.ok(audits.length >= 4, `audit lines: ${audits.length}`)
  })

  it('gatehouse user ldap setup replaces the settings (reader password from a file), and --help works on every ldap command', async () => {
    for (const c of ['setup', 'setup-ad', 'show', 'update', 'enable', 'disable', 'reset']) {
      const h = await cli(['user', 'ldap', c, '--help'])
      assert.equal(h.code, 0)
      assert.ok(h.stdout.startsWith(`gatehouse user ldap ${c}`), h.stdout.slice(0, 80))
    }
    const pwFile = path.join(dir, 'reader.pw')
    writeFileSync(pwFile, `${ldap.readerPassword}\n`, { mode: 0o600 })
    const r = await cli(['user', 'ldap', 'setup', '--server-uri', ldap.ldapUrl, '--base-dn', `ou=people,${ldap.baseDn}`, '--group-base-dn', `ou=groups,${ldap.baseDn}`,
      '--group-object-class', 'posixGroup', '--group-membership-attribute', 'memberUid', '--reader-username', ldap.readerDn, '--reader-password-file', pwFile,
      '--cluster-admin-group', 'gh-posix-admins', '--json'], { file: tokenFile('alice') })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).membership_attribute, 'memberUid')
    // posixGroup memberUid: alice is an admin through gh-posix-admins; bob is in no configured group now.
    assert.equal((await login('alice', PEOPLE.alice)).status, 200)
    assert.equal((await login('bob', PEOPLE.bob)).status, 403)
    assert.equal((await cli(['user', 'ldap', 'reset'], { file: tokenFile('alice') })).code, 0)
  })

  it('user delete of a directory user revokes its tokens, and the record created at the next sign-in never accepts them again', async () => {
    const old = tokensOf(await login('frank', PEOPLE.frank))
    const a = tokensOf(await login('admin', ADMIN_PW))
    assert.equal((await admin('/api/v2/users/frank', 'DELETE', undefined, a.access)).status, 200)
    assert.equal((await data(old.access)).status, 401)
    const fresh = tokensOf(await login('frank', PEOPLE.frank))
    assert.equal((await data(fresh.access)).status, 200)
    assert.equal((await data(old.access)).status, 401, 'the new record starts at another generation')
    assert.equal((await refresh(old.refresh)).status, 401)
  })

  it('gatehouse config check names every problem of authentication.ldap and exits 2', async () => {
    const bad = path.join(dir, 'bad.yaml')
    writeFileSync(bad, 'authentication:\n  local:\n    enabled: true\n  ldap:\n    enabled: true\n    urls: [http://ldap.example.org]\n    userBaseDn: ou=people,dc=x\n')
    const r = await runCliAsync(['config', 'check', '--config', bad], { HOME: home }, dir)
    assert.equal(r.code, 2, r.stdout + r.stderr)
    const text = r.stdout + r.stderr
    for (const key of ['authentication.ldap.urls', 'authentication.ldap.bindDn', 'authentication.ldap.bindPassword', 'authentication.ldap.groupBaseDn', 'authentication.ldap.roleGroups']) assert.ok(text.includes(key), `${key} in:\n${text}`)
  })

  it('killing slapd: directory sign-ins get 503 ERR_DIRECTORY_UNAVAILABLE, a local user still signs in, /readyz says degraded', async () => {
    const alice = tokensOf(await login('alice', PEOPLE.alice))
    await ldap.stop()
    try {
      const r = await login('alice', PEOPLE.alice)
      assert.equal(r.status, 503)
      assert.equal(JSON.parse(r.body).reason, 'ERR_DIRECTORY_UNAVAILABLE')
      const rr = await refresh(alice.refresh)
      assert.equal(rr.status, 503, 'a refresh cannot be re-checked either')
      assert.equal((await login('admin', ADMIN_PW)).status, 200)
      assert.equal((await data(alice.access, 'POST')).status, 200, 'issued tokens keep working until they expire')
      const ready = await call(`${gh.adminUrl}/readyz`, ca, 'GET')
      assert.equal(ready.status, 200)
      const dirCheck = JSON.parse(ready.body).checks.directory
      assert.equal(dirCheck.status, 'degraded')
      assert.equal(dirCheck.reachable, false)
    } finally {
      await ldap.start()
    }
    // The refresh token was not spent by the outage.
    assert.equal((await refresh(alice.refresh)).status, 200)
  })
})
