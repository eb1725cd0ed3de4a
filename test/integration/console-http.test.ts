/**
 * The web console over real TLS sockets, request by request (no browser): the security headers
 * on every page, the session cookie's attributes, refused cookies (tampered, unknown,
 * duplicated, idle-expired, revoked), the CSRF rule (origin and token), what regular and
 * read-only users cannot do (the status, and that nothing changed), the 404 when the console is
 * off, body limits, the audit trail, and that no password, session id or CSRF token is logged.
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { X509Certificate } from 'node:crypto'
import { peerFingerprint } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'

const ADMIN_PW = 'Http-admin-pass-1'
const ALICE_PW = 'Alice-http-pass-1'
const READER_PW = 'Reader-http-pass-1'
const BOB_PW = 'Bob-http-pass-1'
const CAROL_PW = 'Carol-http-pass-1'

interface Res {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** A request on a fresh TLS connection to `base`; never throws on status. */
function call(base: string, ca: string, method: string, path: string, opts: { headers?: Record<string, string | string[]>; body?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const r = https.request(`${base}${path}`, { method, ca, agent: false, headers: { ...(opts.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(opts.body)) }), ...opts.headers } }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    r.on('error', reject)
    r.end(opts.body)
  })
}

/** The value a Set-Cookie header gives cookie `name`. */
function cookieValue(res: Res, name: string): string | undefined {
  for (const c of res.headers['set-cookie'] ?? []) if (c.startsWith(`${name}=`)) return c.slice(name.length + 1).split(';')[0]
  return undefined
}

function csrfOf(body: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(body)
  assert.ok(m !== null, 'the page has a CSRF field')
  return m[1] as string
}

const form = (o: Record<string, string>): string => new URLSearchParams(o).toString()

/** A signed-in console user: its cookie and CSRF token. */
interface Session {
  cookie: string
  csrf: string
}

describe('the web console over HTTPS, request by request', { timeout: 120_000 }, () => {
  let gh: TestProxy
  let base: string
  let ca: string
  let origin: string
  const secrets = new Set<string>()
  let adminToken: string

  const get = (path: string, s?: Session, headers: Record<string, string> = {}): Promise<Res> => call(base, ca, 'GET', path, { headers: { ...(s === undefined ? {} : { cookie: `__Host-gatehouse-console=${s.cookie}` }), ...headers } })
  /** A same-origin form post as a browser sends it. */
  const post = (path: string, s: Session | undefined, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Res> =>
    call(base, ca, 'POST', path, {
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', origin, ...(s === undefined ? {} : { cookie: `__Host-gatehouse-console=${s.cookie}` }), ...headers },
      body: form(fields),
    })

  async function signIn(user: string, password: string): Promise<Session> {
    const page = await get('/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    const r = await post('/ui/login', undefined, { _csrf: csrfOf(page.body), username: user, password }, { cookie: `__Host-gatehouse-console-login=${login}` })
    assert.equal(r.status, 303, `sign-in of ${user}: ${r.body.slice(0, 300)}`)
    const cookie = cookieValue(r, '__Host-gatehouse-console') as string
    assert.ok(cookie !== undefined && cookie !== '')
    const status = await get('/ui/status', { cookie, csrf: '' })
    assert.equal(status.status, 200)
    const s = { cookie, csrf: csrfOf(status.body) }
    secrets.add(s.cookie)
    secrets.add(s.csrf)
    secrets.add(login)
    return s
  }
  const users = async (): Promise<string[]> => ((await gh.admin('/api/v2/users', { token: adminToken })).json().data as { username: string }[]).map((u) => u.username).sort()
  const api = (path: string, method: string, body?: unknown): ReturnType<TestProxy['admin']> => gh.admin(path, { method, token: adminToken, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })

  before(async () => {
    for (const s of [ADMIN_PW, ALICE_PW, READER_PW, BOB_PW, CAROL_PW]) usedSecrets.add(s)
    gh = await startProxy({ env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, logLevel: 'info' })
    base = gh.adminUrl as string
    ca = gh.ca as string
    origin = new URL(base).origin
    adminToken = (await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN_PW }) })).json().data.access_token
    usedSecrets.add(adminToken)
    for (const [u, role, pw] of [['alice', 'regular', ALICE_PW], ['reader', 'readonly', READER_PW], ['bob', 'regular', BOB_PW], ['carol', 'regular', CAROL_PW]]) {
      assert.equal((await api('/api/v2/users', 'POST', { username: u, password: pw, role })).status, 201)
    }
  })

  after(async () => {
    if (gh === undefined) return
    await gh.stop()
    assertNoSecretsInLogs(gh.logs, secrets)
  })

  it('the session cookie is __Host-gatehouse-console with Secure, HttpOnly, SameSite=Strict, Path=/ and no Domain', async () => {
    const page = await get('/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    const r = await post('/ui/login', undefined, { _csrf: csrfOf(page.body), username: 'alice', password: ALICE_PW }, { cookie: `__Host-gatehouse-console-login=${login}` })
    const set = (r.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-gatehouse-console='))
    assert.ok(set !== undefined)
    secrets.add(cookieValue(r, '__Host-gatehouse-console') as string)
    assert.match(set, /; Path=\/; Secure; HttpOnly; SameSite=Strict/)
    assert.doesNotMatch(set, /domain=/i)
    assert.equal(r.headers.location, '/ui/status')
  })

  it('every page carries the security headers, and no page has inline script or style', async () => {
    const admin = await signIn('admin', ADMIN_PW)
    const alice = await signIn('alice', ALICE_PW)
    const pages: [string, Res][] = [
      ['sign-in', await get('/ui/login')],
      ['status', await get('/ui/status', admin)],
      ['users', await get('/ui/users', admin)],
      ['security', await get('/ui/security', admin)],
      ['account', await get('/ui/account', admin)],
      ['404', await get('/ui/nope', admin)],
      ['403', await get('/ui/users', alice)],
      ['csrf 403', await post('/ui/users', admin, { username: 'x' })],
      ['refused sign-in', await post('/ui/login', undefined, { username: 'a', password: 'b' })],
      ['redirect', await get('/ui/status')],
    ]
    for (const [name, r] of pages) {
      const h = r.headers
      const csp = String(h['content-security-policy'])
      assert.match(csp, /default-src 'none'/, name)
      assert.match(csp, /script-src 'self'/, name)
      assert.match(csp, /style-src 'self'/, name)
      assert.match(csp, /frame-ancestors 'none'/, name)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, name)
      assert.equal(h['x-content-type-options'], 'nosniff', name)
      assert.equal(h['x-frame-options'], 'DENY', name)
      assert.equal(h['referrer-policy'], 'same-origin', name)
      assert.equal(h['cache-control'], 'no-store', name)
      if (r.status !== 303) {
        assert.equal(h['content-type'], 'text/html; charset=utf-8', name)
        assert.doesNotMatch(r.body, /<script(?![^>]*\bsrc="\/ui\/assets\/console\.js")/, `${name}: only the console's script file`)
        assert.doesNotMatch(r.body, /<style|\sstyle=|\son[a-z]+=/i, `${name}: no inline style or event handler`)
      }
    }
    assert.deepEqual(pages.map(([n, r]) => `${n} ${r.status}`), ['sign-in 200', 'status 200', 'users 200', 'security 200', 'account 200', '404 404', '403 403', 'csrf 403 403', 'refused sign-in 403', 'redirect 303'])
    for (const [p, type] of [['/ui/assets/console.css', 'text/css'], ['/ui/assets/console.js', 'text/javascript']]) {
      const r = await get(p as string)
      assert.equal(r.status, 200)
      assert.match(String(r.headers['content-type']), new RegExp(`^${type}`))
      assert.equal(r.headers['x-content-type-options'], 'nosniff')
      const again = await get(p as string, undefined, { 'if-none-match': String(r.headers.etag) })
      assert.equal(again.status, 304)
    }
  })

  it('a tampered, unknown or duplicated cookie is refused: the sign-in page, and a post changes nothing', async () => {
    const s = await signIn('admin', ADMIN_PW)
    const flip = s.cookie.slice(0, -1) + (s.cookie.endsWith('A') ? 'B' : 'A')
    const unknown = randomBytes(32).toString('base64url')
    for (const [name, cookie] of [['tampered', flip], ['unknown', unknown], ['too short', s.cookie.slice(0, 20)], ['with a quote', `${s.cookie}"`]] as const) {
      const r = await get('/ui/users', { cookie, csrf: '' })
      assert.equal(r.status, 303, name)
      assert.equal(r.headers.location, '/ui/login?m=ended', name)
      assert.match((r.headers['set-cookie'] ?? []).join('\n'), /__Host-gatehouse-console=; .*Max-Age=0/, `${name}: the cookie is cleared`)
      const p = await post('/ui/users', { cookie, csrf: s.csrf }, { _csrf: s.csrf, username: `victim-${name.replace(/ /g, '')}`, role: 'admin', password: 'Victim-pass-1' })
      assert.equal(p.status, 303, name)
      assert.equal(p.headers.location, '/ui/login?m=ended')
    }
    // The same cookie twice (one planted next to ours): neither is used.
    const dup = await call(base, ca, 'GET', '/ui/users', { headers: { cookie: `__Host-gatehouse-console=${s.cookie}; __Host-gatehouse-console=${unknown}` } })
    assert.equal(dup.status, 303)
    assert.deepEqual(await users(), ['admin', 'alice', 'bob', 'carol', 'reader'], 'nothing was created')
    // The real cookie still works.
    assert.equal((await get('/ui/users', s)).status, 200)
  })

  it('revoke-tokens and a password change set by an admin end a user’s console sessions at once', async () => {
    const s = await signIn('bob', BOB_PW)
    assert.equal((await get('/ui/account', s)).status, 200)
    assert.equal((await api('/api/v2/users/bob/revoke', 'DELETE')).status, 200)
    const r = await get('/ui/account', s)
    assert.equal(r.status, 303)
    assert.equal(r.headers.location, '/ui/login?m=ended')
    const s2 = await signIn('bob', BOB_PW)
    assert.equal((await api('/api/v2/users/password', 'PUT', { username: 'bob', new_password: `${BOB_PW}x` })).status, 200)
    usedSecrets.add(`${BOB_PW}x`)
    assert.equal((await get('/ui/account', s2)).status, 303)
  })

  it('an admin changes another user’s role: the user’s sessions end, the next sign-in has the new role; one’s own role cannot be changed', async () => {
    const admin = await signIn('admin', ADMIN_PW)
    const carol = await signIn('carol', CAROL_PW)
    assert.equal((await get('/ui/users', carol)).status, 403, 'a regular user does not see the users page')
    const page = await get('/ui/users', admin)
    assert.match(page.body, /<form class="stack" method="post" action="\/ui\/users\/role">/)
    const r = await post('/ui/users/role', admin, { _csrf: admin.csrf, username: 'carol', role: 'readonly' })
    assert.equal(r.status, 303)
    assert.equal(r.headers.location, '/ui/users?m=role-changed')
    assert.equal((await get('/ui/users', carol)).status, 303, 'carol’s session ended with the change')
    const carol2 = await signIn('carol', CAROL_PW)
    assert.equal((await get('/ui/users', carol2)).status, 200, 'readonly reads the users page')
    const listed = (await api('/api/v2/users', 'GET')).json().data as { username: string; role: string }[]
    assert.equal(listed.find((u) => u.username === 'carol')?.role, 'readonly')
    const self = await post('/ui/users/role', admin, { _csrf: admin.csrf, username: 'admin', role: 'regular' })
    assert.equal(self.status, 400)
    assert.match(self.body, /nobody changes their own role/)
    const forged = await post('/ui/users/role', carol2, { _csrf: carol2.csrf, username: 'carol', role: 'admin' })
    assert.equal(forged.status, 403, 'a readonly user cannot raise their own role')
    assert.equal((await api('/api/v2/users/carol', 'PUT', { role: 'regular' })).status, 200)
    assert.equal((await api('/api/v2/users/carol', 'PUT', { role: 'root' })).status, 400)
    assert.equal(((await api('/api/v2/users', 'GET')).json().data as { username: string; role: string }[]).find((u) => u.username === 'carol')?.role, 'regular')
  })

  it('changing your own password ends your other sessions and continues this one on a new cookie', async () => {
    const a = await signIn('carol', CAROL_PW)
    const b = await signIn('carol', CAROL_PW)
    const next = `${CAROL_PW}-new`
    usedSecrets.add(next)
    const r = await post('/ui/account/password', a, { _csrf: a.csrf, old_password: CAROL_PW, new_password: next, confirm_password: next })
    assert.equal(r.status, 303)
    assert.equal(r.headers.location, '/ui/account?m=password')
    const fresh = cookieValue(r, '__Host-gatehouse-console') as string
    secrets.add(fresh)
    assert.ok(fresh !== undefined && fresh !== a.cookie, 'a new session id')
    assert.equal((await get('/ui/account', a)).status, 303, 'the old cookie of this session is refused')
    assert.equal((await get('/ui/account', b)).status, 303, 'the other session ended')
    assert.equal((await get('/ui/account', { cookie: fresh, csrf: '' })).status, 200, 'the new one works')
    const audit = gh.logs.filter((l) => l.includes('"audit":true') && l.includes('"event":"password.changed"') && l.includes('"target":"carol"'))
    assert.equal(audit.length, 1)
    assert.match(audit[0] as string, /"actor":"carol".*"outcome":"success"/)
  })

  it('CSRF: a post without the token, with a wrong token, or from another origin gets 403 and changes nothing', async () => {
    const s = await signIn('admin', ADMIN_PW)
    const fields = { username: 'csrf-victim', role: 'admin', password: 'Csrf-victim-1' }
    const tries: [string, Promise<Res>][] = [
      ['no token', post('/ui/users', s, fields)],
      ['empty token', post('/ui/users', s, { ...fields, _csrf: '' })],
      ['wrong token', post('/ui/users', s, { ...fields, _csrf: randomBytes(32).toString('base64url') })],
      ['another session’s token', signIn('alice', ALICE_PW).then((o) => post('/ui/users', s, { ...fields, _csrf: o.csrf }))],
      ['cross-site', post('/ui/users', s, { ...fields, _csrf: s.csrf }, { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' })],
      ['same-site sibling', post('/ui/users', s, { ...fields, _csrf: s.csrf }, { 'sec-fetch-site': 'same-site', origin: 'https://other.127.0.0.1.nip.io' })],
      ['foreign Origin only', call(base, ca, 'POST', '/ui/users', { headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', cookie: `__Host-gatehouse-console=${s.cookie}` }, body: form({ ...fields, _csrf: s.csrf }) })],
      ['Origin null without Sec-Fetch-Site', call(base, ca, 'POST', '/ui/users', { headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'null', cookie: `__Host-gatehouse-console=${s.cookie}` }, body: form({ ...fields, _csrf: s.csrf }) })],
      ['no Origin, no Sec-Fetch-Site', call(base, ca, 'POST', '/ui/users', { headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `__Host-gatehouse-console=${s.cookie}` }, body: form({ ...fields, _csrf: s.csrf }) })],
    ]
    for (const [name, p] of tries) {
      const r = await p
      assert.equal(r.status, 403, name)
      assert.match(r.body, /Request refused/, name)
    }
    assert.deepEqual(await users(), ['admin', 'alice', 'bob', 'carol', 'reader'], 'no user was created')
    // Sign-out is a post too.
    assert.equal((await post('/ui/logout', s, {})).status, 403)
    assert.equal((await get('/ui/status', s)).status, 200, 'still signed in')
    // The same post, done right, works (so the refusals above are the check's doing).
    const ok = await post('/ui/users', s, { ...fields, _csrf: s.csrf })
    assert.equal(ok.status, 303)
    assert.equal(ok.headers.location, '/ui/users?m=user-added')
    assert.ok((await users()).includes('csrf-victim'))
    assert.equal((await api('/api/v2/users/csrf-victim', 'DELETE')).status, 200)
    const out = await post('/ui/logout', s, { _csrf: s.csrf })
    assert.equal(out.headers.location, '/ui/login?m=signedout')
    assert.equal((await get('/ui/status', s)).status, 303, 'signed out')
  })

  it('the sign-in form is CSRF-protected too (its token is double-submitted with a pre-sign-in cookie)', async () => {
    const page = await get('/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    secrets.add(login)
    const noCookie = await post('/ui/login', undefined, { _csrf: csrfOf(page.body), username: 'alice', password: ALICE_PW })
    assert.equal(noCookie.status, 403)
    assert.equal(cookieValue(noCookie, '__Host-gatehouse-console'), undefined, 'no session')
    const crossSite = await post('/ui/login', undefined, { _csrf: login, username: 'alice', password: ALICE_PW }, { cookie: `__Host-gatehouse-console-login=${login}`, 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' })
    assert.equal(crossSite.status, 403)
    assert.equal(cookieValue(crossSite, '__Host-gatehouse-console'), undefined, 'no session')
  })

  it('a wrong password gets the API’s answer, Invalid username or password (401)', async () => {
    const page = await get('/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    const r = await post('/ui/login', undefined, { _csrf: csrfOf(page.body), username: 'nobody-here', password: 'Whatever-1' }, { cookie: `__Host-gatehouse-console-login=${login}` })
    assert.equal(r.status, 401)
    assert.match(r.body, /Invalid username or password/)
    assert.match(r.body, /value="nobody-here"/, 'the name stays in the field')
    assert.ok(gh.logs.some((l) => l.includes('"event":"login"') && l.includes('"outcome":"failure"') && l.includes('"target":"nobody-here"')), 'audited like the API')
  })

  it('a regular user cannot reach admin pages or actions: 403, and nothing changed', async () => {
    const s = await signIn('alice', ALICE_PW)
    for (const p of ['/ui/users', '/ui/security']) assert.equal((await get(p, s)).status, 403, p)
    const bannerBefore = (await gh.admin('/api/v2/security/banner')).json().data
    const actions: [string, Record<string, string>][] = [
      ['/ui/users', { username: 'sneaky', role: 'admin', password: 'Sneaky-pass-1' }],
      ['/ui/users/bob/delete', {}],
      ['/ui/users/reader/revoke', {}],
      ['/ui/users/password', { username: 'admin', new_password: 'Taken-over-1' }],
      ['/ui/security/banner', { text: 'owned', enabled: 'on' }],
      ['/ui/security/lockout', { failed_attempts: '50', lockout_duration: '30s' }],
      ['/ui/security/lockout/reset', {}],
      ['/ui/security/ca/unset', {}],
    ]
    for (const [p, f] of actions) {
      const r = await post(p, s, { ...f, _csrf: s.csrf })
      assert.equal(r.status, 403, p)
      assert.match(r.body, /Only a user with the admin role can do this/, p)
    }
    assert.deepEqual(await users(), ['admin', 'alice', 'bob', 'carol', 'reader'])
    assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, bannerBefore)
    assert.deepEqual((await api('/api/v2/lockoutPolicy', 'GET')).json().data, { failed_attempts: 5, lockout_duration: 120 })
    // The admin's password is unchanged: the API login still works with it.
    assert.equal((await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN_PW }) })).status, 200)
    assert.ok(gh.logs.some((l) => l.includes('"event":"user.created"') && l.includes('"actor":"alice"') && l.includes('"reason":"ERR_FORBIDDEN"')), 'the refusal is audited like the API’s')
    // Her own account works.
    assert.equal((await get('/ui/account', s)).status, 200)
  })

  it('a read-only user reads users and security settings without forms, and cannot change them', async () => {
    const s = await signIn('reader', READER_PW)
    const u = await get('/ui/users', s)
    assert.equal(u.status, 200)
    assert.match(u.body, /read-only access/)
    assert.match(u.body, /data-user="bob"/)
    assert.doesNotMatch(u.body, /action="\/ui\/users/, 'no user forms')
    const sec = await get('/ui/security', s)
    assert.equal(sec.status, 200)
    assert.doesNotMatch(sec.body, /action="\/ui\/security/, 'no security forms')
    const bobToken = (await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'bob', password: `${BOB_PW}x` }) })).json().data.access_token
    usedSecrets.add(bobToken)
    assert.equal((await post('/ui/users/bob/revoke', s, { _csrf: s.csrf })).status, 403)
    assert.equal((await gh.admin('/api/v2/users/whoami', { token: bobToken })).status, 200, 'bob’s token still works')
    assert.equal((await post('/ui/security/lockout', s, { _csrf: s.csrf, failed_attempts: '2', lockout_duration: '60m' })).status, 403)
    assert.deepEqual((await api('/api/v2/lockoutPolicy', 'GET')).json().data, { failed_attempts: 5, lockout_duration: 120 })
  })

  it('admin actions write the same audit lines as their API twins', async () => {
    const s = await signIn('admin', ADMIN_PW)
    const r = await post('/ui/users', s, { _csrf: s.csrf, username: 'dave', role: 'readonly', password: 'Dave-pass-123' })
    usedSecrets.add('Dave-pass-123')
    assert.equal(r.status, 303)
    const created = gh.logs.filter((l) => l.includes('"event":"user.created"') && l.includes('"target":"dave"'))
    assert.equal(created.length, 1)
    assert.match(created[0] as string, /"actor":"admin".*"outcome":"success".*"role":"readonly"/)
    assert.equal((await post('/ui/security/banner', s, { _csrf: s.csrf, text: 'Hello', enabled: 'on' })).status, 303)
    assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, { text: 'Hello', enabled: true })
    assert.ok(gh.logs.some((l) => l.includes('"event":"banner.changed"') && l.includes('"actor":"admin"')))
    assert.equal((await post('/ui/users/dave/delete', s, { _csrf: s.csrf })).status, 303)
    assert.ok(gh.logs.some((l) => l.includes('"event":"user.deleted"') && l.includes('"target":"dave"') && l.includes('"outcome":"success"')))
    // A refused TLS upload says why and keeps the certificate.
    const bad = await post('/ui/security/tls', s, { _csrf: s.csrf, certificate: 'not a pem', private_key: 'nor this' })
    assert.equal(bad.status, 400)
    assert.match(bad.body, /The current certificate stays in use/)
    assert.ok(gh.logs.some((l) => l.includes('"event":"tls.changed"') && l.includes('"outcome":"failure"')))
  })

  it('only urlencoded forms, at most 64 KiB', async () => {
    const s = await signIn('admin', ADMIN_PW)
    const json = await call(base, ca, 'POST', '/ui/users', { headers: { 'content-type': 'application/json', 'sec-fetch-site': 'same-origin', cookie: `__Host-gatehouse-console=${s.cookie}` }, body: JSON.stringify({ _csrf: s.csrf, username: 'j' }) })
    assert.equal(json.status, 415)
    const big = await post('/ui/security/ca', s, { _csrf: s.csrf, certificate: 'x'.repeat(70 * 1024) })
    assert.equal(big.status, 413)
  })
})

describe('certificates through the console', { timeout: 60_000 }, () => {
  let gh: TestProxy
  after(async () => {
    await gh?.stop()
  })

  it('an uploaded certificate is what both listeners present next (the checks of security tls set); a key that does not match changes nothing; the CA certificate is set', async () => {
    gh = await startProxy({ env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW }, logLevel: 'info' })
    const base = gh.adminUrl as string
    const ca = gh.ca as string
    const page = await call(base, ca, 'GET', '/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    const signed = await call(base, ca, 'POST', '/ui/login', { headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', cookie: `__Host-gatehouse-console-login=${login}` }, body: form({ _csrf: login, username: 'admin', password: ADMIN_PW }) })
    const cookie = `__Host-gatehouse-console=${cookieValue(signed, '__Host-gatehouse-console') as string}`
    const csrf = csrfOf((await call(base, ca, 'GET', '/ui/security', { headers: { cookie } })).body)
    const send = (trust: string, path: string, fields: Record<string, string>): Promise<Res> => call(base, trust, 'POST', path, { headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', cookie }, body: form({ _csrf: csrf, ...fields }) })
    const before = await peerFingerprint(base)
    const next = generateSelfSignedCertificate({ commonName: 'gatehouse console upload' })
    const other = generateSelfSignedCertificate({ commonName: 'gatehouse other' })

    const mismatch = await send(ca, '/ui/security/tls', { certificate: next.certPem, private_key: other.keyPem })
    assert.equal(mismatch.status, 400)
    assert.match(mismatch.body, /The current certificate stays in use/)
    assert.equal(await peerFingerprint(base), before, 'nothing changed')

    const ok = await send(ca, '/ui/security/tls', { certificate: next.certPem, private_key: next.keyPem })
    assert.equal(ok.status, 303)
    assert.equal(ok.headers.location, '/ui/security?m=tls')
    const fp = new X509Certificate(next.certPem).fingerprint256
    assert.equal(await peerFingerprint(base), fp, 'the admin listener presents the new certificate')
    assert.equal(await peerFingerprint(gh.url), fp, 'the data listener too')
    // From here on the client trusts the new certificate.
    const sec = await call(base, next.certPem, 'GET', '/ui/security?m=tls', { headers: { cookie } })
    assert.match(sec.body, /The certificate was installed/)
    assert.match(sec.body, /uploaded through the console or the API/)
    assert.doesNotMatch(sec.body, /PRIVATE KEY-----[A-Za-z0-9+/]/, 'the key is never shown')

    const setCa = await send(next.certPem, '/ui/security/ca', { certificate: other.certPem })
    assert.equal(setCa.status, 303)
    const status = await call(base, next.certPem, 'GET', '/ui/security', { headers: { cookie } })
    assert.match(status.body, /CN=gatehouse other/)
    assert.ok(gh.logs.some((l) => l.includes('"event":"tls.changed"') && l.includes('"outcome":"success"') && l.includes('"change":"set"')))
    assert.ok(gh.logs.some((l) => l.includes('"event":"ca_cert.changed"') && l.includes('"outcome":"success"')))
    assert.ok(!gh.logs.some((l) => l.includes('PRIVATE KEY')), 'no key in the logs')
  })
})

describe('the console when it is off, and its idle timeout', { timeout: 60_000 }, () => {
  const started: TestProxy[] = []
  after(async () => {
    for (const p of started) await p.stop()
  })

  it('console.enabled false, or local users off: /ui answers a JSON 404 that says what to enable; the API is unchanged', async () => {
    const off = await startProxy({ env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_CONSOLE_ENABLED: 'false', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW } })
    started.push(off)
    const r = await off.admin('/ui/login')
    assert.equal(r.status, 404)
    assert.equal(r.headers['content-type'], 'application/json')
    assert.match(r.json().message, /console\.enabled/)
    assert.equal((await off.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN_PW }) })).status, 200)
    const noLocal = await startProxy({ env: {} })
    started.push(noLocal)
    const r2 = await noLocal.admin('/ui')
    assert.equal(r2.status, 404)
    assert.match(r2.json().message, /authentication\.local\.enabled/)
    assert.equal((await noLocal.admin('/healthz')).status, 200)
  })

  it('an idle-expired session is refused with the "expired" notice', async () => {
    const gh = await startProxy({ env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, GATEHOUSE_CONSOLE_IDLE_TIMEOUT: '1s' }, logLevel: 'info' })
    started.push(gh)
    const base = gh.adminUrl as string
    const ca = gh.ca as string
    const page = await call(base, ca, 'GET', '/ui/login')
    const login = cookieValue(page, '__Host-gatehouse-console-login') as string
    const r = await call(base, ca, 'POST', '/ui/login', { headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin', cookie: `__Host-gatehouse-console-login=${login}` }, body: form({ _csrf: login, username: 'admin', password: ADMIN_PW }) })
    const cookie = cookieValue(r, '__Host-gatehouse-console') as string
    assert.equal((await call(base, ca, 'GET', '/ui/status', { headers: { cookie: `__Host-gatehouse-console=${cookie}` } })).status, 200)
    await sleep(1300)
    const late = await call(base, ca, 'GET', '/ui/status', { headers: { cookie: `__Host-gatehouse-console=${cookie}` } })
    assert.equal(late.status, 303)
    assert.equal(late.headers.location, '/ui/login?m=expired')
    const notice = await call(base, ca, 'GET', '/ui/login?m=expired')
    assert.match(notice.body, /Your session expired, sign in again/)
    // The flag maps to fixed text: anything else in it is never shown.
    const reflected = await call(base, ca, 'GET', '/ui/login?m=%3Cscript%3Ealert(1)%3C%2Fscript%3E')
    assert.doesNotMatch(reflected.body, /alert\(1\)/)
    assertNoSecretsInLogs(gh.logs, [cookie, login])
  })
})
