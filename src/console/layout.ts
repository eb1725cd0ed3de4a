/**
 * The console's page shell: header (product, navigation, who is signed in, sign-out), notices,
 * and the shells of the sign-in and error pages. Every value goes through `html`, which escapes
 * it; markup comes only from the templates here and in pages.ts.
 */
import { html, type SafeHtml } from '../http/html.ts'

/** A user's role as the console uses it. */
export type Role = 'admin' | 'readonly' | 'regular'

/** Who is looking at a page. */
export interface Viewer {
  readonly username: string
  readonly role: Role
  /** The session's CSRF token, for every form on the page. */
  readonly csrf: string
  /** The default admin before its first password change: no navigation, only sign-out. */
  readonly mustChangePassword: boolean
}

/** A notice above the page content. */
export interface Notice {
  readonly kind: 'ok' | 'bad' | 'info' | 'warn'
  readonly text: string
}

/** The pages of the navigation, and who sees each. */
export type NavKey = 'status' | 'users' | 'security' | 'account'

const NAV: readonly { readonly key: NavKey; readonly label: string; readonly href: string; readonly roles: readonly Role[] }[] = [
  { key: 'status', label: 'Status', href: '/ui/status', roles: ['admin', 'readonly', 'regular'] },
  { key: 'users', label: 'Users', href: '/ui/users', roles: ['admin', 'readonly'] },
  { key: 'security', label: 'Security', href: '/ui/security', roles: ['admin', 'readonly'] },
  { key: 'account', label: 'My account', href: '/ui/account', roles: ['admin', 'readonly', 'regular'] },
]

/** Whether `role` may open page `key`. */
export function mayView(role: Role, key: NavKey): boolean {
  return NAV.some((n) => n.key === key && n.roles.includes(role))
}

/** The hidden CSRF field of a form. */
export function csrfField(v: Viewer): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${v.csrf}">`
}

function head(title: string): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · gatehouse</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/console.css">
<script src="/ui/assets/console.js" defer></script>
</head>`
}

function notices(list: readonly Notice[]): SafeHtml {
  return html`${list.map((n) => html`<div class="notice ${n.kind}" role="${n.kind === 'bad' ? 'alert' : 'status'}">${n.text}</div>`)}`
}

const roleLabel: Readonly<Record<Role, string>> = { admin: 'admin', readonly: 'read-only', regular: 'regular' }

/** A signed-in page. */
export function page(opts: { title: string; viewer: Viewer; active?: NavKey; notices?: readonly Notice[]; body: SafeHtml; version: string }): SafeHtml {
  const v = opts.viewer
  const nav = v.mustChangePassword ? [] : NAV.filter((n) => n.roles.includes(v.role))
  return html`${head(opts.title)}
<body>
<a class="skip" href="#content">Skip to content</a>
<header class="top">
  <div class="brand"><span class="mark" aria-hidden="true"></span>gatehouse <span class="sub">console</span></div>
  <nav class="main" aria-label="Main">${nav.map((n) => html`<a href="${n.href}"${n.key === opts.active ? html` aria-current="page"` : ''}>${n.label}</a>`)}</nav>
  <div class="who">
    <span>Signed in as <strong data-testid="who">${v.username}</strong></span>
    <span class="role" data-testid="role">${roleLabel[v.role]}</span>
    <form method="post" action="/ui/logout">${csrfField(v)}<button type="submit">Sign out</button></form>
  </div>
</header>
<main id="content">
<h1>${opts.title}</h1>
${notices(opts.notices ?? [])}
${opts.body}
</main>
<footer>gatehouse ${opts.version} · admin listener</footer>
</body>
</html>
`
}

/** A page without a session (sign-in, errors before sign-in). */
export function bare(opts: { title: string; body: SafeHtml; version: string }): SafeHtml {
  return html`${head(opts.title)}
<body>
<main id="content" class="signin">
${opts.body}
</main>
<footer>gatehouse ${opts.version} · admin listener</footer>
</body>
</html>
`
}

/** The body of an error page (403, 404, …): a status, a sentence, and a way on. */
export function errorBody(status: number, heading: string, text: string, link: { href: string; label: string }): SafeHtml {
  return html`<div class="card error-page" data-testid="error-page">
  <div class="code">${status}</div>
  <h2>${heading}</h2>
  <p class="muted">${text}</p>
  <p><a href="${link.href}">${link.label}</a></p>
</div>`
}

export { notices }
