/**
 * The admin CLI's HTTP client without a gatehouse: trust, host and token-file resolution, the
 * token file's atomic 0600 write, the JWT-exp refresh check, error lines without secrets, and
 * refresh/retry against a small fake admin API over real HTTPS (self-signed certificate).
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  AdminClient,
  AdminError,
  DEFAULT_HOST,
  describeConnectError,
  jwtExp,
  needsRefresh,
  readTokenFile,
  redactSecrets,
  registerSecret,
  resolveHost,
  resolveTokenFile,
  resolveTrust,
  writeTokenFile,
} from '../../src/cli/adminClient.ts'
import { UsageError } from '../../src/cli/adminClient.ts'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'

let TMP: string
before(() => {
  TMP = mkdtempSync(path.join(tmpdir(), 'gh-admin-client-'))
})
after(() => rmSync(TMP, { recursive: true, force: true }))

/** An unsigned JWT-shaped token with the given claims (the client never verifies). */
function jwt(claims: Record<string, unknown>): string {
  const b = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${b({ alg: 'ES256', typ: 'JWT' })}.${b(claims)}.${Buffer.from(`sig-${Math.random()}`).toString('base64url')}`
}
const nowS = (): number => Math.floor(Date.now() / 1000)

describe('resolveHost', () => {
  it('takes --host, else GATEHOUSE_HOST, else the default', () => {
    assert.equal(resolveHost(undefined, {}).href, `${DEFAULT_HOST}/`)
    assert.equal(resolveHost(undefined, { GATEHOUSE_HOST: 'https://gh.example:9000' }).origin, 'https://gh.example:9000')
    assert.equal(resolveHost('https://flag.example:1', { GATEHOUSE_HOST: 'https://gh.example:9000' }).origin, 'https://flag.example:1')
  })
  it('reads a bare host:port as https and refuses other schemes', () => {
    assert.equal(resolveHost('gh.example:14000', {}).origin, 'https://gh.example:14000')
    assert.throws(() => resolveHost('ftp://x', {}), UsageError)
    assert.throws(() => resolveHost('https://u:p@x', {}), UsageError)
  })
})

describe('resolveTrust', () => {
  let stateDir: string
  let caFile: string
  let envCa: string
  before(() => {
    stateDir = path.join(TMP, 'state')
    mkdirSync(path.join(stateDir, 'tls'), { recursive: true })
    writeFileSync(path.join(stateDir, 'tls', 'self-signed.crt'), generateSelfSignedCertificate().certPem)
    caFile = path.join(TMP, 'flag-ca.pem')
    envCa = path.join(TMP, 'env-ca.pem')
    writeFileSync(caFile, generateSelfSignedCertificate().certPem)
    writeFileSync(envCa, generateSelfSignedCertificate().certPem)
  })
  it('prefers --ca, then GATEHOUSE_CA_FILE, then the state directory, then the system CAs', () => {
    const env = { GATEHOUSE_CA_FILE: envCa, GATEHOUSE_STATE_DIR: stateDir }
    assert.deepEqual(resolveTrust(caFile, env), { source: 'flag', file: caFile })
    assert.deepEqual(resolveTrust(undefined, env), { source: 'env', file: envCa })
    assert.deepEqual(resolveTrust(undefined, { GATEHOUSE_STATE_DIR: stateDir }), { source: 'state-dir', file: path.join(stateDir, 'tls', 'self-signed.crt') })
    assert.deepEqual(resolveTrust(undefined, {}), { source: 'system', file: undefined })
  })
  it('falls back to the system CAs when the state directory has no certificate', () => {
    assert.deepEqual(resolveTrust(undefined, { GATEHOUSE_STATE_DIR: path.join(TMP, 'no-such-state') }), { source: 'system', file: undefined })
  })
  it('never falls back silently from an explicit CA file that cannot be read', () => {
    assert.throws(() => resolveTrust(path.join(TMP, 'missing.pem'), { GATEHOUSE_STATE_DIR: stateDir }), (e: unknown) => e instanceof AdminError && /cannot read the CA file .*missing\.pem given by --ca/.test(e.message))
    assert.throws(() => resolveTrust(undefined, { GATEHOUSE_CA_FILE: path.join(TMP, 'missing.pem') }), /GATEHOUSE_CA_FILE/)
  })
})

describe('resolveTokenFile', () => {
  it('takes --path, else GATEHOUSE_TOKEN_FILE, else ~/.gatehouse/auth-token.json', () => {
    const home = path.join(TMP, 'home')
    assert.equal(resolveTokenFile(undefined, {}, home), path.join(home, '.gatehouse', 'auth-token.json'))
    assert.equal(resolveTokenFile(undefined, { GATEHOUSE_TOKEN_FILE: '/x/env.json' }, home), '/x/env.json')
    assert.equal(resolveTokenFile('/x/flag.json', { GATEHOUSE_TOKEN_FILE: '/x/env.json' }, home), '/x/flag.json')
    assert.equal(resolveTokenFile('rel.json', {}, home), path.resolve('rel.json'))
  })
})

describe('the token file', () => {
  it('is written atomically with mode 0600 in a 0700 directory, with Weka’s three keys', () => {
    const home = path.join(TMP, 'home-write')
    const file = resolveTokenFile(undefined, {}, home)
    writeTokenFile(file, { access_token: 'a.b.c', refresh_token: 'r-1', token_type: 'Bearer' }, home)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700)
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { access_token: 'a.b.c', refresh_token: 'r-1', token_type: 'Bearer' })
    assert.deepEqual(readdirSync(path.dirname(file)), ['auth-token.json'], 'no temporary file left behind')
  })
  it('replaces a file that was readable by others with a 0600 one, and tightens ~/.gatehouse', () => {
    const home = path.join(TMP, 'home-loose')
    const file = resolveTokenFile(undefined, {}, home)
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 })
    writeFileSync(file, '{}', { mode: 0o644 })
    writeTokenFile(file, { access_token: 'x.y.z', refresh_token: 'r-2', token_type: 'Bearer' }, home)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700)
    assert.equal(readTokenFile(file)?.refresh_token, 'r-2')
  })
  it('reports a missing, broken or empty file clearly', () => {
    assert.equal(readTokenFile(path.join(TMP, 'none.json')), undefined)
    const bad = path.join(TMP, 'bad.json')
    writeFileSync(bad, 'not json')
    assert.throws(() => readTokenFile(bad), /not valid JSON; run gatehouse user login/)
    writeFileSync(bad, '{"refresh_token":"x"}')
    assert.throws(() => readTokenFile(bad), /has no access_token/)
    const c = new AdminClient({ host: 'http://127.0.0.1:1', path: path.join(TMP, 'none.json'), env: {} })
    assert.throws(() => c.loadTokens(), /^AdminError: not logged in; run gatehouse user login --path /)
    void c.close()
  })
})

describe('the refresh check', () => {
  it('reads exp from the JWT payload without verifying it', () => {
    assert.equal(jwtExp(jwt({ exp: 1234 })), 1234)
    assert.equal(jwtExp(jwt({ sub: 'x' })), undefined)
    assert.equal(jwtExp('not-a-jwt'), undefined)
    assert.equal(jwtExp('a.%%%.c'), undefined)
  })
  it('refreshes within 10 s of expiry, not before', () => {
    const now = Date.now()
    assert.equal(needsRefresh(jwt({ exp: Math.floor(now / 1000) - 1 }), now), true, 'expired')
    assert.equal(needsRefresh(jwt({ exp: Math.floor(now / 1000) + 5 }), now), true, 'expires in 5 s')
    assert.equal(needsRefresh(jwt({ exp: Math.floor(now / 1000) + 10 }), now), true, 'expires in 10 s')
    assert.equal(needsRefresh(jwt({ exp: Math.floor(now / 1000) + 60 }), now), false, 'expires in a minute')
    assert.equal(needsRefresh(jwt({}), now), false, 'no exp: never refreshed proactively')
    assert.equal(needsRefresh('opaque-token', now), false)
  })
})

describe('error lines', () => {
  it('never contain a registered token or password', () => {
    const token = jwt({ sub: 'secret-user', exp: 1 })
    registerSecret(token)
    registerSecret('Hunter2!pass')
    const e = new AdminError(`server said: bad token ${token} and password Hunter2!pass`)
    assert.ok(!e.message.includes(token))
    assert.ok(!e.message.includes('Hunter2!pass'))
    assert.match(e.message, /bad token <redacted> and password <redacted>/)
    assert.equal(redactSecrets('nothing here'), 'nothing here')
  })
  it('say what to do on TLS and connection failures', () => {
    const base = new URL('https://localhost:14000')
    const sys = { source: 'system', file: undefined } as const
    const tlsErr = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
    assert.match(describeConnectError(tlsErr, base, sys), /^cannot verify the server certificate of https:\/\/localhost:14000 .*; pass --ca FILE or set GATEHOUSE_STATE_DIR$/)
    const wrapped = Object.assign(new Error('fetch failed'), { code: 'UND_ERR_SOCKET', cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) })
    assert.match(describeConnectError(wrapped, base, sys), /cannot connect to https:\/\/localhost:14000 \(connection refused\); is gatehouse serve running\?/)
    assert.match(describeConnectError(Object.assign(new Error('x'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), base, sys), /does not cover the name localhost/)
  })
})

// ---------------------------------------------------------------------------------------------
// Against a fake admin API over HTTPS.

interface Fake {
  url: string
  caFile: string
  calls: { method: string; path: string; auth: string | undefined; body: string }[]
  /** Access tokens the fake accepts; refresh tokens it accepts once. */
  access: Set<string>
  refresh: Set<string>
  close(): Promise<void>
}

async function startFake(): Promise<Fake> {
  const { certPem, keyPem } = generateSelfSignedCertificate()
  const caFile = path.join(TMP, `fake-${Math.random()}.crt`)
  writeFileSync(caFile, certPem)
  const calls: Fake['calls'] = []
  const access = new Set<string>()
  const refresh = new Set<string>()
  const server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString('utf8')))
    req.on('end', () => {
      const auth = req.headers.authorization?.replace(/^Bearer /, '')
      calls.push({ method: req.method ?? '', path: req.url ?? '', auth, body })
      const send = (status: number, j: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(j))
      }
      if (req.url === '/api/v2/login/refresh') {
        const rt = (JSON.parse(body) as { refresh_token: string }).refresh_token
        if (!refresh.delete(rt)) return send(401, { code: 401, message: 'invalid refresh token', reason: 'ERR_INVALID_REFRESH_TOKEN' })
        const a = jwt({ sub: 'admin', exp: nowS() + 300 })
        const r = `refresh-${Math.random()}`
        access.add(a)
        refresh.add(r)
        // Weka's documented example wraps data in a one-element array; accept both shapes.
        return send(200, { data: [{ access_token: a, token_type: 'Bearer', expires_in: 300, refresh_token: r }] })
      }
      if (req.url === '/api/v2/users/password') return send(401, { code: 401, message: 'Invalid username or password', reason: 'ERR_LOGIN_FAILED' })
      if (req.url === '/api/v2/echo-token') return send(400, { code: 400, message: `your token ${auth ?? ''} is odd`, reason: 'ERR_BAD_REQUEST' })
      if (auth === undefined || !access.has(auth)) return send(401, { code: 401, message: 'unauthorized: invalid token', reason: 'ERR_INVALID_TOKEN' })
      return send(200, { data: { username: 'admin', role: 'admin' } })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return { url: `https://127.0.0.1:${port}`, caFile, calls, access, refresh, close: () => new Promise<void>((r) => server.close(() => r())) }
}

describe('AdminClient against a fake admin API', () => {
  let fake: Fake
  before(async () => {
    fake = await startFake()
  })
  after(() => fake.close())

  function client(file: string, env: Record<string, string> = {}): AdminClient {
    return new AdminClient({ host: fake.url, path: file, env: { GATEHOUSE_CA_FILE: fake.caFile, ...env }, home: TMP })
  }

  it('refreshes an access token that is about to expire before the call, and rewrites the file 0600', async () => {
    const file = path.join(TMP, 'tok-exp.json')
    fake.refresh.add('rt-exp')
    writeTokenFile(file, { access_token: jwt({ sub: 'admin', exp: nowS() + 3 }), refresh_token: 'rt-exp', token_type: 'Bearer' })
    fake.calls.length = 0
    const c = client(file)
    try {
      assert.deepEqual(await c.call('GET', '/api/v2/users/whoami'), { username: 'admin', role: 'admin' })
    } finally {
      await c.close()
    }
    assert.deepEqual(fake.calls.map((x) => x.path), ['/api/v2/login/refresh', '/api/v2/users/whoami'])
    const t = readTokenFile(file)
    assert.ok(t !== undefined && fake.access.has(t.access_token) && t.refresh_token !== 'rt-exp')
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.ok(!existsSync(`${file}.lock`), 'the refresh lock is released')
  })

  it('two processes refreshing at once present the refresh token only once (reuse would revoke the family)', async () => {
    const file = path.join(TMP, 'tok-race.json')
    fake.refresh.add('rt-race')
    writeTokenFile(file, { access_token: jwt({ sub: 'admin', exp: nowS() - 1 }), refresh_token: 'rt-race', token_type: 'Bearer' })
    fake.calls.length = 0
    const a = client(file)
    const b = client(file)
    try {
      const got = await Promise.all([a.call('GET', '/api/v2/users/whoami'), b.call('GET', '/api/v2/users/whoami')])
      assert.deepEqual(got, [{ username: 'admin', role: 'admin' }, { username: 'admin', role: 'admin' }])
    } finally {
      await a.close()
      await b.close()
    }
    assert.equal(fake.calls.filter((x) => x.path === '/api/v2/login/refresh').length, 1)
  })

  it('refreshes once and retries after a 401, and not again', async () => {
    const file = path.join(TMP, 'tok-401.json')
    fake.refresh.add('rt-401')
    writeTokenFile(file, { access_token: jwt({ sub: 'admin', exp: nowS() + 3600 }), refresh_token: 'rt-401', token_type: 'Bearer' })
    fake.calls.length = 0
    const c = client(file)
    try {
      assert.deepEqual(await c.call('GET', '/api/v2/users/whoami'), { username: 'admin', role: 'admin' })
    } finally {
      await c.close()
    }
    assert.deepEqual(fake.calls.map((x) => x.path), ['/api/v2/users/whoami', '/api/v2/login/refresh', '/api/v2/users/whoami'])
  })

  it('says to log in again when the refresh token is refused', async () => {
    const file = path.join(TMP, 'tok-dead.json')
    const access = jwt({ sub: 'admin', exp: nowS() - 100 })
    writeTokenFile(file, { access_token: access, refresh_token: 'rt-revoked', token_type: 'Bearer' })
    const c = client(file)
    try {
      await assert.rejects(c.call('GET', '/api/v2/users/whoami'), (e: unknown) => {
        assert.ok(e instanceof AdminError)
        assert.match(e.message, /the session has expired or was revoked \(ERR_INVALID_REFRESH_TOKEN\); run gatehouse user login/)
        assert.ok(!e.message.includes(access) && !e.message.includes('rt-revoked'))
        return true
      })
    } finally {
      await c.close()
    }
  })

  it('does not retry a wrong password (it would count twice towards the lockout)', async () => {
    const file = path.join(TMP, 'tok-pw.json')
    const access = jwt({ sub: 'admin', exp: nowS() + 3600 })
    fake.access.add(access)
    fake.refresh.add('rt-pw')
    writeTokenFile(file, { access_token: access, refresh_token: 'rt-pw', token_type: 'Bearer' })
    fake.calls.length = 0
    const c = client(file)
    try {
      await assert.rejects(c.call('PUT', '/api/v2/users/password', { body: { old_password: 'Wrong-pass1', new_password: 'New-pass1' } }), /^AdminError: Invalid username or password \(ERR_LOGIN_FAILED\)$/)
    } finally {
      await c.close()
    }
    assert.equal(fake.calls.length, 1)
  })

  it('prints the server’s message and reason on one line, without the token even if the server echoes it', async () => {
    const file = path.join(TMP, 'tok-echo.json')
    const access = jwt({ sub: 'admin', exp: nowS() + 3600 })
    writeTokenFile(file, { access_token: access, token_type: 'Bearer' })
    const c = client(file)
    try {
      await assert.rejects(c.call('GET', '/api/v2/echo-token'), (e: unknown) => {
        assert.ok(e instanceof AdminError)
        assert.equal(e.message, 'your token <redacted> is odd (ERR_BAD_REQUEST)')
        assert.equal(e.status, 400)
        return true
      })
    } finally {
      await c.close()
    }
  })

  it('verifies the certificate: without the CA the call fails with a line that says what to do', async () => {
    const file = path.join(TMP, 'tok-ca.json')
    writeTokenFile(file, { access_token: jwt({ exp: nowS() + 3600 }), token_type: 'Bearer' })
    const c = new AdminClient({ host: fake.url, path: file, env: {}, home: TMP })
    assert.equal(c.trust.source, 'system')
    try {
      await assert.rejects(c.call('GET', '/api/v2/users/whoami'), (e: unknown) => {
        assert.ok(e instanceof AdminError)
        assert.match(e.message, new RegExp(`^cannot verify the server certificate of ${fake.url.replace(/[.]/g, '\\.')} .*; pass --ca FILE or set GATEHOUSE_STATE_DIR$`))
        return true
      })
    } finally {
      await c.close()
    }
  })
})
