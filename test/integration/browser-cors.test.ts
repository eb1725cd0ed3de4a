/**
 * CORS preflights in a real browser (SPEC §6): a page on another origin calls gatehouse with
 * `fetch` — POST, `Authorization: Bearer <key>`, `Content-Type: application/json`, which makes
 * Chromium send a preflight first. The preflight carries no credential (browsers never put one
 * on it), so it works only because gatehouse treats it as public and forwards it, without any
 * identity header, to the upstream, which answers CORS itself as Weaviate does. Then the POST
 * is authenticated and forwarded with the key's identity, without the key.
 *
 * Everything is real: Debian's Chromium (test/helpers/browser.ts), gatehouse over TLS with its
 * generated local CA, a page server and a Weaviate-like upstream, all on 127.0.0.1:0.
 * GATEHOUSE_SCREENSHOTS=1 also writes docs/images/browser-cors.png.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { launchBrowser, recordNetwork, screenshot, SCREENSHOTS_WANTED, type NetworkRecord, type TestBrowser } from '../helpers/browser.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import type { Page } from 'playwright-core'

const KEY = 'valid-5c1e7a9f2b4d86'
const WRONG_KEY = 'wrong-0d93b2e8a1c755'
const USER = 'browser-app'
const IDENTITY = ['x-forwarded-user', 'x-forwarded-groups', 'x-forwarded-email', 'x-forwarded-auth-method']
const SCREENSHOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/images/browser-cors.png')

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

interface Server {
  url: string
  close(): Promise<void>
}

async function listen(server: http.Server): Promise<Server> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * An upstream that answers CORS itself the way Weaviate does: the request's Origin echoed in
 * Access-Control-Allow-Origin, on the preflight and on the answer, and Authorization among the
 * allowed headers. It records what it saw and echoes a POST's body.
 */
async function startCorsUpstream(): Promise<Server & { seen: Seen[] }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      const cors = {
        'access-control-allow-origin': req.headers.origin ?? '*',
        vary: 'Origin',
      }
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          ...cors,
          'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
          'access-control-allow-headers': 'Content-Type, Authorization, Batch, X-Openai-Api-Key',
          // Chromium caches a preflight for 5 s by default; 0 makes each call send its own, so
          // each test sees the preflight of its own call on the upstream.
          'access-control-max-age': '0',
        })
        res.end()
        return
      }
      res.writeHead(200, { ...cors, 'content-type': 'application/json' })
      res.end(body)
    })
  })
  return { ...(await listen(server)), seen }
}

// The page: a static HTML file, a script and a stylesheet, no inline script or style, under a
// CSP that forbids both (as the console's pages will be). The target URL is in a data attribute.
const SCRIPT = `
const main = document.querySelector('main')
const target = main.dataset.target
const rows = document.getElementById('rows')
document.getElementById('send').addEventListener('click', async () => {
  const key = document.getElementById('key').value
  const body = JSON.stringify({ class: 'Article', properties: { title: 'hello from the browser' } })
  const row = document.createElement('tr')
  // Only the start of the key is shown: a page (or its screenshot) never displays a whole secret.
  document.getElementById('key').value = ''
  const cells = ['POST ' + new URL(target).pathname, key.slice(0, 6) + '…', '…', ''].map((text) => {
    const td = document.createElement('td')
    td.textContent = text
    row.appendChild(td)
    return td
  })
  rows.appendChild(row)
  try {
    const res = await fetch(target, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
      body,
    })
    const text = await res.text()
    cells[2].textContent = String(res.status)
    cells[3].textContent = text === body ? 'body echoed by the upstream' : text
    row.className = res.ok ? 'ok' : 'bad'
  } catch (err) {
    cells[2].textContent = 'network error'
    cells[3].textContent = String(err)
    row.className = 'bad'
  }
  row.dataset.status = cells[2].textContent
})
`

const STYLE = `
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2328; background: #f6f8fa; margin: 0; }
main { max-width: 820px; margin: 32px auto; background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 24px 28px; }
h1 { font-size: 20px; margin: 0 0 4px; }
p { margin: 0 0 16px; color: #57606a; }
code { font: 13px ui-monospace, monospace; background: #eff1f3; padding: 1px 4px; border-radius: 4px; }
.form { display: flex; gap: 8px; margin-bottom: 16px; }
input { flex: 1; font: 14px ui-monospace, monospace; padding: 6px 8px; border: 1px solid #d0d7de; border-radius: 6px; }
button { padding: 6px 14px; border: 1px solid #1f883d; background: #1f883d; color: #fff; border-radius: 6px; font-weight: 600; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #d8dee4; vertical-align: top; }
td:nth-child(2) { font-family: ui-monospace, monospace; font-size: 12px; }
tr.ok td:nth-child(3) { color: #1a7f37; font-weight: 600; }
tr.bad td:nth-child(3) { color: #cf222e; font-weight: 600; }
p.note { margin: 16px 0 0; font-size: 13px; }
`

function pageHtml(target: string, pageOrigin: string): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A browser app calling gatehouse</title>
<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head>
<body><main data-target="${esc(target)}">
<h1>A browser app on another origin calling gatehouse</h1>
<p>Page origin <code>${esc(pageOrigin)}</code> → gatehouse <code>${esc(new URL(target).origin)}</code> → a Weaviate-like upstream that answers CORS itself.</p>
<div class="form"><input id="key" aria-label="API key" placeholder="API key" autocomplete="off"><button id="send" type="button">POST with this key</button></div>
<table><thead><tr><th>request</th><th>API key</th><th>status</th><th>result</th></tr></thead><tbody id="rows"></tbody></table>
<p class="note">A cross-origin script reads a response only when it carries <code>Access-Control-Allow-Origin</code>. The upstream adds it; gatehouse's own 401 does not, so for a wrong key the script sees only a network error.</p>
</main></body></html>
`
}

async function startPageServer(target: string): Promise<Server> {
  let origin = ''
  const server = http.createServer((req, res) => {
    const csp = `default-src 'none'; script-src 'self'; style-src 'self'; connect-src ${new URL(target).origin}`
    const send = (type: string, body: string): void => {
      res.writeHead(200, { 'content-type': type, 'content-security-policy': csp, 'cache-control': 'no-store' })
      res.end(body)
    }
    if (req.url === '/') send('text/html; charset=utf-8', pageHtml(target, origin))
    else if (req.url === '/app.js') send('text/javascript; charset=utf-8', SCRIPT)
    else if (req.url === '/app.css') send('text/css; charset=utf-8', STYLE)
    else {
      res.writeHead(404)
      res.end()
    }
  })
  const s = await listen(server)
  origin = s.url
  return s
}

/** Type a key, click, and wait until the page has written the call's row; its status and text. */
async function call(page: Page, key: string): Promise<{ status: string; result: string }> {
  const finished = page.locator('#rows tr[data-status]')
  const n = await finished.count()
  await page.fill('#key', key)
  await page.click('#send')
  const row = finished.nth(n)
  await row.waitFor({ timeout: 10_000 })
  return { status: (await row.getAttribute('data-status')) ?? '', result: (await row.locator('td').nth(3).textContent()) ?? '' }
}

describe('CORS in Chromium: a page on another origin POSTs through gatehouse with an API key', { timeout: 90_000 }, () => {
  let up: Server & { seen: Seen[] }
  let proxy: TestProxy
  let site: Server
  let browser: TestBrowser
  let page: Page
  let consoleLines: string[]
  let target: string

  before(async () => {
    usedSecrets.add(KEY)
    usedSecrets.add(WRONG_KEY)
    up = await startCorsUpstream()
    proxy = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
        AUTHENTICATION_APIKEY_USERS: USER,
      },
    })
    target = `${proxy.url}/v1/objects`
    site = await startPageServer(target)
    assert.ok(proxy.ca !== undefined, 'gatehouse serves TLS with its generated certificate')
    // Chromium trusts exactly the key of the certificate gatehouse serves.
    browser = await launchBrowser({ trustCertificates: [proxy.ca] })
    ;({ page, console: consoleLines } = await browser.newPage())
    await page.goto(`${site.url}/`)
  })

  after(async () => {
    await browser?.close()
    await site?.close()
    await proxy?.stop()
    await up?.close()
    if (proxy !== undefined) assertNoSecretsInLogs(proxy.logs)
  })

  it('the preflight is forwarded without identity, the POST with the key\'s user and without the key, and the page reads the echoed body', async () => {
    up.seen.length = 0
    const r = await call(page, KEY)
    assert.equal(r.status, '200', `page saw ${JSON.stringify(r)}; console: ${consoleLines.join(' | ')}`)
    assert.equal(r.result, 'body echoed by the upstream')

    assert.deepEqual(up.seen.map((s) => s.method), ['OPTIONS', 'POST'], 'the upstream saw the preflight, then the POST')
    const [pre, post] = up.seen as [Seen, Seen]
    assert.equal(pre.url, '/v1/objects')
    assert.equal(pre.headers.origin, site.url, 'the preflight came from the page')
    assert.equal(pre.headers['access-control-request-method'], 'POST')
    assert.match(pre.headers['access-control-request-headers'] ?? '', /authorization/)
    assert.match(pre.headers['access-control-request-headers'] ?? '', /content-type/)
    for (const h of IDENTITY) assert.equal(pre.headers[h], undefined, `${h} reached the upstream on the preflight`)
    assert.equal(pre.headers.authorization, undefined)

    assert.equal(post.url, '/v1/objects')
    assert.equal(post.headers.origin, site.url)
    assert.equal(post.headers['x-forwarded-user'], USER)
    assert.equal(post.headers['x-forwarded-auth-method'], 'apikey')
    assert.equal(post.headers.authorization, undefined, 'the key did not reach the upstream')
    assert.equal(post.headers['content-type'], 'application/json')
    assert.deepEqual(JSON.parse(post.body), { class: 'Article', properties: { title: 'hello from the browser' } })
  })

  it('a wrong key: gatehouse answers 401, which the page cannot read (no CORS headers), and the POST never reaches the upstream', async () => {
    up.seen.length = 0
    // gatehouse answers the 401 itself, and it does not speak CORS (the upstream does), so the
    // 401 has no Access-Control-Allow-Origin: Chromium withholds it from the page and fetch
    // rejects with a TypeError — a cross-origin script learns nothing about why. The status is
    // asserted where it is visible: on the wire (Chromium's network layer, through the DevTools
    // protocol) and in gatehouse's access log.
    const network = await recordNetwork(page)
    const r = await call(page, WRONG_KEY)
    assert.equal(r.status, 'network error', `page saw ${JSON.stringify(r)}`)
    assert.match(r.result, /TypeError: Failed to fetch/)
    const posts = network.filter((n) => n.url === target && n.method === 'POST')
    assert.equal(posts.length, 1, JSON.stringify(network))
    const res = posts[0] as NetworkRecord
    assert.equal(res.status, 401, 'on the wire, gatehouse answered 401')
    assert.equal(res.corsError, 'MissingAllowOriginHeader', 'and Chromium withheld it from the page for lack of CORS headers')
    assert.match(res.headers['www-authenticate'] ?? '', /^Bearer realm="gatehouse", error="invalid_token"/)
    // The same request in gatehouse's access log, by the request id the browser received.
    const line = proxy.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === res.headers['x-request-id'] && l.msg === 'request')
    assert.equal(line?.status, 401)
    assert.equal(line?.reason, 'ERR_INVALID_API_KEY')
    assert.equal(res.headers['access-control-allow-origin'], undefined)
    const preflight = network.find((n) => n.url === target && n.type === 'Preflight')
    assert.equal(preflight?.status, 204, 'the preflight itself succeeded (answered by the upstream)')

    // The preflight (no credential on it) was forwarded and answered by the upstream; the POST
    // with the wrong key was stopped at gatehouse.
    assert.deepEqual(up.seen.map((s) => s.method), ['OPTIONS'])
    for (const h of IDENTITY) assert.equal(up.seen[0]?.headers[h], undefined)

    if (SCREENSHOTS_WANTED) {
      await page.setViewportSize({ width: 900, height: 400 })
      await screenshot(page, SCREENSHOT)
    }
  })
})
