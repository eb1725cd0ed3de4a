/**
 * The data listener's own pages: sign-in, sign-in problems, signed out. Rendered with the
 * escaping `html` template (nothing user-controlled is ever markup) and served with PAGE_HEADERS
 * (no inline script or style: the stylesheet is a file of its own).
 */
import { html, PAGE_HEADERS, type SafeHtml } from '../http/html.ts'

/** Where the stylesheet is served. */
export const STYLESHEET_PATH = '/oauth2/static/gatehouse.css'

/** The stylesheet (a quiet, centred card, after Grafana's and Pomerium's sign-in pages). */
export const STYLESHEET = `:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--accent:#1f6feb;--accent-dark:#1158c7;--bg:#f6f8fa;--bad:#cf222e;--bad-bg:#ffebe9;--note-bg:#fff8c5;--note-line:#d4a72c}
*{box-sizing:border-box}
html,body{margin:0;padding:0}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg);min-height:100vh;display:flex;align-items:flex-start;justify-content:center}
main{width:100%;max-width:400px;margin:56px 16px}
.brand{display:flex;align-items:center;gap:10px;justify-content:center;margin-bottom:20px;font-weight:600;font-size:18px;letter-spacing:.2px}
.mark{width:28px;height:28px;border-radius:7px;background:var(--accent);display:inline-block;position:relative}
.mark::after{content:"";position:absolute;left:8px;top:6px;width:12px;height:16px;border:3px solid #fff;border-bottom:none;border-radius:6px 6px 0 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:28px 28px 24px;box-shadow:0 1px 3px rgba(31,35,40,.06)}
h1{font-size:20px;margin:0 0 6px;font-weight:600}
p.sub{margin:0 0 20px;color:var(--muted);font-size:14px}
.banner{white-space:pre-wrap;background:var(--note-bg);border:1px solid var(--note-line);border-radius:6px;padding:10px 12px;margin:0 0 18px;font-size:13px}
.error{background:var(--bad-bg);border:1px solid var(--bad);color:var(--bad);border-radius:6px;padding:10px 12px;margin:0 0 18px;font-size:14px}
.notice{background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:10px 12px;margin:0 0 18px;font-size:14px}
label{display:block;font-weight:600;font-size:14px;margin:0 0 6px}
input[type=text],input[type=password]{width:100%;font:inherit;padding:8px 10px;border:1px solid var(--line);border-radius:6px;margin:0 0 16px;background:#fff}
input:focus,.button:focus,button:focus{outline:2px solid var(--accent);outline-offset:1px}
.button,button{display:block;width:100%;text-align:center;font:inherit;font-weight:600;padding:9px 12px;border-radius:6px;border:1px solid var(--accent-dark);background:var(--accent);color:#fff;text-decoration:none;cursor:pointer}
.button:hover,button:hover{background:var(--accent-dark)}
.button.secondary{background:#fff;color:var(--fg);border-color:var(--line)}
.button.secondary:hover{background:var(--bg)}
.or{display:flex;align-items:center;gap:10px;color:var(--muted);font-size:13px;margin:18px 0}
.or::before,.or::after{content:"";flex:1;border-top:1px solid var(--line)}
.foot{text-align:center;color:var(--muted);font-size:12px;margin-top:16px}
`

/** What the sign-in page shows. */
export interface SignInPage {
  /** "Sign in with <issuer>" target, when OIDC is offered. */
  readonly oidcStart: string | undefined
  readonly issuerLabel: string | undefined
  /** The username/password form, when local users are offered. */
  readonly form: { readonly csrf: string; readonly rd: string; readonly username?: string } | undefined
  /** The login banner (text, escaped), when enabled. */
  readonly banner: string | undefined
  readonly error: string | undefined
  readonly notice?: string | undefined
}

function page(title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · gatehouse</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}">
</head>
<body>
<main>
<div class="brand"><span class="mark" aria-hidden="true"></span><span>gatehouse</span></div>
<div class="card">
${body}
</div>
<p class="foot">Protected by gatehouse</p>
</main>
</body>
</html>
`.toString()
}

/** The sign-in page of the data listener. */
export function signInPage(p: SignInPage): string {
  const f = p.form
  return page(
    'Sign in',
    html`<h1>Sign in</h1>
<p class="sub">Sign in to continue to this service.</p>
${p.banner === undefined ? '' : html`<div class="banner" role="note">${p.banner}</div>`}
${p.error === undefined ? '' : html`<div class="error" role="alert">${p.error}</div>`}
${p.notice === undefined ? '' : html`<div class="notice" role="status">${p.notice}</div>`}
${p.oidcStart === undefined ? '' : html`<a class="button${f === undefined ? '' : ' secondary'}" href="${p.oidcStart}">Sign in with ${p.issuerLabel ?? 'your identity provider'}</a>`}
${p.oidcStart !== undefined && f !== undefined ? html`<div class="or">or with a local account</div>` : ''}
${
  f === undefined
    ? ''
    : html`<form method="post" action="/oauth2/sign_in">
<input type="hidden" name="csrf" value="${f.csrf}">
<input type="hidden" name="rd" value="${f.rd}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required value="${f.username ?? ''}"${f.username === undefined || f.username === '' ? html` autofocus` : ''}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${f.username !== undefined && f.username !== '' ? html` autofocus` : ''}>
<button type="submit">Sign in</button>
</form>`
}`,
  )
}

/** A sign-in problem: what happened, in words, and a way to start again. Never the provider's raw text. */
export function problemPage(title: string, message: string, retry: string): string {
  return page(
    title,
    html`<h1>${title}</h1>
<p class="sub">${message}</p>
<a class="button" href="${retry}">Try again</a>`,
  )
}

/** After sign-out. */
export function signedOutPage(again: string): string {
  return page(
    'Signed out',
    html`<h1>You are signed out</h1>
<p class="sub">Your session has ended. Close the browser window, or sign in again.</p>
<a class="button" href="${again}">Sign in again</a>`,
  )
}

export { PAGE_HEADERS }
