/**
 * Browser sign-in on the wire (SPEC §9, §10), against panva's oidc-provider: API clients keep
 * the JSON 401 and are never redirected; the callback refuses a wrong or missing state, a
 * replayed code and an ID token with a wrong nonce; a tampered, unknown or expired session
 * cookie is no credential (and never feeds the failure throttle); bearer credentials work next
 * to a session; the session refreshes the provider's tokens before they expire and ends when
 * the refresh is refused; HTTP/2 forwards the session's identity without gatehouse's cookies.
 * The provider's login is driven over HTTP (its dev login form), the way a browser would.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { BROWSER_CLIENT_ID, BROWSER_CLIENT_SECRET, providerLogin, startOidcProvider, type OidcProvider, browserLoginEnv } from '../helpers/oidcProvider.ts'
import { assertNoSecretsInLogs, startProxy, waitReady, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { sleep } from '../helpers/rawClient.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'
import { startRefusingUpgradeUpstream, upgradeStatus, type RefusingUpgradeUpstream } from '../helpers/upgrade.ts'

const SESSION = '__Host-gatehouse-session'
const FLOW = '__Host-gatehouse-flow'
const API_KEY = 'raw-api-key-5d0c9e71'
const NAVIGATE = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }
// Access tokens live 62 s; gatehouse refreshes 60 s before expiry, so after 2 s.
const TOKEN_TTL = 62

/** The value of cookie `name` in a reply's Set-Cookie fields. */
function setCookie(r: { headers: Record<string, string | string[] | undefined> }, name: string): string | undefined {
  const v = r.headers['set-cookie']
  for (const c of Array.isArray(v) ? v : v === undefined ? [] : [v]) if (c.startsWith(`${name}=`)) return c.slice(name.length + 1).split(';')[0]
  return undefined
}

describe('browser sign-in on the wire', () => {
  let op: OidcProvider
  let up: RecordingUpstream
  let gh: TestProxy
  const secrets: string[] = [BROWSER_CLIENT_SECRET]

  before(async () => {
    op = await startOidcProvider()
    up = await startUpstream()
    gh = await startProxy({
      env: {
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_UPSTREAM_URL: up.url,
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: API_KEY,
        AUTHENTICATION_APIKEY_USERS: 'robot',
        ...browserLoginEnv(op.issuer),
        AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups',
      },
      yaml: 'authentication:\n  failureThrottle:\n    enabled: true\n    maxFailures: 3\n',
    })
    await op.enableBrowserClient({ redirectUris: [`${gh.url}/oauth2/callback`], accessTokenTtl: TOKEN_TTL })
    await waitReady(gh)
  })

  after(async () => {
    await gh?.stop()
    await up?.close()
    await op?.close()
  })

  /** Start a flow at gatehouse: the provider URL and the flow cookie. */
  async function startFlow(rd = '/app'): Promise<{ authorize: string; flow: string }> {
    const r = await gh.request(`/oauth2/start?rd=${encodeURIComponent(rd)}`)
    assert.equal(r.status, 302)
    const flow = setCookie(r, FLOW)
    assert.ok(flow !== undefined && flow !== '')
    return { authorize: r.headers.location as string, flow }
  }

  const callback = (u: URL, flow: string | undefined): Promise<Reply> => gh.request(`/oauth2/callback${u.search}`, { headers: flow === undefined ? {} : { cookie: `${FLOW}=${flow}` } })

  /** A complete sign-in as `login`: the session cookie's value. */
  async function signIn(login = 'alice'): Promise<string> {
    const { authorize, flow } = await startFlow()
    const cb = await providerLogin(authorize, login, `${gh.url}/oauth2/callback`)
    const r = await callback(cb, flow)
    assert.equal(r.status, 302, r.text)
    const id = setCookie(r, SESSION)
    assert.ok(id !== undefined && id.length === 43)
    secrets.push(id)
    return id
  }

  it('API clients get the JSON 401, never a redirect; a page load is sent to sign in', async () => {
    up.reset()
    const cases: [string, string, Record<string, string>][] = [
      ['GET', '/v1/objects', {}],
      ['GET', '/v1/objects', { accept: 'application/json' }],
      ['GET', '/v1/objects', { accept: '*/*', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
      ['GET', '/page', { accept: 'text/html,*/*', 'x-requested-with': 'XMLHttpRequest' }],
      ['GET', '/page', { ...NAVIGATE, 'sec-fetch-dest': 'iframe' }],
      ['GET', '/page', { accept: 'text/html', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
      ['POST', '/page', { ...NAVIGATE, 'content-type': 'application/x-www-form-urlencoded' }],
      ['HEAD', '/page', NAVIGATE],
      ['DELETE', '/page', NAVIGATE],
    ]
    for (const [method, p, headers] of cases) {
      const r = await gh.request(p, { method, headers, ...(method === 'POST' ? { body: 'a=1' } : {}) })
      assert.equal(r.status, 401, `${method} ${JSON.stringify(headers)}`)
      assert.equal(r.headers.location, undefined)
      if (method !== 'HEAD') assert.equal(r.json().reason, 'ERR_UNAUTHENTICATED')
      assert.equal(r.headers['www-authenticate'], 'Bearer realm="gatehouse"')
    }
    const nav = await gh.request('/page/x?a=1&b=2', { headers: NAVIGATE })
    assert.equal(nav.status, 302)
    assert.equal(nav.headers.location, `/oauth2/start?rd=${encodeURIComponent('/page/x?a=1&b=2')}`)
    assert.equal(nav.headers['cache-control'], 'no-store')
    // Browsers without Fetch Metadata: Accept alone decides.
    assert.equal((await gh.request('/page', { headers: { accept: 'text/html' } })).status, 302)
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
  })

  it('/oauth2/start sends PKCE S256, state, nonce and a sealed short-lived flow cookie', async () => {
    const r = await gh.request('/oauth2/start?rd=%2Fapp')
    const u = new URL(r.headers.location as string)
    assert.equal(u.origin + u.pathname, `${op.issuer}/auth`)
    const q = u.searchParams
    assert.equal(q.get('response_type'), 'code')
    assert.equal(q.get('client_id'), BROWSER_CLIENT_ID)
    assert.equal(q.get('redirect_uri'), `${gh.url}/oauth2/callback`)
    assert.equal(q.get('code_challenge_method'), 'S256')
    assert.match(q.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/)
    assert.match(q.get('state') ?? '', /^[A-Za-z0-9_-]{43}$/)
    assert.match(q.get('nonce') ?? '', /^[A-Za-z0-9_-]{43}$/)
    assert.deepEqual(q.get('scope')?.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile'])
    const c = ([] as string[]).concat(r.headers['set-cookie'] ?? []).find((x) => x.startsWith(`${FLOW}=`)) as string
    assert.match(c, /; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$/)
    // The flow cookie holds nothing readable: not the state, the verifier or the return path.
    assert.ok(!c.includes(q.get('state') as string))
    assert.ok(!c.includes('%2Fapp') && !c.includes('/app'))
  })

  it('the callback refuses a missing or wrong state, a missing flow cookie, and a provider error', async () => {
    const { authorize, flow } = await startFlow()
    const cb = await providerLogin(authorize, 'alice', `${gh.url}/oauth2/callback`)
    const code = cb.searchParams.get('code') as string
    const state = cb.searchParams.get('state') as string
    const bad: [string, string | undefined][] = [
      [`?code=${code}`, flow],
      [`?code=${code}&state=`, flow],
      [`?code=${code}&state=${'A'.repeat(43)}`, flow],
      [`?code=${code}&state=${state}`, undefined],
      [`?code=${code}&state=${state}`, `${flow.slice(0, -2)}xx`],
    ]
    for (const [query, cookie] of bad) {
      const r = await gh.request(`/oauth2/callback${query}`, { headers: cookie === undefined ? {} : { cookie: `${FLOW}=${cookie}` } })
      assert.equal(r.status, 400, `${query} with ${cookie === undefined ? 'no' : 'a'} flow cookie`)
      assert.equal(setCookie(r, SESSION), undefined)
      assert.match(String(r.headers['content-type']), /^text\/html/)
      assert.match(r.text, /Try again/)
      assert.doesNotMatch(r.text, /at .*\.ts:\d+|Error:/, 'no stack')
    }
    // RFC 9207 mix-up defence: an answer naming another issuer is refused.
    const mixed = await gh.request(`/oauth2/callback?code=${code}&state=${state}&iss=${encodeURIComponent('https://evil.example')}`, { headers: { cookie: `${FLOW}=${flow}` } })
    assert.equal(mixed.status, 400)
    assert.equal(setCookie(mixed, SESSION), undefined)
    const denied = await gh.request(`/oauth2/callback?error=access_denied&error_description=${encodeURIComponent('<script>alert(1)</script>')}&state=${state}`, { headers: { cookie: `${FLOW}=${flow}` } })
    assert.equal(denied.status, 400)
    assert.match(denied.text, /cancelled or denied/)
    assert.doesNotMatch(denied.text, /<script>|alert\(1\)/, 'the provider’s text is never reflected')
    assert.match(denied.headers['content-security-policy'] as string, /script-src 'self'/)
    // The state was right all along: the code still works once.
    const ok = await callback(cb, flow)
    assert.equal(ok.status, 302)
    assert.equal(ok.headers.location, '/app')
  })

  it('a replayed code is refused, and so is an ID token with a wrong nonce', async () => {
    const { authorize, flow } = await startFlow()
    const cb = await providerLogin(authorize, 'alice', `${gh.url}/oauth2/callback`)
    const first = await callback(cb, flow)
    assert.equal(first.status, 302)
    const again = await callback(cb, flow)
    assert.equal(again.status, 502)
    assert.equal(setCookie(again, SESSION), undefined)
    assert.match(again.text, /did not accept this sign-in/)

    op.faults.idTokenNonce = 'a-nonce-gatehouse-never-sent'
    try {
      const f = await startFlow()
      const cb2 = await providerLogin(f.authorize, 'alice', `${gh.url}/oauth2/callback`)
      const r = await callback(cb2, f.flow)
      assert.equal(r.status, 401)
      assert.equal(setCookie(r, SESSION), undefined)
      assert.match(r.text, /could not be verified/)
      assert.ok(gh.logs.some((l) => l.includes('nonce does not match')), 'the reason is logged')
    } finally {
      op.faults.idTokenNonce = undefined
    }
  })

  it('a session authenticates like a bearer token; gatehouse’s cookies never reach the upstream', async () => {
    const id = await signIn('alice')
    up.reset()
    // Two Cookie fields, the session in the second, gatehouse's cookies in odd spellings too.
    const r = await gh.request('/v1/objects', { headers: { accept: 'application/json', cookie: ['theme=dark; __host-GATEHOUSE-flow=x', `${SESSION}=${id}; lang=en`] } })
    assert.equal(r.status, 200, r.text)
    const seen = up.requests.at(-1)
    assert.equal(seen?.headers['x-forwarded-user'], 'alice')
    assert.equal(seen?.headers['x-forwarded-auth-method'], 'oidc')
    assert.equal(seen?.headers.cookie, 'theme=dark; lang=en')
    // Only cookies of gatehouse: no Cookie header at all.
    await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${id}` } })
    assert.equal(up.requests.at(-1)?.headers.cookie, undefined)
  })

  it('a tampered, unknown or malformed session cookie is no credential, and never feeds the failure throttle', async () => {
    const id = await signIn('alice')
    const tampered = `${id.slice(0, 20)}${id[20] === 'A' ? 'B' : 'A'}${id.slice(21)}`
    up.reset()
    for (const value of [tampered, 'A'.repeat(43), 'short', `${id}x`, '"<script>"']) {
      for (let i = 0; i < 3; i++) {
        const api = await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${value}` } })
        assert.equal(api.status, 401, value)
        assert.equal(api.json().reason, 'ERR_UNAUTHENTICATED')
      }
      const nav = await gh.request('/v1/objects', { headers: { ...NAVIGATE, cookie: `${SESSION}=${value}` } })
      assert.equal(nav.status, 302)
    }
    // Two session cookies (one planted): neither is picked.
    assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${id}; ${SESSION}=${tampered}` } })).status, 401)
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
    // 15 refused cookies from this address, and the throttle (3 failures) was not touched.
    assert.equal((await gh.request('/v1/objects', { token: 'wrong-key-0000' })).status, 401)
    assert.equal((await gh.request('/v1/objects', { token: API_KEY })).status, 200)
  })

  it('a state-changing request carrying the session from another page of the same site is no credential; from this origin it is', async () => {
    const id = await signIn('alice')
    const self = new URL(gh.url).origin
    const otherPort = `https://127.0.0.1:${Number(new URL(gh.url).port) === 1 ? 2 : 1}`
    up.reset()
    // A form auto-posted by a page on another port of this host (same site, so Lax sends the cookie).
    const shapes: Record<string, string>[] = [
      { origin: otherPort, 'sec-fetch-site': 'same-site' },
      { origin: otherPort },
      { 'sec-fetch-site': 'same-site' },
      { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: self.replace('https:', 'http:') },
    ]
    for (const headers of shapes) {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        const r = await gh.request('/collections/prod/delete', { method, body: method === 'DELETE' ? undefined : 'x', headers: { 'content-type': 'text/plain', cookie: `${SESSION}=${id}`, ...headers } })
        assert.equal(r.status, 401, `${method} ${JSON.stringify(headers)}: ${r.text}`)
      }
    }
    assert.equal(up.requests.length, 0, 'the upstream saw none of them')
    // A GET from another page of the site still reads (safe), and this origin's own posts write.
    assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${id}`, origin: otherPort, 'sec-fetch-site': 'same-site' } })).status, 200)
    const own = await gh.request('/collections/prod/delete', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain', cookie: `${SESSION}=${id}`, origin: self, 'sec-fetch-site': 'same-origin' } })
    assert.equal(own.status, 200, own.text)
    assert.equal(up.requests.at(-1)?.headers['x-forwarded-user'], 'alice')
    // A script or curl sends neither header: the session works as before.
    assert.equal((await gh.request('/collections/prod/delete', { method: 'POST', body: 'x', headers: { cookie: `${SESSION}=${id}` } })).status, 200)
  })

  it('bearer credentials work next to a session; a request with Authorization ignores the cookie', async () => {
    const id = await signIn('alice')
    up.reset()
    const r = await gh.request('/v1/objects', { token: API_KEY, headers: { cookie: `${SESSION}=${id}` } })
    assert.equal(r.status, 200)
    assert.equal(up.requests.at(-1)?.headers['x-forwarded-user'], 'robot')
    assert.equal(up.requests.at(-1)?.headers['x-forwarded-auth-method'], 'apikey')
    assert.equal(up.requests.at(-1)?.headers.cookie, undefined)
    const wrong = await gh.request('/v1/objects', { token: 'wrong-key-1111', headers: { cookie: `${SESSION}=${id}`, ...NAVIGATE } })
    assert.equal(wrong.status, 401, 'a wrong bearer is 401, however good the cookie (and never a redirect)')
    assert.equal(wrong.json().reason, 'ERR_INVALID_API_KEY')
  })

  it('HTTP/2: a session cookie (in several cookie fields) forwards the identity without gatehouse’s cookies', async () => {
    const id = await signIn('bob')
    up.reset()
    const s = await h2connect(gh.url, gh.ca)
    try {
      const r = await h2request(s, { ':method': 'GET', ':path': '/v1/objects', cookie: ['a=1', `${SESSION}=${id}`, 'b=2'] })
      assert.equal(r.status, 200)
    } finally {
      await h2close(s)
    }
    const seen = up.requests.at(-1)
    assert.equal(seen?.headers['x-forwarded-user'], 'bob')
    assert.equal(seen?.headers.cookie, 'a=1; b=2')
  })

  it('the provider’s tokens are refreshed before they expire; a refused refresh ends the session (page → sign in, XHR → 401)', async () => {
    const s1 = await signIn('carol')
    const s2 = await signIn('carol')
    await sleep(2200)
    const before = op.tokenGrants.filter((g) => g === 'refresh_token').length
    up.reset()
    assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${s1}` } })).status, 200)
    assert.equal(op.tokenGrants.filter((g) => g === 'refresh_token').length, before + 1, 'one refresh')
    assert.equal(up.requests.at(-1)?.headers['x-forwarded-user'], 'carol')
    // Refreshed: the next request within the new lifetime needs none.
    assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${s1}` } })).status, 200)
    assert.equal(op.tokenGrants.filter((g) => g === 'refresh_token').length, before + 1)

    op.faults.refuseRefresh = true
    try {
      await sleep(2200)
      up.reset()
      const xhr = await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${s1}`, accept: 'application/json' } })
      assert.equal(xhr.status, 401)
      const nav = await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${s2}`, ...NAVIGATE } })
      assert.equal(nav.status, 302)
      assert.match(nav.headers.location as string, /^\/oauth2\/start\?rd=/)
      // Ended, not just refused once.
      op.faults.refuseRefresh = false
      assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${s1}` } })).status, 401)
      assert.equal(up.requests.length, 0)
    } finally {
      op.faults.refuseRefresh = false
    }
  })

  it('sign-out ends the session (the cookie is cleared and refused afterwards)', async () => {
    const id = await signIn('dave')
    const r = await gh.request('/oauth2/sign_out?rd=%2Fbye', { headers: { cookie: `${SESSION}=${id}` } })
    assert.equal(r.status, 302)
    assert.ok((r.headers.location as string).startsWith(`${op.issuer}/session/end?`), 'RP-initiated logout at the provider')
    const u = new URL(r.headers.location as string)
    assert.equal(u.searchParams.get('client_id'), BROWSER_CLIENT_ID)
    assert.ok((u.searchParams.get('id_token_hint') ?? '').split('.').length === 3)
    assert.equal(u.searchParams.get('post_logout_redirect_uri'), `${gh.url}/oauth2/signed_out`)
    assert.match(([] as string[]).concat(r.headers['set-cookie'] ?? []).join('\n'), new RegExp(`^${SESSION}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0$`, 'm'))
    assert.equal((await gh.request('/v1/objects', { headers: { cookie: `${SESSION}=${id}` } })).status, 401)
    // Without a session: straight to the safe return path.
    const none = await gh.request('/oauth2/sign_out?rd=%2F%2Fevil.example')
    assert.equal(none.headers.location, '/')
  })

  it('audit lines for sign-in and sign-out; no code, token, state, verifier or session id in any log line', () => {
    const audits = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'audit')
    assert.ok(audits.some((a) => a.event === 'browser.sign_in' && a.outcome === 'success' && a.actor === 'alice'))
    assert.ok(audits.some((a) => a.event === 'browser.sign_in' && a.outcome === 'failure' && a.reason === 'state:state-mismatch'))
    assert.ok(audits.some((a) => a.event === 'browser.sign_in' && a.outcome === 'failure' && a.reason === 'exchange:invalid_grant'))
    assert.ok(audits.some((a) => a.event === 'browser.sign_out' && a.actor === 'dave'))
    assertNoSecretsInLogs(gh.logs, secrets)
    for (const l of gh.logs) assert.doesNotMatch(l, /[?&](code|state)=|code_verifier|id_token_hint|__Host-gatehouse-session=/, l.slice(0, 200))
  })
})

/** A whole sign-in at `gh` as `login`, over the wire: the session cookie's value. */
async function signInAt(gh: TestProxy, login: string): Promise<string> {
  const start = await gh.request('/oauth2/start?rd=%2F')
  const flow = setCookie(start, FLOW) as string
  const cb = await providerLogin(start.headers.location as string, login, `${gh.url}/oauth2/callback`)
  const r = await gh.request(`/oauth2/callback${cb.search}`, { headers: { cookie: `${FLOW}=${flow}` } })
  const id = setCookie(r, SESSION)
  assert.ok(id !== undefined, r.text)
  return id
}

describe('WebSocket upgrades with a browser session', () => {
  let op: OidcProvider
  let up: RefusingUpgradeUpstream
  let gh: TestProxy

  before(async () => {
    op = await startOidcProvider()
    up = await startRefusingUpgradeUpstream()
    gh = await startProxy({
      env: {
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_UPSTREAM_URL: up.url,
        ...browserLoginEnv(op.issuer),
      },
    })
    await op.enableBrowserClient({ redirectUris: [`${gh.url}/oauth2/callback`] })
    await waitReady(gh)
  })
  after(async () => {
    await gh?.stop()
    await up?.close()
    await op?.close()
  })

  it('a handshake with the session cookie from this origin is forwarded as the user, without the cookie; another origin or no session is refused', async () => {
    const id = await signInAt(gh, 'erin')
    const ws = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }
    const host = new URL(gh.url).host
    // The upstream refuses every handshake with 403; what matters is what reached it.
    assert.equal(await upgradeStatus(gh, '/ws', { ...ws, origin: `https://${host}`, cookie: `app=1; ${SESSION}=${id}` }), 403)
    assert.equal(up.handshakes.length, 1)
    const h = up.handshakes[0] as { rawHeaders: string[] }
    const get = (n: string): string[] => h.rawHeaders.flatMap((v, i) => (i % 2 === 1 && h.rawHeaders[i - 1]?.toLowerCase() === n ? [v] : []))
    assert.deepEqual(get('x-forwarded-user'), ['erin'])
    assert.deepEqual(get('cookie'), ['app=1'])
    // Cross-site WebSocket hijacking: a page of another origin carrying the cookie is refused here.
    assert.equal(await upgradeStatus(gh, '/ws', { ...ws, origin: 'https://evil.example', cookie: `${SESSION}=${id}` }), 403)
    // The same host over plain http is another origin (a page on port 80 could be anyone's).
    assert.equal(await upgradeStatus(gh, '/ws', { ...ws, origin: `http://${host}`, cookie: `${SESSION}=${id}` }), 403)
    assert.equal(await upgradeStatus(gh, '/ws', { ...ws, origin: `https://${host}`, 'sec-fetch-site': 'same-site', cookie: `${SESSION}=${id}` }), 403)
    assert.equal(await upgradeStatus(gh, '/ws', { ...ws, cookie: `${SESSION}=${'A'.repeat(43)}` }), 401)
    assert.equal(up.handshakes.length, 1, 'nothing else reached the upstream')
  })
})
