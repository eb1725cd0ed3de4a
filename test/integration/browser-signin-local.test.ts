/**
 * Local users' browser sign-in on the data listener (SPEC §10, issue 14): in Chromium, a page
 * load is sent to gatehouse's sign-in page, which offers the identity provider and the local
 * username/password form under the login banner (escaped); a wrong password gets the login
 * API's `Invalid username or password`; the right one reaches the page as that user (method
 * `local`, the role as group); `gatehouse user revoke-tokens` (the real CLI) ends the session.
 * On the wire: a form posted from another origin or without the page's flow cookie is refused,
 * an idle session expires, and an account that must change its password gets no session.
 * GATEHOUSE_SCREENSHOTS=1 writes docs/images/browser-signin.png.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { launchBrowser, screenshot, SCREENSHOTS_WANTED, type TestBrowser } from '../helpers/browser.ts'
import { runCliAsync } from '../helpers/cli.ts'
import { BROWSER_CLIENT_SECRET, startOidcProvider, type OidcProvider, browserLoginEnv } from '../helpers/oidcProvider.ts'
import { assertNoSecretsInLogs, startProxy, waitReady, type Reply, type TestProxy } from '../helpers/proxy.ts'
import { sleep } from '../helpers/rawClient.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const SESSION = '__Host-gatehouse-session'
const FLOW = '__Host-gatehouse-flow'
const ADMIN_PW = 'Admin-pass-4411'
const BOB_PW = 'Bob-pass-7731'
const BANNER = 'Authorized use only. <script>alert("banner")</script> Activity is logged.'
const SCREENSHOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/images/browser-signin.png')
const IDLE_SECONDS = 3

function setCookie(r: Reply, name: string): string | undefined {
  const v = r.headers['set-cookie']
  for (const c of Array.isArray(v) ? v : v === undefined ? [] : [v]) if (c.startsWith(`${name}=`)) return c.slice(name.length + 1).split(';')[0]
  return undefined
}

/** GET the sign-in page: its flow cookie and CSRF token. */
async function signInPage(gh: TestProxy, rd = '/app'): Promise<{ flow: string; csrf: string; page: Reply }> {
  const page = await gh.request(`/oauth2/sign_in?rd=${encodeURIComponent(rd)}`)
  assert.equal(page.status, 200)
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1]
  const flow = setCookie(page, FLOW)
  assert.ok(csrf !== undefined && flow !== undefined)
  return { flow, csrf, page }
}

function postSignIn(gh: TestProxy, f: { flow?: string; csrf?: string }, fields: Record<string, string>, headers: Record<string, string>): Promise<Reply> {
  return gh.request('/oauth2/sign_in', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(f.flow === undefined ? {} : { cookie: `${FLOW}=${f.flow}` }), ...headers },
    body: new URLSearchParams({ ...(f.csrf === undefined ? {} : { csrf: f.csrf }), rd: '/app', ...fields }).toString(),
  })
}

describe('local users sign in on the data listener', () => {
  let op: OidcProvider
  let up: RecordingUpstream
  let gh: TestProxy
  let browser: TestBrowser
  let page: Page
  let home: string
  const secrets: string[] = [ADMIN_PW, BOB_PW, BROWSER_CLIENT_SECRET]

  before(async () => {
    home = mkdtempSync(path.join(tmpdir(), 'gh-cli-home-'))
    op = await startOidcProvider()
    up = await startUpstream()
    gh = await startProxy({
      env: {
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_LOCAL_ENABLED: 'true',
        GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW,
        ...browserLoginEnv(op.issuer),
      },
      yaml: [
        'authentication:',
        '  local:',
        '    banner:',
        `      text: ${JSON.stringify(BANNER)}`,
        '      enabled: true',
        '  oidc:',
        '    browserLogin:',
        `      idleTimeout: ${IDLE_SECONDS}s`,
        '',
      ].join('\n'),
    })
    await op.enableBrowserClient({ redirectUris: [`${gh.url}/oauth2/callback`] })
    await waitReady(gh)
    const admin = (await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN_PW }) })).json().data as { access_token: string }
    secrets.push(admin.access_token)
    const made = await gh.admin('/api/v2/users', { method: 'POST', token: admin.access_token, body: JSON.stringify({ username: 'bob', password: BOB_PW, role: 'regular' }) })
    assert.ok(made.status < 300, made.text)
    browser = await launchBrowser({ trustCertificates: [gh.ca as string] })
    ;({ page } = await browser.newPage())
  })

  after(async () => {
    await browser?.close()
    await gh?.stop()
    await up?.close()
    await op?.close()
    rmSync(home, { recursive: true, force: true })
  })

  it('a page load lands on the sign-in page: banner as text, the provider’s button, the local form', async () => {
    await page.goto(`${gh.url}/app`)
    assert.equal(page.url(), `${gh.url}/oauth2/sign_in?rd=%2Fapp`)
    assert.equal(await page.textContent('.banner'), BANNER, 'the banner shows as text, <script> included')
    assert.equal(await page.locator('.banner script').count(), 0)
    assert.match((await page.textContent('a.button')) ?? '', new RegExp(`Sign in with ${new URL(op.issuer).host}`))
    assert.equal(await page.locator('form input[name=username]').count(), 1)
    // The focused field: keyboard users start typing at once.
    assert.equal(await page.locator('input[name=username]:focus').count(), 1)
    if (SCREENSHOTS_WANTED) {
      // Tall enough for the whole card, the sign-in button included.
      await page.setViewportSize({ width: 900, height: 720 })
      await screenshot(page, SCREENSHOT)
    }
  })

  it('a wrong password gets the login API’s answer; the right one reaches the page as the local user', async () => {
    await page.fill('input[name=username]', 'bob')
    await page.fill('input[name=password]', 'Wrong-pass-0000')
    const [wrong] = await Promise.all([page.waitForResponse((r) => r.url() === `${gh.url}/oauth2/sign_in` && r.request().method() === 'POST'), page.click('button[type=submit]')])
    assert.equal(wrong.status(), 401)
    assert.equal((await page.textContent('.error'))?.trim(), 'Invalid username or password')
    assert.equal(await page.inputValue('input[name=username]'), 'bob', 'the name is kept')
    await page.fill('input[name=password]', BOB_PW)
    up.reset()
    await Promise.all([page.waitForURL(`${gh.url}/app`), page.click('button[type=submit]')])
    const seen = up.requests.find((r) => r.url === '/app')
    assert.equal(seen?.headers['x-forwarded-user'], 'bob')
    assert.equal(seen?.headers['x-forwarded-auth-method'], 'local')
    assert.equal(seen?.headers['x-forwarded-groups'], 'regular')
    assert.doesNotMatch(String(seen?.headers.cookie ?? ''), /gatehouse/i)
  })

  it('gatehouse user revoke-tokens (the real CLI) ends the browser session', async () => {
    const old = (await browser.context.cookies(gh.url)).find((c) => c.name === SESSION)?.value as string
    assert.ok(old !== undefined)
    secrets.push(old)
    const env = { HOME: home, GATEHOUSE_HOST: gh.adminUrl as string, GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state') }
    const login = await runCliAsync(['user', 'login', 'admin', ADMIN_PW], env, home)
    assert.equal(login.code, 0, login.stderr)
    const revoke = await runCliAsync(['user', 'revoke-tokens', 'bob'], env, home)
    assert.equal(revoke.code, 0, revoke.stderr)
    up.reset()
    await page.reload()
    assert.equal(page.url(), `${gh.url}/oauth2/sign_in?rd=%2Fapp`, 'the next page load signs in again')
    const raw = await gh.request('/app', { headers: { cookie: `${SESSION}=${old}` } })
    assert.equal(raw.status, 401)
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
  })

  it('a form from another origin, or without the page’s flow cookie or token, is refused', async () => {
    const f = await signInPage(gh)
    const good = { username: 'bob', password: BOB_PW }
    const refused: [string, Reply][] = [
      ['Origin of another site', await postSignIn(gh, f, good, { origin: 'https://evil.example' })],
      ['Sec-Fetch-Site cross-site', await postSignIn(gh, f, good, { 'sec-fetch-site': 'cross-site' })],
      ['same-site sibling', await postSignIn(gh, f, good, { 'sec-fetch-site': 'same-site', origin: 'https://sibling.127.0.0.1' })],
      ['no Origin, no Fetch Metadata', await postSignIn(gh, f, good, {})],
      ['no flow cookie', await postSignIn(gh, { csrf: f.csrf }, good, { origin: new URL(gh.url).origin })],
      ['no token', await postSignIn(gh, { flow: f.flow }, good, { origin: new URL(gh.url).origin })],
      ['another page’s token', await postSignIn(gh, { flow: f.flow, csrf: (await signInPage(gh)).csrf }, good, { origin: new URL(gh.url).origin })],
    ]
    for (const [what, r] of refused) {
      assert.equal(r.status, 403, what)
      assert.equal(setCookie(r, SESSION), undefined, what)
    }
    const ok = await postSignIn(gh, f, good, { origin: new URL(gh.url).origin, 'sec-fetch-site': 'same-origin' })
    assert.equal(ok.status, 303)
    assert.equal(ok.headers.location, '/app')
    assert.ok(setCookie(ok, SESSION) !== undefined)
  })

  it(`an idle session ends after browserLogin.idleTimeout (${IDLE_SECONDS} s)`, async () => {
    const f = await signInPage(gh)
    const r = await postSignIn(gh, f, { username: 'bob', password: BOB_PW }, { origin: new URL(gh.url).origin })
    const id = setCookie(r, SESSION) as string
    secrets.push(id)
    assert.equal((await gh.request('/app', { headers: { cookie: `${SESSION}=${id}` } })).status, 200)
    await sleep(IDLE_SECONDS * 1000 + 400)
    up.reset()
    const late = await gh.request('/app', { headers: { cookie: `${SESSION}=${id}`, accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' } })
    assert.equal(late.status, 302)
    assert.equal(late.headers.location, '/oauth2/sign_in?rd=%2Fapp')
    assert.equal(up.requests.length, 0)
  })

  it('audit lines for local sign-in; no password, token or session id in the logs', () => {
    const audits = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'audit' && l.event === 'browser.sign_in')
    assert.ok(audits.some((a) => a.outcome === 'success' && a.actor === 'bob'))
    assert.ok(audits.some((a) => a.outcome === 'failure' && a.reason === 'ERR_LOGIN_FAILED' && a.target === 'bob'))
    assert.ok(audits.some((a) => a.outcome === 'failure' && a.reason === 'csrf:origin'))
    assertNoSecretsInLogs(gh.logs, secrets)
  })
})

describe('an account that must change its password gets no browser session', () => {
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    up = await startUpstream()
    // No GATEHOUSE_ADMIN_PASSWORD on a loopback admin listener: admin/admin, to be changed first.
    gh = await startProxy({ env: { GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true' } })
  })
  after(async () => {
    await gh?.stop()
    await up?.close()
  })

  it('admin/admin is told to change the password first (CLI or console)', async () => {
    const nav = await gh.request('/', { headers: { accept: 'text/html' } })
    assert.equal(nav.status, 302)
    assert.equal(nav.headers.location, '/oauth2/sign_in?rd=%2F')
    // Only local users here: /oauth2/start goes to the sign-in page.
    assert.equal((await gh.request('/oauth2/start?rd=%2F')).headers.location, '/oauth2/sign_in?rd=%2F')
    const f = await signInPage(gh, '/')
    assert.doesNotMatch(f.page.text, /Sign in with/, 'no identity provider offered')
    const r = await postSignIn(gh, f, { username: 'admin', password: 'admin' }, { origin: new URL(gh.url).origin })
    assert.equal(r.status, 403)
    assert.match(r.text, /must be changed before you can sign in/)
    assert.equal(setCookie(r, SESSION), undefined)
  })
})
