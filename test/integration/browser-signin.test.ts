/**
 * Browser sign-in on the data listener (SPEC §10), in Debian's Chromium against panva's
 * oidc-provider with its interactive login: a protected page behind gatehouse → the provider's
 * login → back on the page; the upstream saw the person's identity, no gatehouse cookie, and the
 * page's own cookie; every open-redirect shape given as `rd` lands on gatehouse's own origin;
 * sign-out ends the session at gatehouse and at the provider (RP-initiated logout), and the old
 * cookie is refused afterwards on the wire.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { launchBrowser, type TestBrowser } from '../helpers/browser.ts'
import { BROWSER_CLIENT_SECRET, startOidcProvider, type OidcProvider, browserLoginEnv } from '../helpers/oidcProvider.ts'
import { assertNoSecretsInLogs, startProxy, waitReady, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const SESSION = '__Host-gatehouse-session'

/** The open-redirect shapes of issue 14 and oauth2-proxy's advisories. */
export const OPEN_REDIRECTS = [
  '//evil.example',
  '/\\evil.example',
  '/%09/evil.example',
  '/%2F%2Fevil.example',
  'https:evil.example',
  '\\\\evil.example',
  'ht\ttps://evil.example',
  'ht\ntps://evil.example',
  'java\tscript:alert(1)',
  '/@evil.example',
  '//user@evil.example',
  'https://evil.example/',
  '/%5Cevil.example',
  '/.//evil.example',
  ' //evil.example',
]

describe('browser sign-in in Chromium with oidc-provider', () => {
  let op: OidcProvider
  let up: RecordingUpstream
  let gh: TestProxy
  let browser: TestBrowser
  let page: Page
  const hosts = new Set<string>()

  before(async () => {
    op = await startOidcProvider()
    up = await startUpstream()
    gh = await startProxy({
      env: {
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_UPSTREAM_URL: up.url,
        ...browserLoginEnv(op.issuer),
        AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups',
      },
    })
    await op.enableBrowserClient({ redirectUris: [`${gh.url}/oauth2/callback`], postLogoutRedirectUris: [`${gh.url}/oauth2/signed_out`] })
    await waitReady(gh)
    browser = await launchBrowser({ trustCertificates: [gh.ca as string] })
    ;({ page } = await browser.newPage())
    page.on('request', (r) => hosts.add(new URL(r.url()).host))
    // The upstream application's own cookie: it must reach the upstream untouched.
    await browser.context.addCookies([{ name: 'app_pref', value: 'dark', url: gh.url }])
  })

  after(async () => {
    await browser?.close()
    await gh?.stop()
    await up?.close()
    await op?.close()
  })

  it('a protected page sends the browser to the provider, and back after its login', async () => {
    await page.goto(`${gh.url}/app/dashboard?tab=1`)
    assert.ok(page.url().startsWith(`${op.issuer}/interaction/`), `at the provider's login, not ${page.url()}`)
    await page.fill('input[name=login]', 'alice')
    await page.fill('input[name=password]', 'any-password')
    up.reset()
    await Promise.all([page.waitForURL(`${gh.url}/app/dashboard?tab=1`), page.click('button[type=submit]')])
    const seen = JSON.parse((await page.textContent('body')) ?? '{}') as { path?: string }
    assert.ok(seen !== undefined)
    const r = up.requests.find((x) => x.url === '/app/dashboard?tab=1')
    assert.ok(r !== undefined, 'the upstream got the page request')
    assert.equal(r.headers['x-forwarded-user'], 'alice')
    assert.equal(r.headers['x-forwarded-auth-method'], 'oidc')
    assert.equal(r.headers['x-forwarded-groups'], 'readers,team-alice')
    assert.equal(r.headers['x-forwarded-email'], 'alice@example.test')
    const cookie = String(r.headers.cookie ?? '')
    assert.match(cookie, /(^|; )app_pref=dark(;|$)/, 'the application cookie passes')
    assert.doesNotMatch(cookie, /__Host-gatehouse/i, 'no gatehouse cookie reaches the upstream')
    const own = (await browser.context.cookies(gh.url)).find((c) => c.name === SESSION)
    assert.ok(own !== undefined, 'the session cookie is set')
    assert.equal(own.httpOnly, true)
    assert.equal(own.secure, true)
    assert.equal(own.sameSite, 'Lax')
    assert.equal(own.path, '/')
    assert.equal((await browser.context.cookies(gh.url)).some((c) => c.name === '__Host-gatehouse-flow'), false, 'the flow cookie was cleared')
  })

  it('every open-redirect shape given as rd lands on gatehouse’s own origin', async () => {
    const origin = new URL(gh.url).origin
    for (const rd of OPEN_REDIRECTS) {
      hosts.clear()
      // Signed in at the provider already: /oauth2/start → provider → callback → rd, no page in between.
      await page.goto(`${gh.url}/oauth2/start?rd=${encodeURIComponent(rd)}`)
      await page.waitForURL((u) => u.origin === origin && !u.pathname.startsWith('/oauth2/'))
      assert.equal(new URL(page.url()).origin, origin, `rd ${JSON.stringify(rd)} left the origin: ${page.url()}`)
      assert.equal(new URL(page.url()).pathname, '/', `rd ${JSON.stringify(rd)} → ${page.url()}`)
      for (const h of hosts) assert.ok(h === new URL(gh.url).host || h === new URL(op.issuer).host, `rd ${JSON.stringify(rd)} made the browser contact ${h}`)
    }
    // And the raw, unencoded forms in the query.
    for (const raw of ['//evil.example', '/%2F%2Fevil.example', '/\\evil.example', '%2F%2Fevil.example']) {
      await page.goto(`${gh.url}/oauth2/start?rd=${raw}`)
      await page.waitForURL((u) => u.origin === origin && !u.pathname.startsWith('/oauth2/'))
      assert.equal(new URL(page.url()).pathname, '/', `raw rd ${raw} → ${page.url()}`)
    }
  })

  it('an API call from the signed-in page (fetch) is authenticated by the session', async () => {
    up.reset()
    const status = await page.evaluate(async () => (await fetch('/api/data', { headers: { accept: 'application/json' } })).status)
    assert.equal(status, 200)
    assert.equal(up.requests.at(-1)?.headers['x-forwarded-user'], 'alice')
  })

  it('sign-out ends the session here and at the provider; the old cookie is refused', async () => {
    const old = (await browser.context.cookies(gh.url)).find((c) => c.name === SESSION)?.value as string
    await page.goto(`${gh.url}/oauth2/sign_out`)
    // The provider's RP-initiated logout asks for confirmation.
    assert.ok(page.url().startsWith(`${op.issuer}/session/end`), `at the provider's logout, not ${page.url()}`)
    await Promise.all([page.waitForURL(`${gh.url}/oauth2/signed_out`), page.click('button[value=yes]')])
    assert.match((await page.textContent('h1')) ?? '', /signed out/i)
    assert.equal((await browser.context.cookies(gh.url)).some((c) => c.name === SESSION), false, 'the session cookie is gone')
    up.reset()
    const raw = await gh.request('/app/dashboard', { headers: { cookie: `${SESSION}=${old}`, accept: 'application/json' } })
    assert.equal(raw.status, 401)
    assert.equal(raw.json().reason, 'ERR_UNAUTHENTICATED')
    const nav = await gh.request('/app/dashboard', { headers: { cookie: `${SESSION}=${old}`, accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' } })
    assert.equal(nav.status, 302)
    assert.equal(up.requests.length, 0, 'the upstream saw nothing')
    await page.goto(`${gh.url}/app/dashboard`)
    assert.ok(page.url().startsWith(`${op.issuer}/interaction/`), `the next page load goes to the provider again, not ${page.url()}`)
  })

  it('no code, token, state or session id reached the logs', () => {
    assertNoSecretsInLogs(gh.logs, [BROWSER_CLIENT_SECRET])
    for (const l of gh.logs) assert.doesNotMatch(l, /code=|state=|__Host-gatehouse-session=/, l.slice(0, 200))
  })
})
