/**
 * The console's two static files, served from these constants under `/ui/assets/`. They are
 * files, not inline `<style>`/`<script>`, so the pages' Content-Security-Policy can say
 * `script-src 'self'; style-src 'self'` and an injected tag could never run (SPEC §10).
 * The script only enhances: every page works without it.
 */
import { createHash } from 'node:crypto'

const CSS = `
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --card: #fff; --brand: #1f4f8f; --brand-ink: #fff;
  --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5; --focus: #0969da; }
* { box-sizing: border-box; }
html { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink); background: var(--bg); }
body { margin: 0; min-height: 100vh; display: flex; flex-direction: column; }
a { color: var(--focus); }
:focus-visible { outline: 2px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 6px 10px; z-index: 10; }
header.top { background: var(--brand); color: var(--brand-ink); display: flex; align-items: center; gap: 24px; padding: 0 24px; min-height: 52px; flex-wrap: wrap; }
.brand { font-weight: 700; font-size: 17px; letter-spacing: .2px; display: flex; align-items: center; gap: 8px; white-space: nowrap; }
.brand .mark { width: 18px; height: 18px; border: 3px solid #fff; border-radius: 4px 4px 9px 9px; display: inline-block; }
.brand .sub { font-weight: 400; opacity: .8; }
nav.main { display: flex; gap: 4px; flex: 1; flex-wrap: wrap; }
nav.main a { color: #fff; text-decoration: none; padding: 6px 12px; border-radius: 6px; opacity: .88; }
nav.main a:hover { background: rgba(255,255,255,.12); opacity: 1; }
nav.main a[aria-current="page"] { background: rgba(255,255,255,.2); opacity: 1; font-weight: 600; }
nav.main a:focus-visible, header.top button:focus-visible { outline-color: #fff; }
.who { display: flex; align-items: center; gap: 10px; white-space: nowrap; }
.who .role { font-size: 12px; background: rgba(255,255,255,.2); padding: 1px 8px; border-radius: 10px; }
.who form { margin: 0; }
.who button { background: transparent; color: #fff; border: 1px solid rgba(255,255,255,.6); padding: 3px 10px; border-radius: 6px; cursor: pointer; font: inherit; font-size: 13px; }
.who button:hover { background: rgba(255,255,255,.12); }
main { width: 100%; max-width: 1040px; margin: 0 auto; padding: 24px; flex: 1; }
h1 { font-size: 22px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 12px; }
p { margin: 0 0 12px; }
.muted { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; align-items: start; }
.card > * + form, .card > * + form.stack { margin-top: 14px; }
.card > dl + p, .card > p + dl { margin-top: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; margin-bottom: 16px; }
.grid .card { margin-bottom: 0; }
.card.wide { grid-column: 1 / -1; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .4px; color: var(--muted); font-weight: 600; }
tr:last-child td { border-bottom: 0; }
td.actions { text-align: right; white-space: nowrap; }
td.actions form { display: inline; margin: 0 0 0 6px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; font-size: 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code, .mono { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.pill { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; background: #eff2f5; color: var(--muted); }
.pill.ok { background: var(--ok-bg); color: var(--ok); }
.pill.bad { background: var(--bad-bg); color: var(--bad); }
.pill.warn { background: var(--warn-bg); color: var(--warn); }
.notice { border-radius: 6px; padding: 10px 14px; margin: 0 0 16px; border: 1px solid; }
.notice.ok { background: var(--ok-bg); border-color: #aceebb; color: #116329; }
.notice.bad { background: var(--bad-bg); border-color: #ffcecb; color: #a40e26; }
.notice.info { background: #ddf4ff; border-color: #b6e3ff; color: #0a3069; }
.notice.warn { background: var(--warn-bg); border-color: #f5e0a0; color: #6c4a00; }
form.stack { display: flex; flex-direction: column; gap: 12px; margin: 0; }
.row { display: flex; gap: 12px; flex-wrap: wrap; align-items: flex-end; }
.row > .field { flex: 1; min-width: 160px; }
.field { display: flex; flex-direction: column; gap: 4px; }
label { font-weight: 600; font-size: 13px; }
.hint { font-size: 12px; color: var(--muted); font-weight: 400; }
input[type=text], input[type=password], input[type=number], select, textarea { font: inherit; font-size: 14px; padding: 7px 10px; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--ink); width: 100%; }
textarea { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; min-height: 90px; resize: vertical; }
textarea.text { font: inherit; font-size: 14px; }
input:focus, select:focus, textarea:focus { border-color: var(--focus); outline: 2px solid rgba(9,105,218,.3); outline-offset: 0; }
input[readonly] { background: var(--bg); }
.check { display: flex; align-items: center; gap: 8px; font-weight: 400; font-size: 14px; }
.check input { width: 16px; height: 16px; }
button, .button { font: inherit; font-size: 14px; font-weight: 600; padding: 7px 16px; border-radius: 6px; border: 1px solid var(--brand); background: var(--brand); color: #fff; cursor: pointer; }
button:hover { filter: brightness(1.1); }
button.secondary { background: #f6f8fa; color: var(--ink); border-color: var(--line); }
button.danger { background: #fff; color: var(--bad); border-color: #ffcecb; }
button.danger:hover { background: var(--bad); color: #fff; filter: none; }
button.small { padding: 3px 10px; font-size: 13px; font-weight: 500; }
.actions-row { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
.signin { flex: 1; display: flex; align-items: center; justify-content: center; padding: 32px 16px; flex-direction: column; gap: 16px; }
.signin .card { width: 100%; max-width: 400px; padding: 28px 28px 24px; margin: 0; }
.signin .brand { color: var(--brand); font-size: 22px; justify-content: center; margin-bottom: 4px; }
.signin .brand .mark { border-color: var(--brand); }
.signin .lede { text-align: center; color: var(--muted); margin-bottom: 20px; }
.signin button[type=submit] { width: 100%; padding: 9px; }
.banner { width: 100%; max-width: 560px; background: #fff; border: 1px solid var(--line); border-left: 4px solid var(--warn); border-radius: 6px; padding: 12px 16px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 14px; }
.banner strong { display: block; font-size: 12px; text-transform: uppercase; letter-spacing: .4px; color: var(--warn); margin-bottom: 4px; white-space: normal; }
.secret { display: flex; gap: 8px; }
.secret input { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.error-page { text-align: center; padding: 48px 16px; }
.error-page .code { font-size: 48px; font-weight: 700; color: var(--muted); margin-bottom: 8px; }
`

const JS = `'use strict'
// Copy buttons: <button data-copy="ID"> copies the value of the element ID.
for (const b of document.querySelectorAll('button[data-copy]')) {
  b.addEventListener('click', async () => {
    const field = document.getElementById(b.dataset.copy)
    if (field === null) return
    try {
      await navigator.clipboard.writeText(field.value)
    } catch {
      field.select()
      document.execCommand('copy')
    }
    b.textContent = 'Copied'
  })
}
// PEM files: <input type=file data-into="ID"> reads the chosen file into the textarea ID.
for (const input of document.querySelectorAll('input[type=file][data-into]')) {
  input.addEventListener('change', async () => {
    const f = input.files && input.files[0]
    const area = document.getElementById(input.dataset.into)
    if (f && area !== null) area.value = await f.text()
  })
}
// Destructive actions ask first: <form data-confirm="question">.
for (const form of document.querySelectorAll('form[data-confirm]')) {
  form.addEventListener('submit', (e) => {
    if (!window.confirm(form.dataset.confirm)) e.preventDefault()
  })
}
`

/** A static file of the console. */
export interface Asset {
  readonly body: string
  readonly type: string
  /** Strong ETag (SHA-256 of the body): the browser revalidates, a new version is never stale. */
  readonly etag: string
}

function asset(body: string, type: string): Asset {
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }
}

/** Path → file, under `/ui/assets/`. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ['/ui/assets/console.css', asset(CSS, 'text/css; charset=utf-8')],
  ['/ui/assets/console.js', asset(JS, 'text/javascript; charset=utf-8')],
])
