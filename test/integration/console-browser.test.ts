/**
 * The web console in a real Chromium (test/helpers/browser.ts) against a real gatehouse over TLS
 * (its generated certificate, trusted by key): the banner on the sign-in page, the forced first
 * password change, the lockout after 5 wrong passwords, a banner with `<script>` shown as text,
 * a form posted from another origin refused, `gatehouse user revoke-tokens` (the real CLI)
 * ending an open session, and the idle timeout. GATEHOUSE_SCREENSHOTS=1 also writes
 * docs/images/console-signin.png, console-users.png and console-security.png.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { launchBrowser, screenshot, SCREENSHOTS_WANTED, type TestBrowser } from '../helpers/browser.ts'
import { runCliAsync } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'

const IMAGES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/images')
const ADMIN_PW = 'Console-admin-9'
const ALICE_PW = 'Alice-console-1'
const BOB_PW = 'Bob-console-22'
const READER_PW = 'Reader-console-3'
const BANNER = 'Authorized use only. Activity on this system is monitored and recorded.\nContact the storage team (ext. 4410) before changing users or certificates.'
const EVIL_BANNER = 'Read this: <script>window.__bannerRan = 1</script><img src=x onerror="window.__bannerRan = 2"> & <b>not bold</b>'

/** Sign in on the sign-in page; resolves once the next page has loaded. */
async function signIn(page: Page, base: string, user: string, password: string): Promise<void> {
  if (!page.url().startsWith(`${base}/ui/login`)) await page.goto(`${base}/ui/login`)
  await page.fill('#username', user)
  await page.fill('#password', password)
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')])
}

async function signOut(page: Page): Promise<void> {
  await Promise.all([page.waitForNavigation(), page.click('header .who button')])
}

describe('the web console in Chromium', { timeout: 180_000 }, () => {
  let gh: TestProxy
  let browser: TestBrowser
  let page: Page
  let messages: string[]
  let base: string
  let home: string

  before(async () => {
    for (const s of [ADMIN_PW, ALICE_PW, BOB_PW, READER_PW]) usedSecrets.add(s)
    home = mkdtempSync(path.join(tmpdir(), 'gh-console-home-'))
    gh = await startProxy({
      env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_TLS_ENABLED: 'true' },
      yaml: `authentication:\n  local:\n    enabled: true\n    banner:\n      enabled: true\n      text: ${JSON.stringify(BANNER)}\n    loginThrottle:\n      maxFailures: 1000\n`,
      logLevel: 'info',
    })
    base = gh.adminUrl as string
    browser = await launchBrowser({ trustCertificates: [gh.ca as string] })
    ;({ page, console: messages } = await browser.newPage())
    page.on('dialog', (d) => void d.accept())
    await page.setViewportSize({ width: 1120, height: 760 })
  })

  after(async () => {
    await browser?.close()
    if (gh !== undefined) {
      await gh.stop()
      assertNoSecretsInLogs(gh.logs)
    }
    rmSync(home, { recursive: true, force: true })
  })

  it('the sign-in page shows the login banner above the form, as text', async () => {
    await page.goto(`${base}/ui/`)
    assert.equal(new URL(page.url()).pathname, '/ui/login', 'without a session every page leads to the sign-in page')
    const banner = page.locator('[data-testid=banner]')
    assert.equal(await banner.isVisible(), true)
    assert.match((await banner.textContent()) ?? '', /Authorized use only\. Activity on this system is monitored/)
    // Above the form: the banner's box ends before the form's starts.
    const b = await banner.boundingBox()
    const f = await page.locator('form').boundingBox()
    assert.ok(b !== null && f !== null && b.y + b.height <= f.y, 'banner above the form')
    assert.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'username', 'the first field has the focus')
    if (SCREENSHOTS_WANTED) await screenshot(page, path.join(IMAGES, 'console-signin.png'))
  })

  it('admin/admin is forced through the password change and reaches nothing else before', async () => {
    await signIn(page, base, 'admin', 'admin')
    assert.equal(new URL(page.url()).pathname, '/ui/change-password')
    assert.equal(await page.locator('nav.main a').count(), 0, 'no navigation before the change')
    for (const p of ['/ui/status', '/ui/users', '/ui/security', '/ui/account']) {
      await page.goto(`${base}${p}`)
      assert.equal(new URL(page.url()).pathname, '/ui/change-password', `${p} leads back to the password change`)
    }
    // A weak password is refused with the rule it breaks.
    await page.fill('#old_password', 'admin')
    await page.fill('#new_password', 'weakpass')
    await page.fill('#confirm_password', 'weakpass')
    await Promise.all([page.waitForNavigation(), page.click('main button[type=submit]')])
    assert.match((await page.locator('.notice.bad').textContent()) ?? '', /uppercase|password/i)
    await page.fill('#old_password', 'admin')
    await page.fill('#new_password', ADMIN_PW)
    await page.fill('#confirm_password', ADMIN_PW)
    await Promise.all([page.waitForNavigation(), page.click('main button[type=submit]')])
    assert.equal(new URL(page.url()).pathname, '/ui/status')
    assert.match((await page.locator('.notice.ok').textContent()) ?? '', /Your password was changed/)
    assert.equal(await page.locator('[data-testid=who]').textContent(), 'admin')
    assert.match((await page.locator('main').textContent()) ?? '', /Readiness/)
  })

  it('an admin adds users and sees them listed (users page)', async () => {
    await page.click('nav.main a:has-text("Users")')
    assert.equal(new URL(page.url()).pathname, '/ui/users')
    for (const [name, role, pw] of [['alice', 'regular', ALICE_PW], ['bob', 'regular', BOB_PW], ['reader', 'readonly', READER_PW]] as const) {
      await page.fill('#add-username', name)
      await page.selectOption('#add-role', role)
      await page.fill('#add-password', pw)
      await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add user")')])
      assert.match((await page.locator('.notice.ok').textContent()) ?? '', /The user was added/)
    }
    const names = await page.locator('tbody tr[data-user]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-user')))
    assert.deepEqual([...names].sort(), ['admin', 'alice', 'bob', 'reader'])
    // A refused add says why, and keeps the name typed.
    await page.fill('#add-username', 'alice')
    await page.fill('#add-password', ALICE_PW)
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add user")')])
    assert.match((await page.locator('.notice.bad').textContent()) ?? '', /already exists/)
    await page.goto(`${base}/ui/users`)
    if (SCREENSHOTS_WANTED) await screenshot(page, path.join(IMAGES, 'console-users.png'))
  })

  it('the security page shows the lockout policy, the banner, the TLS certificate and the CA', async () => {
    await page.click('nav.main a:has-text("Security")')
    const main = (await page.locator('main').textContent()) ?? ''
    for (const s of ['Lockout policy', 'Login banner', 'TLS certificate', 'CA certificate', 'self-signed']) assert.ok(main.includes(s), s)
    assert.equal(await page.inputValue('#failed_attempts'), '5')
    assert.equal(await page.inputValue('#banner-text'), BANNER)
    if (SCREENSHOTS_WANTED) {
      await page.setViewportSize({ width: 1120, height: 900 })
      await screenshot(page, path.join(IMAGES, 'console-security.png'))
      await page.setViewportSize({ width: 1120, height: 760 })
    }
  })

  it('a banner containing <script> shows as text on the sign-in page, and no script runs', async () => {
    await page.fill('#banner-text', EVIL_BANNER)
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save banner")')])
    assert.match((await page.locator('.notice.ok').textContent()) ?? '', /banner was saved/)
    await signOut(page)
    assert.equal(new URL(page.url()).pathname, '/ui/login')
    const banner = page.locator('[data-testid=banner]')
    assert.equal(await banner.textContent(), `Notice${EVIL_BANNER}`, 'the banner is the text, character for character')
    assert.equal(await page.locator('[data-testid=banner] script, [data-testid=banner] img, [data-testid=banner] b').count(), 0, 'no element was made from the banner')
    await sleep(200)
    assert.equal(await page.evaluate('window.__bannerRan'), undefined, 'no script ran')
    // Back to the plain banner for the rest of the suite.
    await signIn(page, base, 'admin', ADMIN_PW)
    await page.goto(`${base}/ui/security`)
    await page.fill('#banner-text', BANNER)
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save banner")')])
  })

  it('after 5 wrong passwords the sign-in page says the account is locked', async () => {
    await signOut(page)
    for (let i = 1; i <= 5; i++) {
      await signIn(page, base, 'bob', `Wrong-password-${i}`)
      const text = (await page.locator('.notice.bad').textContent()) ?? ''
      assert.match(text, /Invalid username or password/, `attempt ${i}`)
      if (i < 5) assert.doesNotMatch(text, /locked/, `attempt ${i} does not lock yet`)
      else assert.match(text, /This account is now locked/, 'the fifth failure says the account is locked')
    }
    // Even the right password is refused while locked, with the lock named.
    await signIn(page, base, 'bob', BOB_PW)
    assert.equal(new URL(page.url()).pathname, '/ui/login')
    assert.match((await page.locator('.notice.bad').textContent()) ?? '', /This account is locked after too many failed sign-in attempts/)
    // The API answers the same: 429 for bob now.
    const api = await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'bob', password: BOB_PW }) })
    assert.equal(api.status, 429)
  })

  it('a form posted from another origin is refused and changes nothing', async () => {
    await signIn(page, base, 'admin', ADMIN_PW)
    assert.equal(new URL(page.url()).pathname, '/ui/status')
    // A page on another origin (a second local server) with a form aimed at the console.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(`<!doctype html><title>Win a prize</title><form method="post" action="${base}/ui/users">
<input name="username" value="mallory"><input name="role" value="admin"><input name="password" value="Mallory-pw-99"><input name="_csrf" value="guessed">
<button id="go" type="submit">Claim</button></form>`)
    })
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r))
    try {
      const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`
      await page.goto(evilUrl)
      const [resp] = await Promise.all([page.waitForNavigation(), page.click('#go')])
      assert.equal(resp?.status(), 403)
      assert.match((await page.locator('main').textContent()) ?? '', /not sent from this console’s own pages/)
    } finally {
      evil.closeAllConnections()
      await new Promise<void>((r) => evil.close(() => r()))
    }
    await page.goto(`${base}/ui/users`)
    assert.equal(await page.locator('tr[data-user="mallory"]').count(), 0, 'no user was created')
    assert.equal(new URL(page.url()).pathname, '/ui/users', 'the admin is still signed in')
  })

  it('a regular user sees status and My account only; admin pages answer a clear 403', async () => {
    await signOut(page)
    await signIn(page, base, 'alice', ALICE_PW)
    assert.equal(new URL(page.url()).pathname, '/ui/status')
    const nav = await page.locator('nav.main a').allTextContents()
    assert.deepEqual(nav, ['Status', 'My account'])
    assert.equal(await page.locator('[data-testid=role]').textContent(), 'regular')
    const r = await page.goto(`${base}/ui/users`)
    assert.equal(r?.status(), 403)
    assert.match((await page.locator('[data-testid=error-page]').textContent()) ?? '', /Not allowed/)
  })

  it('My account: a long-lived token is shown once with a copy button', async () => {
    await page.goto(`${base}/ui/account`)
    await page.fill('#token-timeout', '1d')
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Generate token")')])
    const token = await page.inputValue('[data-testid=new-token]')
    usedSecrets.add(token)
    assert.match(token, /^ey[\w-]+\.[\w-]+\.[\w-]+$/)
    assert.equal(await page.locator('button[data-copy=new-token]').count(), 1)
    // The token works on the admin API, as alice.
    const who = await gh.admin('/api/v2/users/whoami', { token })
    assert.equal(who.json().data.username, 'alice')
    await page.goto(`${base}/ui/account`)
    assert.equal(await page.locator('[data-testid=new-token]').count(), 0, 'shown once: not on the next visit')
  })

  it('gatehouse user revoke-tokens (the real CLI) ends an open console session: the next click lands on the sign-in page', async () => {
    await page.goto(`${base}/ui/status`)
    assert.equal(await page.locator('[data-testid=who]').textContent(), 'alice')
    const env = { HOME: home, GATEHOUSE_HOST: base, GATEHOUSE_STATE_DIR: path.join(gh.dir, 'state') }
    const login = await runCliAsync(['user', 'login', 'admin', ADMIN_PW], env, home)
    assert.equal(login.code, 0, login.stderr)
    const rev = await runCliAsync(['user', 'revoke-tokens', 'alice'], env, home)
    assert.equal(rev.code, 0, rev.stderr)
    await page.click('nav.main a:has-text("My account")')
    assert.equal(new URL(page.url()).pathname, '/ui/login')
    assert.match((await page.locator('.notice').first().textContent()) ?? '', /session has ended/)
    assert.deepEqual(messages.filter((m) => m.startsWith('pageerror')), [], 'no script error on any page')
  })
})

describe('the console idle timeout in Chromium', { timeout: 60_000 }, () => {
  let gh: TestProxy
  let browser: TestBrowser
  let page: Page

  before(async () => {
    usedSecrets.add(ADMIN_PW)
    gh = await startProxy({ env: { GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, GATEHOUSE_CONSOLE_IDLE_TIMEOUT: '3s' }, logLevel: 'info' })
    browser = await launchBrowser({ trustCertificates: [gh.ca as string] })
    ;({ page } = await browser.newPage())
  })

  after(async () => {
    await browser?.close()
    if (gh !== undefined) {
      await gh.stop()
      assertNoSecretsInLogs(gh.logs)
    }
  })

  it('with console.idleTimeout 3s, the next click after 4 s lands on the sign-in page with a "session expired" notice', async () => {
    const base = gh.adminUrl as string
    await signIn(page, base, 'admin', ADMIN_PW)
    assert.equal(new URL(page.url()).pathname, '/ui/status')
    await page.click('nav.main a:has-text("Users")')
    assert.equal(new URL(page.url()).pathname, '/ui/users', 'within the idle timeout the session holds')
    await sleep(4000)
    await page.click('nav.main a:has-text("Security")')
    assert.equal(new URL(page.url()).pathname, '/ui/login')
    assert.match((await page.locator('.notice').first().textContent()) ?? '', /Your session expired, sign in again/)
  })
})
