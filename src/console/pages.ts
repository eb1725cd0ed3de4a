/**
 * The console's pages, rendered from plain data (no I/O here, so each can be tested alone).
 * Every value is escaped by `html`; admins see forms, read-only users the same facts without
 * them, regular users only status and their own account.
 */
import { html, type SafeHtml } from '../http/html.ts'
import { bare, csrfField, notices, page, type Notice, type Role, type Viewer } from './layout.ts'

// --- sign-in ---------------------------------------------------------------------------

/** What the sign-in page shows. */
export interface LoginView {
  readonly banner: string | undefined
  readonly notices: readonly Notice[]
  readonly username: string
  /** Token of the sign-in form (double-submitted with the pre-sign-in cookie). */
  readonly csrf: string
  readonly version: string
}

/** `/ui/login`: the banner (text, never HTML) above the form. */
export function loginPage(v: LoginView): SafeHtml {
  const body = html`${v.banner === undefined ? '' : html`<div class="banner" data-testid="banner"><strong>Notice</strong>${v.banner}</div>`}
<div class="card">
  <div class="brand"><span class="mark" aria-hidden="true"></span>gatehouse</div>
  <p class="lede">Sign in to the console</p>
  ${notices(v.notices)}
  <form class="stack" method="post" action="/ui/login">
    <input type="hidden" name="_csrf" value="${v.csrf}">
    <div class="field"><label for="username">Username</label><input type="text" id="username" name="username" value="${v.username}" autocomplete="username" autocapitalize="none" spellcheck="false" required${v.username === '' ? html` autofocus` : ''}></div>
    <div class="field"><label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required${v.username === '' ? '' : html` autofocus`}></div>
    <button type="submit">Sign in</button>
  </form>
</div>`
  return bare({ title: 'Sign in', body, version: v.version })
}

// --- forced password change --------------------------------------------------------------

/** The default admin's first stop: nothing else is reachable until the password is changed. */
export function forcedPasswordPage(viewer: Viewer, version: string, ns: readonly Notice[]): SafeHtml {
  const body = html`<div class="card">
  <p>This account still has its initial password. Choose a new one before you continue; until then nothing else in the console (or the admin API) is open to it.</p>
  ${passwordForm(viewer, '/ui/change-password', true)}
</div>`
  return page({ title: 'Change your password', viewer, notices: ns, body, version })
}

function passwordForm(viewer: Viewer, action: string, focus: boolean): SafeHtml {
  return html`<form class="stack" method="post" action="${action}">
    ${csrfField(viewer)}
    <div class="field"><label for="old_password">Current password</label><input type="password" id="old_password" name="old_password" autocomplete="current-password" required${focus ? html` autofocus` : ''}></div>
    <div class="field"><label for="new_password">New password <span class="hint">at least 8 characters, an uppercase and a lowercase letter, and a digit or a special character</span></label><input type="password" id="new_password" name="new_password" autocomplete="new-password" required></div>
    <div class="field"><label for="confirm_password">New password again</label><input type="password" id="confirm_password" name="confirm_password" autocomplete="new-password" required></div>
    <div class="actions-row"><button type="submit">Change password</button></div>
  </form>`
}

// --- status ------------------------------------------------------------------------------

/** One line of the readiness table. */
export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

/** What the status page shows. */
export interface StatusView {
  readonly version: string
  readonly ready: boolean
  readonly checks: readonly Check[]
  readonly listeners: readonly { readonly name: string; readonly url: string }[]
  readonly tls: string
  readonly issuers: readonly { readonly issuer: string; readonly ready: boolean; readonly keys: number; readonly age: string; readonly lastError: string | undefined }[]
  readonly upstream: { readonly url: string; readonly state: 'reachable' | 'unreachable' | 'builtin'; readonly detail: string }
  readonly localUsers: number
}

function pill(ok: boolean, yes: string, no: string): SafeHtml {
  return html`<span class="pill ${ok ? 'ok' : 'bad'}">${ok ? yes : no}</span>`
}

/** `/ui/status`: everyone signed in. */
export function statusPage(viewer: Viewer, s: StatusView, ns: readonly Notice[]): SafeHtml {
  const up = s.upstream
  const body = html`<div class="grid">
<section class="card" aria-labelledby="h-ready">
  <h2 id="h-ready">Readiness ${pill(s.ready, 'ready', 'not ready')}</h2>
  <table><tbody>${s.checks.map((c) => html`<tr><td>${c.name}</td><td>${pill(c.ok, 'ok', 'failing')}</td><td class="muted">${c.detail}</td></tr>`)}</tbody></table>
</section>
<section class="card" aria-labelledby="h-listeners">
  <h2 id="h-listeners">Listeners</h2>
  <dl class="facts">${s.listeners.map((l) => html`<dt>${l.name}</dt><dd class="mono">${l.url}</dd>`)}<dt>TLS certificate</dt><dd>${s.tls}</dd><dt>Version</dt><dd data-testid="version">gatehouse ${s.version}</dd></dl>
</section>
<section class="card" aria-labelledby="h-upstream">
  <h2 id="h-upstream">Upstream ${up.state === 'unreachable' ? pill(false, '', 'unreachable') : pill(true, up.state === 'builtin' ? 'built-in' : 'reachable', '')}</h2>
  <dl class="facts"><dt>URL</dt><dd class="mono">${up.url}</dd><dt>Check</dt><dd>${up.detail}</dd></dl>
</section>
<section class="card" aria-labelledby="h-local">
  <h2 id="h-local">Local users</h2>
  <p>${s.localUsers} ${s.localUsers === 1 ? 'user' : 'users'} in the state store.</p>
  <p class="muted">Access tokens, refresh tokens and console sessions are issued by gatehouse’s own issuer.</p>
</section>
<section class="card wide" aria-labelledby="h-oidc">
  <h2 id="h-oidc">OIDC issuers</h2>
  ${s.issuers.length === 0
    ? html`<p class="muted">No OIDC issuer is configured (authentication.oidc).</p>`
    : html`<table><thead><tr><th>Issuer</th><th>Keys</th><th>Loaded</th><th>State</th></tr></thead><tbody>${s.issuers.map(
        (i) => html`<tr><td class="mono">${i.issuer}</td><td>${i.keys}</td><td>${i.age}</td><td>${pill(i.ready, 'ready', 'no keys')}${i.lastError === undefined ? '' : html` <span class="muted">${i.lastError}</span>`}</td></tr>`,
      )}</tbody></table>`}
</section>
</div>`
  return page({ title: 'Status', viewer, active: 'status', notices: ns, body, version: s.version })
}

// --- users -------------------------------------------------------------------------------

/** One user as the users page lists it. */
export interface UserRow {
  readonly username: string
  readonly role: Role
  readonly locked: boolean
  readonly mustChangePassword: boolean
}

/** Form values to show again after a refused post (never a password). */
export interface UserFormValues {
  readonly username?: string
  readonly role?: string
}

function roleOptions(selected: string | undefined): SafeHtml {
  const roles: readonly [Role, string][] = [['regular', 'regular — manages only itself'], ['readonly', 'read-only — reads users and settings'], ['admin', 'admin — changes users and security']]
  return html`${roles.map(([r, label]) => html`<option value="${r}"${r === (selected ?? 'regular') ? html` selected` : ''}>${label}</option>`)}`
}

/** `/ui/users`: admins manage, read-only users read. */
export function usersPage(viewer: Viewer, users: readonly UserRow[], ns: readonly Notice[], version: string, values: UserFormValues = {}): SafeHtml {
  const admin = viewer.role === 'admin'
  const rows = users.map((u) => {
    const status = [u.locked ? html`<span class="pill bad">locked</span> ` : '', u.mustChangePassword ? html`<span class="pill warn">must change password</span>` : '', !u.locked && !u.mustChangePassword ? html`<span class="pill ok">active</span>` : '']
    const actions = !admin
      ? ''
      : html`<td class="actions">${u.locked ? html`<form method="post" action="/ui/users/${encodeURIComponent(u.username)}/unlock">${csrfField(viewer)}<button class="small secondary" type="submit">Unlock</button></form>` : ''}<form method="post" action="/ui/users/${encodeURIComponent(u.username)}/revoke" data-confirm="Revoke every token and end every session of ${u.username}?">${csrfField(viewer)}<button class="small secondary" type="submit">Revoke tokens</button></form>${u.username === viewer.username ? '' : html`<form method="post" action="/ui/users/${encodeURIComponent(u.username)}/delete" data-confirm="Delete the user ${u.username}? This cannot be undone.">${csrfField(viewer)}<button class="small danger" type="submit">Delete</button></form>`}</td>`
    return html`<tr data-user="${u.username}"><td><strong>${u.username}</strong>${u.username === viewer.username ? html` <span class="muted">(you)</span>` : ''}</td><td>${u.role}</td><td>${status}</td>${actions}</tr>`
  })
  const list = html`<section class="card wide" aria-labelledby="h-list">
  <h2 id="h-list">Local users</h2>
  <table><thead><tr><th>User</th><th>Role</th><th>Status</th>${admin ? html`<th class="actions"><span class="skip">Actions</span></th>` : ''}</tr></thead><tbody>${rows}</tbody></table>
</section>`
  if (!admin) {
    return page({ title: 'Users', viewer, active: 'users', notices: [{ kind: 'info', text: 'You have read-only access: only an admin can change users.' }, ...ns], body: html`<div class="grid">${list}</div>`, version })
  }
  const others = users.filter((u) => u.username !== viewer.username)
  const body = html`<div class="grid">
${list}
<section class="card" aria-labelledby="h-add">
  <h2 id="h-add">Add a user</h2>
  <form class="stack" method="post" action="/ui/users">
    ${csrfField(viewer)}
    <div class="field"><label for="add-username">Username</label><input type="text" id="add-username" name="username" value="${values.username ?? ''}" autocomplete="off" autocapitalize="none" spellcheck="false" required></div>
    <div class="field"><label for="add-role">Role</label><select id="add-role" name="role">${roleOptions(values.role)}</select></div>
    <div class="field"><label for="add-password">Password</label><input type="password" id="add-password" name="password" autocomplete="new-password" required></div>
    <div class="actions-row"><button type="submit">Add user</button></div>
  </form>
</section>
<section class="card" aria-labelledby="h-reset">
  <h2 id="h-reset">Reset a password</h2>
  ${others.length === 0
    ? html`<p class="muted">There is no other user. Change your own password under My account.</p>`
    : html`<form class="stack" method="post" action="/ui/users/password">
    ${csrfField(viewer)}
    <div class="field"><label for="reset-username">User</label><select id="reset-username" name="username">${others.map((u) => html`<option value="${u.username}">${u.username}</option>`)}</select></div>
    <div class="field"><label for="reset-password">New password</label><input type="password" id="reset-password" name="new_password" autocomplete="new-password" required></div>
    <p class="hint">The user’s tokens and console sessions end at once.</p>
    <div class="actions-row"><button type="submit">Set password</button></div>
  </form>`}
</section>
${others.length === 0
    ? ''
    : html`<section class="card" aria-labelledby="h-role">
  <h2 id="h-role">Change a role</h2>
  <form class="stack" method="post" action="/ui/users/role">
    ${csrfField(viewer)}
    <div class="field"><label for="role-username">User</label><select id="role-username" name="username">${others.map((u) => html`<option value="${u.username}">${u.username} (${u.role})</option>`)}</select></div>
    <div class="field"><label for="role-role">New role</label><select id="role-role" name="role">${roleOptions(undefined)}</select></div>
    <p class="hint">Tokens carry the role: the user’s tokens and sessions end, and they sign in again.</p>
    <div class="actions-row"><button type="submit">Change role</button></div>
  </form>
</section>`}
</div>`
  return page({ title: 'Users', viewer, active: 'users', notices: ns, body, version })
}

// --- my account --------------------------------------------------------------------------

/** `/ui/account`: the signed-in user's password and tokens. `token` is shown once, right after it was made. */
export function accountPage(viewer: Viewer, info: { idleTimeout: string; defaultTokenLifetime: string }, ns: readonly Notice[], version: string, token?: { value: string; expires: string }): SafeHtml {
  const body = html`<div class="grid">
<section class="card" aria-labelledby="h-me">
  <h2 id="h-me">You</h2>
  <dl class="facts"><dt>Username</dt><dd>${viewer.username}</dd><dt>Role</dt><dd>${viewer.role}</dd><dt>Session</dt><dd>ends after ${info.idleTimeout} without activity</dd></dl>
</section>
<section class="card" aria-labelledby="h-pw">
  <h2 id="h-pw">Change password</h2>
  ${passwordForm(viewer, '/ui/account/password', false)}
</section>
<section class="card" aria-labelledby="h-token">
  <h2 id="h-token">Long-lived token</h2>
  ${token === undefined
    ? ''
    : html`<div class="notice ok" role="status">Your new token${token.expires}. Copy it now: it is not shown again.</div>
  <div class="field"><label for="new-token">Token</label><div class="secret"><input type="text" id="new-token" value="${token.value}" readonly data-testid="new-token"><button type="button" class="secondary" data-copy="new-token">Copy</button></div></div>
`}
  <form class="stack" method="post" action="/ui/account/token">
    ${csrfField(viewer)}
    <div class="field"><label for="token-timeout">Lifetime <span class="hint">e.g. 30d, 1w, 12h or infinite; empty: ${info.defaultTokenLifetime}</span></label><input type="text" id="token-timeout" name="access_token_timeout" placeholder="${info.defaultTokenLifetime}" autocomplete="off" spellcheck="false"></div>
    <div class="actions-row"><button type="submit">Generate token</button></div>
  </form>
</section>
<section class="card" aria-labelledby="h-revoke">
  <h2 id="h-revoke">Revoke my tokens</h2>
  <p>Every access, refresh and long-lived token you hold stops working at once, and every console session of yours ends, this one too.</p>
  <form method="post" action="/ui/account/revoke" data-confirm="Revoke all your tokens and sign out everywhere?">${csrfField(viewer)}<button class="danger" type="submit">Revoke my tokens</button></form>
</section>
</div>`
  return page({ title: 'My account', viewer, active: 'account', notices: ns, body, version })
}

// --- security ----------------------------------------------------------------------------

/** What the security page shows. */
export interface SecurityView {
  readonly lockout: { readonly failedAttempts: number; readonly lockoutDuration: string }
  readonly banner: { readonly text: string; readonly enabled: boolean }
  /** Undefined when TLS is off. */
  readonly tls: { readonly source: string; readonly subject: string; readonly notAfter: string; readonly fingerprint: string; readonly names: string } | undefined
  readonly ca: { readonly subject: string; readonly notAfter: string; readonly fingerprint: string } | undefined
}

/** `/ui/security`: admins change, read-only users read. */
export function securityPage(viewer: Viewer, s: SecurityView, ns: readonly Notice[], version: string): SafeHtml {
  const admin = viewer.role === 'admin'
  const tlsFacts = s.tls === undefined
    ? html`<p class="muted">TLS is off on the listeners (tls.enabled: false).</p>`
    : html`<dl class="facts"><dt>Source</dt><dd>${s.tls.source}</dd><dt>Subject</dt><dd>${s.tls.subject}</dd><dt>Names</dt><dd>${s.tls.names}</dd><dt>Expires</dt><dd>${s.tls.notAfter}</dd><dt>SHA-256</dt><dd class="mono">${s.tls.fingerprint}</dd></dl>`
  const caFacts = s.ca === undefined
    ? html`<p class="muted">No extra CA certificate: the upstream and the identity providers are verified with the configured trust only.</p>`
    : html`<dl class="facts"><dt>Subject</dt><dd>${s.ca.subject}</dd><dt>Expires</dt><dd>${s.ca.notAfter}</dd><dt>SHA-256</dt><dd class="mono">${s.ca.fingerprint}</dd></dl>`
  const body = html`<div class="grid">
<section class="card" aria-labelledby="h-lockout">
  <h2 id="h-lockout">Lockout policy</h2>
  ${admin
    ? html`<form class="stack" method="post" action="/ui/security/lockout">
    ${csrfField(viewer)}
    <div class="row">
      <div class="field"><label for="failed_attempts">Failed attempts</label><input type="number" id="failed_attempts" name="failed_attempts" min="2" max="50" value="${s.lockout.failedAttempts}" required></div>
      <div class="field"><label for="lockout_duration">Lockout duration <span class="hint">30s–60m</span></label><input type="text" id="lockout_duration" name="lockout_duration" value="${s.lockout.lockoutDuration}" required spellcheck="false"></div>
    </div>
    <div class="actions-row"><button type="submit">Save policy</button></div>
  </form>
  <form method="post" action="/ui/security/lockout/reset" data-confirm="Reset the lockout policy to the configured values and unlock every account?">${csrfField(viewer)}<button class="secondary" type="submit">Reset to defaults and unlock all</button></form>`
    : html`<dl class="facts"><dt>Failed attempts</dt><dd>${s.lockout.failedAttempts}</dd><dt>Lockout duration</dt><dd>${s.lockout.lockoutDuration}</dd></dl>`}
</section>
<section class="card" aria-labelledby="h-banner">
  <h2 id="h-banner">Login banner ${s.banner.enabled ? html`<span class="pill ok">shown</span>` : html`<span class="pill">hidden</span>`}</h2>
  ${admin
    ? html`<form class="stack" method="post" action="/ui/security/banner">
    ${csrfField(viewer)}
    <div class="field"><label for="banner-text">Text <span class="hint">shown above the sign-in form, as plain text</span></label><textarea class="text" id="banner-text" name="text" maxlength="4096" rows="4">${s.banner.text}</textarea></div>
    <label class="check"><input type="checkbox" name="enabled" value="on"${s.banner.enabled ? html` checked` : ''}> Show the banner on the sign-in page</label>
    <div class="actions-row"><button type="submit">Save banner</button></div>
  </form>`
    : html`<div class="banner">${s.banner.text === '' ? html`<span class="muted">(no text)</span>` : s.banner.text}</div>`}
</section>
<section class="card wide" aria-labelledby="h-tls">
  <h2 id="h-tls">TLS certificate</h2>
  ${tlsFacts}
  ${admin && s.tls !== undefined
    ? html`<form class="stack" method="post" action="/ui/security/tls">
    ${csrfField(viewer)}
    <p class="hint">The same checks as <code>gatehouse security tls set</code>: a PEM certificate (chain) and its private key, which must match; both listeners present it at the next handshake. The current certificate stays in use if anything is wrong.</p>
    <div class="row">
      <div class="field"><label for="tls-cert">Certificate (PEM) <input type="file" accept=".pem,.crt,.cer" data-into="tls-cert" aria-label="Read the certificate from a file"></label><textarea id="tls-cert" name="certificate" spellcheck="false" placeholder="-----BEGIN CERTIFICATE-----" required></textarea></div>
      <div class="field"><label for="tls-key">Private key (PEM) <input type="file" accept=".pem,.key" data-into="tls-key" aria-label="Read the private key from a file"></label><textarea id="tls-key" name="private_key" spellcheck="false" placeholder="Paste the PEM private key that matches the certificate" required></textarea></div>
    </div>
    <div class="actions-row"><button type="submit">Upload certificate</button></div>
  </form>
  ${s.tls.source === 'api' ? html`<form method="post" action="/ui/security/tls/unset" data-confirm="Go back to the configured (or self-signed) certificate?">${csrfField(viewer)}<button class="secondary" type="submit">Back to the configured certificate</button></form>` : ''}`
    : ''}
</section>
<section class="card wide" aria-labelledby="h-ca">
  <h2 id="h-ca">CA certificate</h2>
  <p class="muted">One extra CA trusted for TLS to the upstream and to the identity providers.</p>
  ${caFacts}
  ${admin
    ? html`<form class="stack" method="post" action="/ui/security/ca">
    ${csrfField(viewer)}
    <div class="field"><label for="ca-cert">CA certificate (PEM) <input type="file" accept=".pem,.crt,.cer" data-into="ca-cert" aria-label="Read the CA certificate from a file"></label><textarea id="ca-cert" name="certificate" spellcheck="false" placeholder="-----BEGIN CERTIFICATE-----" required></textarea></div>
    <div class="actions-row"><button type="submit">Set CA certificate</button></div>
  </form>
  ${s.ca === undefined ? '' : html`<form method="post" action="/ui/security/ca/unset" data-confirm="Remove the extra CA certificate?">${csrfField(viewer)}<button class="secondary" type="submit">Remove CA certificate</button></form>`}`
    : ''}
</section>
</div>`
  const ro: Notice[] = admin ? [] : [{ kind: 'info', text: 'You have read-only access: only an admin can change security settings.' }]
  return page({ title: 'Security', viewer, active: 'security', notices: [...ro, ...ns], body, version })
}
