/**
 * Admin API input (issue 13): malformed bodies are 400 (not 401), an over-long password is 400
 * before any counting or hashing, non-JSON bodies are 415 on every route with a body (what a
 * cross-site form can send), and a dribbled body is cut by the whole-body deadline (408).
 * In-process gatehouse on real sockets; the recording upstream must see nothing of any of it.
 */
import assert from 'node:assert/strict'
import * as tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_PW = 'Adm1n-input-pw'
const json = (o: unknown): string => JSON.stringify(o)

describe('admin API input', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  let admin: string

  // failedAttempts 2 and a login throttle of 2: a single counted attempt would show.
  before(async () => {
    usedSecrets.add(ADMIN_PW)
    up = await startUpstream()
    gh = await startProxy({
      env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW },
      yaml: 'admin:\n  bodyTimeout: 2s\nauthentication:\n  local:\n    lockout:\n      failedAttempts: 2\n    loginThrottle:\n      maxFailures: 2\n',
    })
    const r = await login({ username: 'admin', password: ADMIN_PW })
    assert.equal(r.status, 200, r.text)
    admin = r.json().data.access_token
    usedSecrets.add(admin).add(r.json().data.refresh_token)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assert.equal(up.requests.length, 0, 'the upstream saw nothing of the admin API')
    assertNoSecretsInLogs(gh.logs)
  })

  const login = (body: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
    gh.admin('/api/v2/login', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : json(body) })

  /** The lockout and the login throttle are untouched when the right password still logs in. */
  async function stillUncounted(): Promise<void> {
    const r = await login({ username: 'admin', password: ADMIN_PW })
    assert.equal(r.status, 200, `a counted attempt would have locked admin or blocked the address: ${r.text}`)
    usedSecrets.add(r.json().data.access_token).add(r.json().data.refresh_token)
  }

  describe('malformed login bodies are 400 ERR_BAD_REQUEST, not 401', () => {
    const cases: [string, string, RegExp][] = [
      ['an empty body', '', /username is required/],
      ['an empty object', '{}', /username is required/],
      ['no password', json({ username: 'admin' }), /password is required/],
      ['no username', json({ password: 'Whatever-1' }), /username is required/],
      ['a numeric username', json({ username: 1, password: 'Whatever-1' }), /username is required and must be a non-empty string/],
      ['a numeric password', json({ username: 'admin', password: 12345678 }), /password is required and must be a non-empty string/],
      ['an object password', json({ username: 'admin', password: { $ne: '' } }), /password is required/],
      ['an empty password', json({ username: 'admin', password: '' }), /password is required/],
      ['a non-string org', json({ username: 'admin', password: 'Whatever-1', org: 5 }), /org must be a string/],
      ['not JSON', '{"username": "admin", ', /not valid JSON/],
      ['a JSON array', json(['admin', 'Whatever-1']), /must be a JSON object/],
      ['a JSON string', json('admin'), /must be a JSON object/],
    ]
    for (const [name, body, message] of cases) {
      it(name, async () => {
        const r = await login(body)
        assert.equal(r.status, 400, r.text)
        assert.equal(r.json().reason, 'ERR_BAD_REQUEST')
        assert.match(r.json().message, message)
        assert.equal(r.headers['www-authenticate'], undefined, 'a 400 is not an authentication challenge')
      })
    }
    it('none of them counted as a failed login', stillUncounted)
  })

  it('a password over the cap is 400 before any hashing: the lockout (2) and the address throttle (2) are not touched', async () => {
    const long = `Aa1-${'x'.repeat(200)}`
    for (let i = 0; i < 4; i++) {
      const r = await login({ username: 'admin', password: long })
      assert.equal(r.status, 400, r.text)
      assert.equal(r.json().reason, 'ERR_BAD_REQUEST')
      assert.match(r.json().message, /longer than 128 characters/)
    }
    // Exactly at the cap is an ordinary (wrong) password: 401, and it counts.
    const atCap = await login({ username: 'nobody-at-cap', password: `Aa1-${'x'.repeat(124)}` })
    assert.equal(atCap.status, 401, atCap.text)
    await stillUncounted()
  })

  it('the old password of a password change is capped the same way (400, not a lockout attempt)', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await gh.admin('/api/v2/users/password', { method: 'PUT', token: admin, body: json({ old_password: 'A1-'.padEnd(300, 'y'), new_password: 'Another-pass-9' }) })
      assert.equal(r.status, 400, r.text)
      assert.equal(r.json().reason, 'ERR_BAD_REQUEST')
    }
    await stillUncounted()
  })

  describe('bodies that are not application/json are 415 on every route with a body', () => {
    const right = json({ username: 'admin', password: ADMIN_PW })
    for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'text/json']) {
      it(`login with Content-Type: ${type} and the right password → 415, no token`, async () => {
        const r = await gh.admin('/api/v2/login', { method: 'POST', headers: { 'content-type': type }, body: right })
        assert.equal(r.status, 415, r.text)
        assert.equal(r.json().reason, 'ERR_UNSUPPORTED_MEDIA_TYPE')
        assert.match(r.json().message, /Content-Type: application\/json/)
        assert.doesNotMatch(r.text, /access_token/)
      })
    }
    it('login with a body and no Content-Type → 415', async () => {
      // Raw bytes: undici adds no Content-Type for a string body, but be explicit about it.
      const r = await rawAdmin(gh, `POST /api/v2/login HTTP/1.1\r\nHost: x\r\nContent-Length: ${right.length}\r\nConnection: close\r\n\r\n${right}`)
      assert.match(r, /^HTTP\/1\.1 415 /)
      assert.match(r, /ERR_UNSUPPORTED_MEDIA_TYPE/)
    })
    it('a chunked body without Content-Type → 415', async () => {
      const r = await rawAdmin(gh, `POST /api/v2/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${right.length.toString(16)}\r\n${right}\r\n0\r\n\r\n`)
      assert.match(r, /^HTTP\/1\.1 415 /)
    })
    it('application/json with parameters is JSON (charset=utf-8 works)', async () => {
      const r = await gh.admin('/api/v2/login', { method: 'POST', headers: { 'content-type': 'Application/JSON; charset=utf-8' }, body: right })
      assert.equal(r.status, 200, r.text)
      usedSecrets.add(r.json().data.access_token).add(r.json().data.refresh_token)
    })
    it('POST /api/v2/users as text/plain with an admin token → 415 and no user is created', async () => {
      const r = await gh.admin('/api/v2/users', { method: 'POST', token: admin, headers: { 'content-type': 'text/plain' }, body: json({ username: 'csrf-made', password: 'Csrf-made-pw1', role: 'admin' }) })
      assert.equal(r.status, 415, r.text)
      const users = (await gh.admin('/api/v2/users', { token: admin })).json().data as { username: string }[]
      assert.deepEqual(users.map((u) => u.username), ['admin'])
    })
    it('PUT banner, PUT password, PUT lockoutPolicy, PUT caCert, POST tls, POST tokens, refresh: each 415 as form data, nothing changed', async () => {
      const before = (await gh.admin('/api/v2/lockoutPolicy', { token: admin })).json().data
      const form = { 'content-type': 'application/x-www-form-urlencoded' }
      const tries: [string, string, string][] = [
        ['PUT', '/api/v2/security/banner', 'text=pwned'],
        ['PUT', '/api/v2/users/password', 'new_password=Pwned-pass-1'],
        ['PUT', '/api/v2/lockoutPolicy', 'failed_attempts=50'],
        ['PUT', '/api/v2/security/caCert', 'certificate=x'],
        ['POST', '/api/v2/tls', 'certificate=x&private_key=y'],
        ['POST', '/api/v2/users/tokens', 'access_token_timeout=infinite'],
        ['POST', '/api/v2/login/refresh', 'refresh_token=x'],
        ['DELETE', '/api/v2/users/admin/revoke', 'x=1'],
      ]
      for (const [method, p, body] of tries) {
        const r = await gh.admin(p, { method, token: admin, headers: form, body })
        assert.equal(r.status, 415, `${method} ${p}: ${r.text}`)
      }
      assert.deepEqual((await gh.admin('/api/v2/security/banner')).json().data, { text: '', enabled: false })
      assert.deepEqual((await gh.admin('/api/v2/lockoutPolicy', { token: admin })).json().data, before)
      assert.equal((await gh.admin('/api/v2/users/whoami', { token: admin })).status, 200, 'admin’s tokens were not revoked')
    })
    it('a POST without a body needs no Content-Type (banner enable as the CLI sends it)', async () => {
      const r = await gh.admin('/api/v2/security/banner/enable', { method: 'POST', token: admin })
      assert.equal(r.status, 200, r.text)
      await gh.admin('/api/v2/security/banner/disable', { method: 'POST', token: admin })
    })
  })

  describe('other admin bodies with missing fields or wrong types are 400 with the field named', () => {
    const cases: [string, string, unknown, RegExp][] = [
      ['PUT', '/api/v2/security/banner', {}, /text is required/],
      ['PUT', '/api/v2/security/banner', { text: 42 }, /text is required and must be a string/],
      ['PUT', '/api/v2/users/password', {}, /new_password is required/],
      ['PUT', '/api/v2/users/password', { username: 7, new_password: 'Another-pass-9' }, /username must be a string/],
      ['PUT', '/api/v2/users/password', { new_password: 'Another-pass-9' }, /old_password is required/],
      ['POST', '/api/v2/users', { username: 'someone', role: 'regular' }, /password is required/],
      ['POST', '/api/v2/users', { username: 'someone', password: 'Someone-pw-1', role: 5 }, /role must be one of/],
      ['PUT', '/api/v2/lockoutPolicy', { failed_attempts: '5' }, /failed_attempts must be a number/],
      ['PUT', '/api/v2/security/caCert', {}, /certificate is required/],
      ['POST', '/api/v2/tls', { certificate: 1, private_key: 2 }, /certificate is required/],
      ['POST', '/api/v2/users/tokens', { access_token_timeout: 30 }, /access_token_timeout must be a duration/],
    ]
    for (const [method, p, body, message] of cases) {
      it(`${method} ${p} ${json(body)}`, async () => {
        const r = await gh.admin(p, { method, token: admin, body: json(body) })
        assert.equal(r.status, 400, r.text)
        assert.match(r.json().reason, /^ERR_(BAD_REQUEST|WEAK_PASSWORD)$/)
        assert.match(r.json().message, message)
      })
    }
    it('refresh without a refresh_token is 400, a wrong one stays 401', async () => {
      const a = await gh.admin('/api/v2/login/refresh', { method: 'POST', body: '{}' })
      assert.equal(a.status, 400, a.text)
      assert.match(a.json().message, /refresh_token/)
      const b = await gh.admin('/api/v2/login/refresh', { method: 'POST', body: json({ refresh_token: 'ghr_not-a-real-one' }) })
      assert.equal(b.status, 401, b.text)
      assert.equal(b.json().reason, 'ERR_INVALID_REFRESH_TOKEN')
    })
  })

  describe('slow admin bodies (admin.bodyTimeout: 2s here)', () => {
    it('a login body dribbled 1 byte every 2 s is cut with 408 within the deadline, and the connection closes', async () => {
      const body = json({ username: 'admin', password: ADMIN_PW })
      const t0 = Date.now()
      const { text, closedAfterMs } = await dribble(gh, `POST /api/v2/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body, 2000)
      const took = Date.now() - t0
      assert.match(text, /^HTTP\/1\.1 408 /, text)
      assert.match(text, /ERR_REQUEST_TIMEOUT/)
      assert.match(text, /admin\.bodyTimeout/)
      assert.doesNotMatch(text, /access_token/)
      // A per-pause timeout would never fire on a 2 s drip; the whole-body deadline does (2 s,
      // generously bounded for a loaded machine).
      assert.ok(took < 8000, `answered after ${took} ms`)
      assert.ok(closedAfterMs !== undefined && closedAfterMs < 9000, 'the server closed the connection')
    })
    it('positive control: a body in two parts well within the deadline logs in', async () => {
      const body = json({ username: 'admin', password: ADMIN_PW })
      const { text } = await dribble(gh, `POST /api/v2/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, body, 300, 2)
      assert.match(text, /^HTTP\/1\.1 200 /, text.slice(0, 200))
      for (const m of text.matchAll(/"(access_token|refresh_token)":"([^"]+)"/g)) usedSecrets.add(m[2] as string)
    })
  })
})

/** Send raw bytes to the admin listener over TLS and collect the whole answer. */
function rawAdmin(gh: TestProxy, bytes: string): Promise<string> {
  const u = new URL(gh.adminUrl as string)
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: gh.ca, servername: 'localhost' }, () => s.end(bytes))
    let text = ''
    s.on('data', (c: Buffer) => (text += c.toString('utf8')))
    s.on('error', reject)
    s.on('close', () => resolve(text))
  })
}

/**
 * Send `head`, then `body` in pieces of `parts` (1 byte each when undefined) every `gapMs`,
 * until the server answers or closes. Resolves with the answer and when the socket closed.
 */
function dribble(gh: TestProxy, head: string, body: string, gapMs: number, parts?: number): Promise<{ text: string; closedAfterMs: number | undefined }> {
  const u = new URL(gh.adminUrl as string)
  const size = parts === undefined ? 1 : Math.ceil(body.length / parts)
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    let text = ''
    let timer: NodeJS.Timeout | undefined
    let sent = 0
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: gh.ca, servername: 'localhost' }, () => {
      s.write(head)
      const step = (): void => {
        if (s.destroyed || sent >= body.length) return
        s.write(body.slice(sent, sent + size))
        sent += size
        timer = setTimeout(step, gapMs)
      }
      timer = setTimeout(step, gapMs)
    })
    // Safety net: never hang the suite.
    const giveUp = setTimeout(() => s.destroy(), 15_000)
    s.on('data', (c: Buffer) => (text += c.toString('utf8')))
    s.on('error', (e) => (text === '' ? reject(e) : undefined))
    s.on('close', () => {
      clearTimeout(timer)
      clearTimeout(giveUp)
      resolve({ text, closedAfterMs: Date.now() - t0 })
    })
  })
}
