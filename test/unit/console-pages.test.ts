/**
 * The console's pages rendered alone (no sockets): user-controlled text is escaped everywhere it
 * appears (text, attributes, confirm prompts), every form carries the CSRF field, every input has
 * a label, read-only users get no forms, the navigation follows the role, and the helpers that
 * shape what the status page shows never leak a credential from the upstream URL.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseForm } from '../../src/console/form.ts'
import { page, type Viewer } from '../../src/console/layout.ts'
import { accountPage, forcedPasswordPage, loginPage, securityPage, statusPage, usersPage, type SecurityView, type StatusView } from '../../src/console/pages.ts'
import { age, displayUrl } from '../../src/console/status.ts'
import { html } from '../../src/http/html.ts'

const EVIL = `"><script>alert(1)</script><img src=x onerror=alert(2)>'\``
const admin: Viewer = { username: 'admin', role: 'admin', csrf: 'TOKEN-abc', mustChangePassword: false }
const reader: Viewer = { ...admin, username: 'reader', role: 'readonly' }
const regular: Viewer = { ...admin, username: 'alice', role: 'regular' }

const security: SecurityView = {
  lockout: { failedAttempts: 5, lockoutDuration: '2m' },
  banner: { text: EVIL, enabled: true },
  tls: { source: 'self-signed', subject: EVIL, notAfter: '2030-01-01 00:00 UTC', fingerprint: 'AA:BB', names: 'localhost' },
  ca: { subject: EVIL, notAfter: '2030-01-01 00:00 UTC', fingerprint: 'CC:DD' },
}
const status: StatusView = {
  version: '1.2.3',
  ready: false,
  checks: [{ name: 'Listeners', ok: true, detail: 'bound' }],
  listeners: [{ name: 'Data listener', url: 'https://127.0.0.1:1' }],
  tls: 'self-signed',
  issuers: [{ issuer: `https://idp.example/${EVIL}`, ready: false, keys: 0, age: 'never', lastError: EVIL }],
  upstream: { url: 'http://up:8080', state: 'unreachable', detail: 'TCP connection failed (ECONNREFUSED)' },
  localUsers: 2,
}

/** Every page a viewer can get, as HTML text. */
function all(v: Viewer): [string, string][] {
  return [
    ['login', loginPage({ banner: EVIL, notices: [{ kind: 'bad', text: EVIL }], username: EVIL, csrf: 'LOGIN-tok', version: '1' }).toString()],
    ['forced', forcedPasswordPage({ ...v, mustChangePassword: true }, '1', []).toString()],
    ['status', statusPage(v, status, [{ kind: 'ok', text: EVIL }]).toString()],
    ['users', usersPage(v, [{ username: EVIL, role: 'regular', locked: true, mustChangePassword: false }, { username: v.username, role: v.role, locked: false, mustChangePassword: false }], [], '1', { username: EVIL, role: EVIL }).toString()],
    ['account', accountPage(v, { idleTimeout: '30m', defaultTokenLifetime: '30d' }, [], '1', { value: `tok${EVIL}`, expires: ' never expires' }).toString()],
    ['security', securityPage(v, security, [], '1').toString()],
  ]
}

describe('console pages', () => {
  it('escape user-controlled text everywhere: no element, attribute or script is made from it', () => {
    for (const [name, text] of all(admin)) {
      // Attribute values cannot end early (a quote in them is &quot;), so drop them and look at the markup.
      const markup = text.replace(/"[^"]*"/g, '""')
      assert.doesNotMatch(markup, /<script>alert|<img\b|<[a-z][^>]*\sonerror=/i, name)
      // The only script is the console's file.
      assert.deepEqual(text.match(/<script[^>]*>/g), ['<script src="/ui/assets/console.js" defer>'], name)
      assert.doesNotMatch(text, /\sstyle=|<style/, `${name}: no inline style`)
    }
    const login = all(admin)[0]?.[1] as string
    assert.ok(login.includes('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;'), 'the banner is text')
    assert.ok(login.includes('&#39;&#96;'), 'quotes and backticks are escaped too')
  })

  it('every form posts with the session’s CSRF field', () => {
    for (const v of [admin, reader, regular]) {
      for (const [name, text] of all(v)) {
        const forms = text.split('<form').slice(1)
        for (const f of forms) {
          assert.match(f, /^[^>]*method="post"/, `${name}: every form posts`)
          const token = name === 'login' ? 'LOGIN-tok' : v.csrf
          assert.ok(f.includes(`<input type="hidden" name="_csrf" value="${token}">`), `${name}: a form without the CSRF field: ${f.slice(0, 120)}`)
        }
      }
    }
  })

  it('every visible input, select and textarea has a label', () => {
    for (const [name, text] of all(admin)) {
      for (const m of text.matchAll(/<(input|select|textarea)\b([^>]*)>/g)) {
        const attrs = m[2] as string
        if (/type="hidden"/.test(attrs)) continue
        if (/aria-label="/.test(attrs)) continue
        const id = /\bid="([^"]+)"/.exec(attrs)?.[1]
        if (id === undefined) {
          // A checkbox wrapped in its label.
          assert.match(attrs, /type="checkbox"/, `${name}: an input without id: ${attrs}`)
          continue
        }
        assert.ok(text.includes(`<label for="${id}"`), `${name}: no label for #${id}`)
      }
    }
  })

  it('read-only users get the facts without forms (except sign-out and their own account)', () => {
    const users = usersPage(reader, [{ username: 'bob', role: 'regular', locked: true, mustChangePassword: false }], [], '1').toString()
    assert.doesNotMatch(users, /action="\/ui\/users/)
    assert.match(users, /read-only access/)
    const sec = securityPage(reader, security, [], '1').toString()
    assert.doesNotMatch(sec, /action="\/ui\/security/)
    assert.match(sec, /5/)
  })

  it('the navigation follows the role; before the first password change there is none', () => {
    const nav = (v: Viewer): string[] => [...page({ title: 't', viewer: v, body: html``, version: '1' }).toString().matchAll(/<nav[^>]*>(.*?)<\/nav>/gs)].flatMap((m) => [...(m[1] as string).matchAll(/>([^<]+)<\/a>/g)].map((x) => x[1] as string))
    assert.deepEqual(nav(admin), ['Status', 'Users', 'Security', 'My account'])
    assert.deepEqual(nav(reader), ['Status', 'Users', 'Security', 'My account'])
    assert.deepEqual(nav(regular), ['Status', 'My account'])
    assert.deepEqual(nav({ ...admin, mustChangePassword: true }), [])
  })

  it('the sign-in page focuses the first empty field and shows no banner when there is none', () => {
    const empty = loginPage({ banner: undefined, notices: [], username: '', csrf: 't', version: '1' }).toString()
    assert.doesNotMatch(empty, /data-testid="banner"/)
    assert.match(empty, /id="username"[^>]*autofocus/)
    const again = loginPage({ banner: undefined, notices: [], username: 'bob', csrf: 't', version: '1' }).toString()
    assert.match(again, /id="password"[^>]*autofocus/)
    assert.doesNotMatch(again, /id="username"[^>]*autofocus/)
  })
})

describe('console helpers', () => {
  it('parseForm keeps the first value of a repeated field (a second _csrf cannot override the first)', () => {
    const f = parseForm('_csrf=a&_csrf=b&name=x+y&e=%3Cb%3E')
    assert.equal(f.get('_csrf'), 'a')
    assert.equal(f.get('name'), 'x y')
    assert.equal(f.get('e'), '<b>')
  })

  it('displayUrl never shows user info, a query or a fragment of the upstream URL', () => {
    assert.equal(displayUrl('https://user:s3cret@db.example:8443/base?key=abc#x'), 'https://db.example:8443/base')
    assert.equal(displayUrl('http://db:8080/'), 'http://db:8080')
    assert.equal(displayUrl('echo:'), 'echo: (built-in echo upstream)')
    assert.equal(displayUrl('::'), '(not a URL)')
  })

  it('age says how long ago keys were loaded', () => {
    const now = Date.parse('2026-01-01T12:00:00Z')
    assert.equal(age(undefined, now), 'never')
    assert.equal(age('2026-01-01T11:59:30Z', now), '30 s ago')
    assert.equal(age('2026-01-01T11:55:00Z', now), '5 min ago')
    assert.equal(age('2026-01-01T09:30:00Z', now), '2 h 30 min ago')
    assert.equal(age('2025-12-29T12:00:00Z', now), '3 d ago')
  })
})
