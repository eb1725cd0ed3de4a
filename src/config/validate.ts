/**
 * Semantic validation of a type-checked configuration. Mirrors Weaviate's start-up checks
 * (API keys W5, OIDC W13, admin list W21) but reports every problem instead of the first.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { BlockList, isIP } from 'node:net'
import { stripListProblems } from '../http/headers.ts'
import { HOP_BY_HOP } from '../http/hop.ts'
import { passwordProblem } from './passwordRules.ts'
import { effectiveIssuers, type IssuerConfig } from './issuers.ts'
import { isSha256Key, readKeysFile } from './keys.ts'
import { validateLdap } from './ldap.ts'
import type { Config, Problem, Source } from './types.ts'

/** Asymmetric JWS algorithms gatehouse may accept (never `none`, never HS*). */
export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

/** TLS 1.2 suites allowed: ECDHE (forward secrecy) with AEAD of ≥128 bits. TLS 1.3 suites are all AEAD. */
export const ALLOWED_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const
export const ALLOWED_TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const

const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** Append every semantic problem of `c` to `problems`, and notes to `warnings`. */
export function validate(c: Config, sources: ReadonlyMap<string, Source>, problems: Problem[], warnings: string[]): void {
  const add = (path: string, message: string, remedy: string, value?: string): void => {
    const base = path.replace(/\[\d+\]$/, '')
    problems.push({ path, source: sources.get(path) ?? sources.get(base), value, message, remedy })
  }

  // --- listeners and TLS
  if (c.admin.enabled && c.admin.port !== 0 && c.admin.port === c.listen.port) {
    add('admin.port', `the admin listener uses the same port as the data listener (${c.listen.port})`, 'choose another port for admin.port (default 14000) or listen.port (default 8443)', String(c.admin.port))
  }
  if (c.tls.enabled) {
    validateTls(c, add)
  } else {
    warnings.push('tls.enabled is false: the listeners speak plain HTTP; do this only behind a mesh or a TLS-terminating sidecar')
  }

  // --- upstream
  validateUpstream(c, add)

  // --- trusted proxies
  c.trustedProxies.forEach((entry, i) => {
    if (!isCidrOrIp(entry)) add(`trustedProxies[${i}]`, 'not an IP address or CIDR range', 'write an address such as 10.0.0.5 or a range such as 10.0.0.0/8', JSON.stringify(entry))
  })

  // --- state store
  validateStore(c, add, warnings)

  // --- metrics
  validateMetrics(c, add)

  // --- authentication
  const a = c.authentication
  if (a.apikey.enabled) validateApiKeys(c, add)
  if (a.oidc.enabled) validateOidc(c, add, warnings)
  if (a.local.enabled && a.local.initialAdminPassword !== undefined) {
    const weak = passwordProblem(a.local.initialAdminPassword)
    if (weak !== undefined) add('authentication.local.initialAdminPassword', weak, 'choose a password that follows the rules (8+ characters, upper and lower case, a number or a special character)', '<redacted>')
  }
  if (a.local.enabled && !c.admin.enabled) add('admin.enabled', 'local users need the admin listener (login and token API)', 'set admin.enabled: true, or disable authentication.local')
  if (c.console.absoluteLifetime < c.console.idleTimeout) add('console.absoluteLifetime', `shorter than console.idleTimeout (${c.console.idleTimeout / 1000} s)`, 'make the absolute lifetime at least as long as the idle timeout (defaults: 12h and 30m)')
  if (a.oidc.browserLogin.enabled) validateBrowserLogin(c, add, warnings)
  validateLdap(c, add, warnings) // directory users (config/ldap.ts)
  const anyMethod = a.apikey.enabled || a.oidc.enabled || a.local.enabled
  if (!anyMethod && a.anonymous.enabled === false) {
    warnings.push('authentication.anonymous.enabled is false but no authentication method is enabled, so anonymous access stays on (Weaviate’s rule); enable apikey or oidc to require credentials')
  }

  // --- authorization
  const al = c.authorization.adminlist
  if (al.enabled) {
    for (const u of al.users.filter((u) => al.readonlyUsers.includes(u))) {
      add('authorization.adminlist.readonlyUsers', `admin list: subject '${u}' is present on both admin and read-only list`, 'keep the subject on only one of authorization.adminlist.users and readonlyUsers', JSON.stringify(u))
    }
    for (const g of al.groups.filter((g) => al.readonlyGroups.includes(g))) {
      add('authorization.adminlist.readonlyGroups', `admin list: subject '${g}' is present on both admin and read-only list`, 'keep the group on only one of authorization.adminlist.groups and readonlyGroups', JSON.stringify(g))
    }
    if (al.users.length + al.readonlyUsers.length + al.groups.length + al.readonlyGroups.length === 0) {
      warnings.push('authorization.adminlist is enabled but all its lists are empty: every request that needs a role gets 403')
    }
  }

  // --- identity headers
  const names = new Map<string, string>()
  for (const key of ['user', 'groups', 'email', 'authMethod', 'requestId'] as const) {
    const name = c.identityHeaders[key]
    const p = `identityHeaders.${key}`
    if (!TOKEN_RE.test(name)) {
      add(p, 'not a valid HTTP header name', 'use letters, digits and dashes, e.g. X-Forwarded-User', JSON.stringify(name))
      continue
    }
    const norm = normalizeHeaderName(name)
    const prev = names.get(norm)
    if (prev !== undefined) add(p, `same header as identityHeaders.${prev}`, 'give each identity header its own name', JSON.stringify(name))
    names.set(norm, key)
    if (HOP_BY_HOP.has(name.toLowerCase()) || ['authorization', 'host', 'content-length', 'cookie'].includes(name.toLowerCase())) {
      add(p, 'this header cannot carry identity', 'choose an X-… name such as X-Forwarded-User', JSON.stringify(name))
    }
  }
  for (const x of stripListProblems(c.identityHeaders.strip)) add(`identityHeaders.strip[${x.index}]`, x.message, x.remedy, JSON.stringify(x.value))
}

type Add = (path: string, message: string, remedy: string, value?: string) => void

function validateTls(c: Config, add: Add): void {
  const { certFile, keyFile } = c.tls
  if ((certFile === undefined) !== (keyFile === undefined)) {
    add(certFile === undefined ? 'tls.certFile' : 'tls.keyFile', 'tls.certFile and tls.keyFile must be set together', 'set both, or neither to use the self-signed certificate from stateDir')
  } else if (certFile !== undefined && keyFile !== undefined) {
    const problem = checkCertificatePair(certFile, keyFile)
    if (problem !== undefined) add(problem.path, problem.message, problem.remedy, problem.path === 'tls.certFile' ? certFile : keyFile)
  }
  if (c.tls.ciphers !== undefined) {
    const allowed = new Set<string>([...ALLOWED_TLS12_CIPHERS, ...ALLOWED_TLS13_CIPHERS])
    const bad = c.tls.ciphers.split(':').filter((s) => s !== '' && !allowed.has(s))
    if (bad.length > 0 || c.tls.ciphers.trim() === '') {
      add('tls.ciphers', `not an AEAD forward-secret suite: ${bad.join(', ') || '(empty)'}`, `list only suites from: ${[...ALLOWED_TLS12_CIPHERS, ...ALLOWED_TLS13_CIPHERS].join(':')}`, JSON.stringify(c.tls.ciphers))
    }
  }
}

/**
 * Check that a certificate file and key file are readable, parse, match, and that the key is
 * not encrypted. Used by validation and by certificate rotation.
 */
export function checkCertificatePair(certFile: string, keyFile: string): { path: 'tls.certFile' | 'tls.keyFile'; message: string; remedy: string } | undefined {
  let certPem: string
  let keyPem: string
  try {
    certPem = readFileSync(certFile, 'utf8')
  } catch (e) {
    return { path: 'tls.certFile', message: `cannot read the certificate (${(e as NodeJS.ErrnoException).code ?? String(e)})`, remedy: 'point tls.certFile at a readable PEM certificate file' }
  }
  try {
    keyPem = readFileSync(keyFile, 'utf8')
  } catch (e) {
    return { path: 'tls.keyFile', message: `cannot read the private key (${(e as NodeJS.ErrnoException).code ?? String(e)})`, remedy: 'point tls.keyFile at a readable PEM private key file' }
  }
  const p = checkCertificatePem(certPem, keyPem)
  return p === undefined ? undefined : { path: p.part === 'certificate' ? 'tls.certFile' : 'tls.keyFile', message: p.message, remedy: p.remedy }
}

/** Check PEM texts: a certificate, an unencrypted private key, and that they belong together. */
export function checkCertificatePem(certPem: string, keyPem: string): { part: 'certificate' | 'key'; message: string; remedy: string } | undefined {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch {
    return { part: 'certificate', message: 'not a PEM X.509 certificate', remedy: 'give the PEM certificate (-----BEGIN CERTIFICATE-----), leaf first' }
  }
  if (/ENCRYPTED/.test(keyPem)) {
    return { part: 'key', message: 'the private key is encrypted', remedy: 'decrypt it first, e.g. openssl pkey -in key.pem -out key.plain.pem' }
  }
  let key
  try {
    key = createPrivateKey(keyPem)
  } catch {
    return { part: 'key', message: 'not a PEM private key', remedy: 'give the unencrypted private key in PEM form (PKCS#8, as openssl pkey writes it)' }
  }
  if (!cert.checkPrivateKey(key)) {
    return { part: 'key', message: 'the private key does not match the certificate', remedy: 'give the key that belongs to the certificate' }
  }
  return undefined
}

function validateUpstream(c: Config, add: Add): void {
  const u = c.upstream
  if (u.url !== 'echo:') {
    let url: URL | undefined
    try {
      url = new URL(u.url)
    } catch {
      /* reported below */
    }
    if (url === undefined || !['http:', 'https:'].includes(url.protocol) || url.hostname === '') {
      add('upstream.url', 'not an http(s) URL', 'write e.g. http://weaviate:8080, https://qdrant.internal:6333, or echo: for the built-in echo upstream', JSON.stringify(u.url))
    } else if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      add('upstream.url', 'the upstream URL may not carry a query, fragment or credentials', 'give only scheme, host, port and an optional base path; put upstream credentials in upstream.headers', JSON.stringify(u.url.replace(/\/\/[^@/]*@/, '//<redacted>@')))
    }
  }
  if (u.grpcUrl !== undefined && u.grpcUrl !== '') {
    let ok = false
    try {
      const g = new URL(u.grpcUrl)
      ok = ['h2c:', 'https:', 'http:'].includes(g.protocol) && g.hostname !== ''
    } catch {
      ok = false
    }
    if (!ok) add('upstream.grpcUrl', 'not an h2c:// or https:// URL', 'write e.g. h2c://weaviate:50051', JSON.stringify(u.grpcUrl))
  }
  if (u.caFile !== undefined && !existsSync(u.caFile)) {
    add('upstream.caFile', 'file not found', 'point upstream.caFile at a readable PEM CA bundle', JSON.stringify(u.caFile))
  }
  for (const [name, ref] of Object.entries(u.headers)) {
    const p = `upstream.headers.${name}`
    if (!TOKEN_RE.test(name)) add(p, 'not a valid HTTP header name', 'use letters, digits and dashes')
    else if (HOP_BY_HOP.has(name.toLowerCase()) || name.toLowerCase() === 'host' || name.toLowerCase() === 'content-length') {
      add(p, 'this header is managed by the proxy and cannot be set here', 'remove it from upstream.headers')
    }
    if ('env' in ref && process.env[ref.env] === undefined) {
      add(p, `environment variable ${ref.env} is not set`, `export ${ref.env}, or give the value another way`, '<redacted>')
    }
    if ('file' in ref && !existsSync(ref.file)) {
      add(p, `file ${ref.file} not found`, 'point {file: …} at a readable file (e.g. a mounted Kubernetes Secret)', '<redacted>')
    }
  }
}

function validateApiKeys(c: Config, add: Add): void {
  const k = c.authentication.apikey
  const keys: { key: string; path: string }[] = k.allowedKeys.map((key, i) => ({ key, path: `authentication.apikey.allowedKeys[${i}]` }))
  let pendingGenerated = 0
  let emptyFile = false
  if (k.allowedKeysFile !== undefined) {
    if (existsSync(k.allowedKeysFile)) {
      try {
        const fromFile = readKeysFile(k.allowedKeysFile)
        fromFile.forEach((key, i) => keys.push({ key, path: `authentication.apikey.allowedKeysFile (line ${i + 1} with a key)` }))
        // Name the file: "need at least one key" alone sends people to the wrong place.
        if (fromFile.length === 0 && keys.length === 0) {
          emptyFile = true
          add(
            'authentication.apikey.allowedKeysFile',
            'the keys file has no key (only blank lines and # comments)',
            `add one key per line to ${k.allowedKeysFile} (gatehouse apikey generate makes one), or point allowedKeysFile at the file that holds the keys`,
            JSON.stringify(k.allowedKeysFile),
          )
        }
      } catch (e) {
        add('authentication.apikey.allowedKeysFile', `cannot read the keys file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 'make the file readable by the gatehouse user', JSON.stringify(k.allowedKeysFile))
        return
      }
    } else if (k.generateIfMissing) {
      pendingGenerated = 1
    } else {
      add('authentication.apikey.allowedKeysFile', 'file not found', 'create it with one key per line (gatehouse apikey generate), or set generateIfMissing: true', JSON.stringify(k.allowedKeysFile))
      return
    }
  }
  const total = keys.length + pendingGenerated
  // Weaviate's checks and messages (apikey/client.go validateConfig), all reported.
  if (total < 1 && !emptyFile) {
    add('authentication.apikey.allowedKeys', 'need at least one valid allowed key', 'set AUTHENTICATION_APIKEY_ALLOWED_KEYS, authentication.apikey.allowedKeys or allowedKeysFile; gatehouse apikey generate makes one')
  }
  const seen = new Map<string, string>()
  for (const { key, path } of keys) {
    if (key === '') {
      add(path, 'keys cannot have length 0', 'remove the empty entry (check for a trailing or doubled comma in AUTHENTICATION_APIKEY_ALLOWED_KEYS)', '""')
      continue
    }
    if (key.toLowerCase().startsWith('sha256:') && !isSha256Key(key)) {
      add(path, 'a sha256: key must be followed by exactly 64 hex digits', 'use the sha256 form printed by gatehouse apikey generate', '<redacted>')
      continue
    }
    const id = isSha256Key(key) ? key.slice(7).toLowerCase() : sha256Hex(key)
    const first = seen.get(id)
    if (first !== undefined) add(path, `keys must be unique (same key as ${first})`, 'remove the duplicate key', '<redacted>')
    else seen.set(id, path)
  }
  const users = k.users
  if (users.length < 1) {
    add('authentication.apikey.users', 'need at least one user', 'set AUTHENTICATION_APIKEY_USERS or authentication.apikey.users (one user for all keys, or one per key)')
  }
  users.forEach((u, i) => {
    if (u === '') add(`authentication.apikey.users[${i}]`, 'users cannot have length 0', 'remove the empty entry (check for a trailing or doubled comma)', '""')
  })
  if (users.length > 1 && users.length !== total) {
    add('authentication.apikey.users', `length of users and keys must match, alternatively provide single user for all keys (${users.length} users, ${total} keys)`, 'give one user for all keys, or exactly one user per key in the same order')
  }
}

/** Shortest `metrics.bearerToken` accepted: a scrape token is a shared secret, not a password someone types. */
const MIN_METRICS_TOKEN = 16

function validateMetrics(c: Config, add: Add): void {
  const m = c.metrics
  if (m.bearerToken !== undefined && m.bearerTokenFile !== undefined) add('metrics.bearerTokenFile', 'both bearerToken and bearerTokenFile are set', 'keep one: GATEHOUSE_METRICS_BEARER_TOKEN or a file', JSON.stringify(m.bearerTokenFile))
  if (m.bearerTokenFile !== undefined && !existsSync(m.bearerTokenFile)) add('metrics.bearerTokenFile', 'the file does not exist', 'give the path of a file holding the scrape token (a mounted Secret)', JSON.stringify(m.bearerTokenFile))
  else if (m.bearerTokenFile !== undefined && readFileSync(m.bearerTokenFile, 'utf8').trim().length < MIN_METRICS_TOKEN) add('metrics.bearerTokenFile', `the token in the file is shorter than ${MIN_METRICS_TOKEN} characters`, 'put a random token in it, e.g. openssl rand -base64 32', JSON.stringify(m.bearerTokenFile))
  if (m.bearerToken !== undefined && m.bearerToken.length < MIN_METRICS_TOKEN) add('metrics.bearerToken', `shorter than ${MIN_METRICS_TOKEN} characters`, 'use a random token, e.g. openssl rand -base64 32', '<redacted>')
}

/** A store URL as it may be shown: any password in it replaced (it is refused, never echoed). */
export function redactStoreUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:/@]*:)[^@]*@/i, '$1<redacted>@')
}

function validateStore(c: Config, add: Add, warnings: string[]): void {
  const s = c.store
  const p = 'store'
  const shown = JSON.stringify(redactStoreUrl(s.url))
  if (s.url === 'file:') {
    for (const k of ['caFile', 'username', 'password', 'passwordFile'] as const) {
      if (s[k] !== undefined) add(`${p}.${k}`, `set, but store.url is file: (the embedded store has no ${k === 'caFile' ? 'TLS' : 'credentials'})`, 'remove it, or set store.url to redis://… or rediss://…', k === 'password' ? '<redacted>' : JSON.stringify(s[k]))
    }
    return
  }
  let u: URL | undefined
  try {
    u = new URL(s.url)
  } catch {
    u = undefined
  }
  if (u === undefined || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) {
    add(`${p}.url`, 'not file: nor a redis:// or rediss:// URL', 'use file: (the default, one machine) or redis://HOST:6379 / rediss://HOST:6380 for a shared Redis or Valkey', shown)
    return
  }
  if (u.hostname === '') add(`${p}.url`, 'the URL names no host', 'write redis://HOST:PORT, e.g. redis://redis:6379', shown)
  if (u.password !== '') add(`${p}.url`, 'the URL carries a password (it would show in process lists, logs and config print)', 'move it to store.password from GATEHOUSE_STORE_PASSWORD, or store.passwordFile (a mounted Secret)', shown)
  if (u.username !== '' && s.username !== undefined) add(`${p}.username`, 'a user name is both in store.url and in store.username', 'keep one', JSON.stringify(s.username))
  if (!/^\/?(\d{1,2})?$/.test(u.pathname)) add(`${p}.url`, 'the path must be a database number (e.g. /0) or nothing', 'write redis://HOST:PORT/0, or leave the path out', shown)
  if (u.search !== '' || u.hash !== '') add(`${p}.url`, 'query parameters and fragments are not read', 'use the store.* keys (caFile, username, password, timeouts) instead', shown)
  if (s.password !== undefined && s.passwordFile !== undefined) add(`${p}.passwordFile`, 'both password and passwordFile are set', 'keep one: GATEHOUSE_STORE_PASSWORD or a file', JSON.stringify(s.passwordFile))
  if (s.passwordFile !== undefined && !existsSync(s.passwordFile)) add(`${p}.passwordFile`, 'the file does not exist', 'give the path of a file holding the store password (a mounted Secret)', JSON.stringify(s.passwordFile))
  if (s.caFile !== undefined) {
    if (u.protocol !== 'rediss:') add(`${p}.caFile`, 'a CA file is only used with rediss:// (TLS)', 'use rediss://… or remove store.caFile', JSON.stringify(s.caFile))
    else if (!existsSync(s.caFile)) add(`${p}.caFile`, 'the file does not exist', 'give the path of a PEM CA bundle', JSON.stringify(s.caFile))
    else if (!readFileSync(s.caFile, 'utf8').includes('-----BEGIN CERTIFICATE-----')) add(`${p}.caFile`, 'no PEM certificate in the file', 'give a PEM bundle (-----BEGIN CERTIFICATE-----)', JSON.stringify(s.caFile))
  }
  if (!/^[A-Za-z0-9:._-]{1,64}$/.test(s.keyPrefix)) add(`${p}.keyPrefix`, 'must be 1–64 letters, digits, ":", ".", "_" or "-"', 'keep the default gatehouse: or e.g. gatehouse-prod:', JSON.stringify(s.keyPrefix))
  if (u.protocol === 'redis:' && (s.password !== undefined || s.passwordFile !== undefined) && !isLoopback(u.hostname)) {
    warnings.push(`store.url is plain redis:// to ${u.hostname}: the store password and every token record cross the network unencrypted; use rediss:// unless a mesh encrypts it`)
  }
}

function validateBrowserLogin(c: Config, add: Add, warnings: string[]): void {
  const a = c.authentication
  const b = a.oidc.browserLogin
  const p = 'authentication.oidc.browserLogin'
  const local = a.local.enabled && b.localUsers
  if (!a.oidc.enabled && !local) add(`${p}.enabled`, 'browser sign-in needs an identity provider (authentication.oidc.enabled) or local users (authentication.local.enabled with browserLogin.localUsers)', 'enable authentication.oidc (issuer, clientId, usernameClaim), or local users, or turn browserLogin off')
  if (a.oidc.enabled && a.oidc.clientId === '') add('authentication.oidc.clientId', 'browser sign-in needs the client id registered at the issuer', 'set authentication.oidc.clientId (AUTHENTICATION_OIDC_CLIENT_ID) to the client whose redirect URI is …/oauth2/callback')
  if (b.clientSecret !== undefined && b.clientSecretFile !== undefined) add(`${p}.clientSecretFile`, 'both clientSecret and clientSecretFile are set', 'keep one: the secret inline or from GATEHOUSE_OIDC_CLIENT_SECRET, or a file')
  if (b.clientSecretFile !== undefined && !existsSync(b.clientSecretFile)) add(`${p}.clientSecretFile`, 'the file does not exist', 'give the path of a file holding the client secret (a mounted Secret)', JSON.stringify(b.clientSecretFile))
  if (b.redirectUrl !== '') {
    let u: URL | undefined
    try {
      u = new URL(b.redirectUrl)
    } catch {
      /* below */
    }
    if (u === undefined || !(u.protocol === 'https:' || (u.protocol === 'http:' && isLoopback(u.hostname))) || u.pathname !== '/oauth2/callback' || u.search !== '' || u.hash !== '') {
      add(`${p}.redirectUrl`, 'not an https URL ending in /oauth2/callback', 'give the callback URL registered at the issuer, e.g. https://gh.example.com/oauth2/callback', JSON.stringify(b.redirectUrl))
    }
  }
  if (!TOKEN_RE.test(b.cookieName)) add(`${p}.cookieName`, 'not a valid cookie name', 'use letters, digits, dashes and underscores, e.g. __Host-gatehouse-session', JSON.stringify(b.cookieName))
  else if (/^__host-gatehouse-(console|console-login|flow)$/i.test(b.cookieName)) add(`${p}.cookieName`, 'this name is one of gatehouse’s own cookies (the console’s or the sign-in flow’s)', 'choose another name, e.g. __Host-gatehouse-session', JSON.stringify(b.cookieName))
  else if (!b.cookieName.startsWith('__Host-')) warnings.push(`${p}.cookieName ${JSON.stringify(b.cookieName)} has no __Host- prefix: a sibling host could plant or overwrite the session cookie`)
  if (b.cookieLifetime < b.idleTimeout) add(`${p}.cookieLifetime`, `shorter than ${p}.idleTimeout (${b.idleTimeout / 1000} s)`, 'make the lifetime at least as long as the idle timeout')
  b.scopes.forEach((s, i) => {
    if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s)) add(`${p}.scopes[${i}]`, 'not a valid OAuth scope (RFC 6749 §3.3: printable ASCII, no space, quote or backslash)', 'write one scope per entry, e.g. openid, email, offline_access', JSON.stringify(s))
  })
  if (!c.tls.enabled) warnings.push(`${p} with tls.enabled false: browsers send the Secure session cookie only over https, so put a TLS terminator in front`)
}

function validateOidc(c: Config, add: Add, warnings: string[]): void {
  const seen = new Map<string, string>()
  for (const o of effectiveIssuers(c)) validateIssuer(o, add, warnings, seen)
}

function validateIssuer(o: IssuerConfig, add: Add, warnings: string[], seen: Map<string, string>): void {
  const main = o.path === 'authentication.oidc'
  // Weaviate's messages (oidc/middleware.go validateConfig).
  if (o.issuer === '') add(`${o.path}.issuer`, "missing required field 'issuer'", main ? 'set AUTHENTICATION_OIDC_ISSUER or authentication.oidc.issuer to the issuer URL' : 'give every additional issuer an issuer: URL')
  else {
    let u: URL | undefined
    try {
      u = new URL(o.issuer)
    } catch {
      /* below */
    }
    if (u === undefined || !['http:', 'https:'].includes(u.protocol)) {
      add(`${o.path}.issuer`, 'the issuer must be an https URL', 'write the issuer exactly as in the tokens’ iss claim, e.g. https://login.example.com/realms/main', JSON.stringify(o.issuer))
    } else if (u.protocol === 'http:') {
      if (isLoopback(u.hostname)) warnings.push(`${o.path}.issuer uses plain http on loopback (${o.issuer}); use https anywhere else`)
      else add(`${o.path}.issuer`, 'plain http is only allowed for an issuer on loopback', 'use the https URL of the issuer', JSON.stringify(o.issuer))
    }
    const prev = seen.get(o.issuer)
    if (prev !== undefined) add(`${o.path}.issuer`, `the same issuer is already configured at ${prev}`, 'configure each issuer once; tokens are routed by their iss', JSON.stringify(o.issuer))
    seen.set(o.issuer, o.path)
  }
  if (o.usernameClaim === '') add(`${o.path}.usernameClaim`, "missing required field 'username_claim'", 'set AUTHENTICATION_OIDC_USERNAME_CLAIM or authentication.oidc.usernameClaim (e.g. sub, email, preferred_username)')
  if (o.clientId === '' && !o.skipClientIdCheck) {
    add(`${o.path}.clientId`, "missing required field 'client_id': either set a client_id or explicitly disable the check with 'skip_client_id_check: true'", 'set AUTHENTICATION_OIDC_CLIENT_ID, or AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK=true')
  }
  if (o.jwksUrl !== '') {
    try {
      const u = new URL(o.jwksUrl)
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname))) throw new Error('scheme')
    } catch {
      add(`${o.path}.jwksUrl`, 'not an https URL', 'give the issuer’s JWKS URL (https; plain http only on loopback)', JSON.stringify(o.jwksUrl))
    }
  }
  if (o.certificate !== '' && !o.certificate.includes('-----BEGIN') && !/^https?:\/\//i.test(o.certificate) && !existsSync(o.certificate)) {
    add(`${o.path}.certificate`, 'neither a PEM certificate, an http(s) URL, nor an existing file', 'give the PEM text, a path to a PEM file, or a URL to download it from', JSON.stringify(o.certificate.slice(0, 60)))
  }
  o.algorithms.forEach((alg, i) => {
    if (!(ASYMMETRIC_ALGS as readonly string[]).includes(alg)) {
      add(`${o.path}.algorithms[${i}]`, 'not an allowed asymmetric algorithm (none and HS* are never accepted)', `use some of: ${ASYMMETRIC_ALGS.join(', ')}`, JSON.stringify(alg))
    }
  })
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127\./.test(h)
}

function isCidrOrIp(s: string): boolean {
  const [addr, bits, ...rest] = s.split('/')
  if (addr === undefined || rest.length > 0) return false
  const fam = isIP(addr)
  if (fam === 0) return false
  if (bits === undefined) return true
  if (!/^\d+$/.test(bits)) return false
  const n = Number(bits)
  return n >= 0 && n <= (fam === 4 ? 32 : 128)
}

/** Build a BlockList from validated trustedProxies entries. */
export function trustedProxyList(entries: readonly string[]): BlockList {
  const list = new BlockList()
  for (const e of entries) {
    const [addr, bits] = e.split('/') as [string, string | undefined]
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4'
    if (bits === undefined) list.addAddress(addr, type)
    else list.addSubnet(addr, Number(bits), type)
  }
  return list
}

/** Header names compare case-insensitively and with `_` equal to `-` (GHSA-vjrc, Traefik CVE-2026-33433). */
export function normalizeHeaderName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-')
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}
