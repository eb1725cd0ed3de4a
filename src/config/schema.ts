/**
 * The configuration schema: every key, its type, default, environment variables and a one-line
 * description. Loading, `config print` and the unknown-key check all walk this one tree.
 */
import { DEFAULT_IDENTITY_STRIP } from '../http/headers.ts'

/** How an environment variable is read. */
export type EnvStyle =
  /** Weaviate's rules: bool true only for on/enabled/1/true; lists split on `,` untrimmed. */
  | 'weaviate'
  /** gatehouse's own: strict; an unreadable value is a configuration problem. */
  | 'gatehouse'

export interface EnvBinding {
  readonly name: string
  readonly style: EnvStyle
  /** Read only when the bool at this key path is true (Weaviate reads lists only when enabled). */
  readonly readWhen?: string
  /** Key paths reset to undefined when this variable is set (an env key list replaces the file). */
  readonly replaces?: readonly string[]
}

export type LeafType = 'string' | 'int' | 'bool' | 'duration' | 'size' | 'stringList' | 'enum' | 'secretMap' | 'issuerList'

export interface Leaf {
  readonly kind: 'leaf'
  readonly type: LeafType
  readonly default: unknown
  readonly doc: string
  readonly values?: readonly string[]
  readonly min?: number
  readonly max?: number
  readonly env?: readonly EnvBinding[]
  /** Never printed or logged; `config print` shows only a redaction marker. */
  readonly secret?: boolean
  /** A file path: relative values from the YAML resolve against the YAML file's directory. */
  readonly isPath?: boolean
  /** Whether an unset optional string stays undefined instead of taking `default`. */
  readonly optional?: boolean
}

export interface Group {
  readonly kind: 'group'
  readonly doc: string
  readonly children: Readonly<Record<string, Node>>
}

export type Node = Leaf | Group

function leaf(type: LeafType, def: unknown, doc: string, extra: Partial<Omit<Leaf, 'kind' | 'type' | 'default' | 'doc'>> = {}): Leaf {
  return { kind: 'leaf', type, default: def, doc, ...extra }
}
function group(doc: string, children: Record<string, Node>): Group {
  return { kind: 'group', doc, children }
}
const wv = (name: string, readWhen?: string, replaces?: string[]): EnvBinding => ({
  name,
  style: 'weaviate',
  ...(readWhen === undefined ? {} : { readWhen }),
  ...(replaces === undefined ? {} : { replaces }),
})
const gh = (name: string): EnvBinding => ({ name, style: 'gatehouse' })

const SECOND = 1000

/** The whole schema. Order here is the order of `config print` and of docs/configuration.md. */
export const SCHEMA: Group = group('gatehouse configuration', {
  listen: group('The data listener: the proxy itself.', {
    address: leaf('string', '0.0.0.0', 'Address to bind.', { env: [gh('GATEHOUSE_LISTEN_ADDRESS')] }),
    port: leaf('int', 8443, 'TCP port; 0 picks a free port.', { min: 0, max: 65535, env: [gh('GATEHOUSE_PORT')] }),
    timeouts: group('Limits on slow clients (slowloris): each ends the request or connection.', {
      headers: leaf('duration', 10 * SECOND, 'Time to receive a request’s complete headers (408 beyond).', { min: 100, max: 600_000 }),
      body: leaf('duration', 30 * SECOND, 'Longest pause between two chunks of a request body (408 beyond; 0s: none).', { min: 0, max: 86_400_000 }),
      keepAlive: leaf('duration', 5 * SECOND, 'How long an idle keep-alive connection stays open.', { min: 100, max: 600_000 }),
      minBodyRate: leaf('size', 1024, 'Slowest request-body rate accepted, in bytes per second, averaged over each bodyRateWindow once bodyRateGrace is over (408 below; 0: no minimum). Time the body waits on a slow upstream does not count.', { min: 0, max: 1024 * 1024 * 1024 }),
      bodyRateWindow: leaf('duration', 10 * SECOND, 'Window over which minBodyRate is averaged.', { min: 100, max: 600_000 }),
      bodyRateGrace: leaf('duration', 10 * SECOND, 'Time from the start of a request body before minBodyRate applies.', { min: 0, max: 600_000 }),
    }),
  }),
  tls: group('TLS for both listeners (TLS 1.2+ with AEAD, forward-secret suites only).', {
    enabled: leaf('bool', true, 'Terminate TLS. false is for a sidecar behind a mesh and logs a warning.', {
      env: [gh('GATEHOUSE_TLS_ENABLED')],
    }),
    certFile: leaf('string', undefined, 'PEM certificate chain; unset: a certificate generated in stateDir/tls, signed by a local CA (ca.crt).', {
      optional: true,
      isPath: true,
      env: [gh('GATEHOUSE_TLS_CERT_FILE')],
    }),
    keyFile: leaf('string', undefined, 'PEM private key (unencrypted) matching certFile.', {
      optional: true,
      isPath: true,
      env: [gh('GATEHOUSE_TLS_KEY_FILE')],
    }),
    minVersion: leaf('enum', 'TLSv1.2', 'Lowest TLS version accepted.', { values: ['TLSv1.2', 'TLSv1.3'] }),
    ciphers: leaf('string', undefined, 'OpenSSL cipher list; must name only AEAD ECDHE suites. Unset: a strong default.', {
      optional: true,
    }),
    watchInterval: leaf('duration', 2 * SECOND, 'How often the certificate files are checked for changes; 0s turns watching off.', {
      min: 0,
      max: 3_600_000,
    }),
    ticketKeyRotation: leaf('duration', 3600 * SECOND, 'How often the session-ticket key (one for all workers) is replaced; a ticket older than the last replacement costs one full handshake. 0s: never.', {
      min: 0,
      max: 7 * 86_400_000,
    }),
  }),
  admin: group('The admin listener: /healthz, /readyz, and the admin API.', {
    enabled: leaf('bool', true, 'Run the admin listener.'),
    address: leaf('string', '0.0.0.0', 'Address to bind.', { env: [gh('GATEHOUSE_ADMIN_ADDRESS')] }),
    port: leaf('int', 14000, 'TCP port; 0 picks a free port.', { min: 0, max: 65535, env: [gh('GATEHOUSE_ADMIN_PORT')] }),
    bodyTimeout: leaf('duration', 10 * SECOND, 'The whole JSON body of an admin API request must arrive within this time (408 otherwise); its bodies are small, so a slow drip is an attack.', { min: 1000, max: 300_000 }),
  }),
  console: group('The web console under /ui/ on the admin listener (local users sign in; needs authentication.local).', {
    enabled: leaf('bool', true, 'Serve the web console (when local users are enabled).', { env: [gh('GATEHOUSE_CONSOLE_ENABLED')] }),
    idleTimeout: leaf('duration', 1800 * SECOND, 'A console session ends after this long without a request (Weka’s GUI: 30 minutes).', { min: 1000, max: 86_400_000, env: [gh('GATEHOUSE_CONSOLE_IDLE_TIMEOUT')] }),
    absoluteLifetime: leaf('duration', 12 * 3600 * SECOND, 'A console session ends this long after sign-in, however active (not shorter than idleTimeout).', { min: 1000, max: 7 * 86_400_000 }),
  }),
  // --- HTTP/2, gRPC (one contiguous block)
  http2: group('HTTP/2 on the data listener: ALPN h2 with TLS, prior-knowledge h2c without; HTTP/1.1 stays available.', {
    enabled: leaf('bool', true, 'Offer HTTP/2 (and with it gRPC) on the data listener.', { env: [gh('GATEHOUSE_HTTP2_ENABLED')] }),
    maxConcurrentStreams: leaf('int', 100, 'Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).', { min: 1, max: 10_000 }),
    maxHeaderListSize: leaf('size', 16 * 1024, 'Largest header list of one HTTP/2 request, as Node’s HTTP/1.1 header limit (16 KiB).', { min: 1024, max: 1024 * 1024 }),
    maxSessionRejectedStreams: leaf('int', 100, 'Streams a connection may have refused (over the concurrency limit) before it is closed.', { min: 1, max: 100_000 }),
    maxResets: leaf('int', 200, 'Client stream resets (RST_STREAM) one connection may send per resetWindow before it is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).', { min: 1, max: 1_000_000 }),
    resetWindow: leaf('duration', 10 * SECOND, 'The window maxResets counts in.', { min: 100, max: 3_600_000 }),
    idleTimeout: leaf('duration', 300 * SECOND, 'An HTTP/2 connection without any frame for this long is closed gracefully (GOAWAY; streams in flight finish).', { min: 100, max: 86_400_000 }),
  }),
  grpcListener: group('An extra listener that serves only gRPC (HTTP/2), for clients that expect a gRPC port of its own (Weaviate’s 50051). Same TLS as the data listener.', {
    enabled: leaf('bool', false, 'Run the gRPC listener.', { env: [gh('GATEHOUSE_GRPC_ENABLED')] }),
    address: leaf('string', '0.0.0.0', 'Address to bind.', { env: [gh('GATEHOUSE_GRPC_ADDRESS')] }),
    port: leaf('int', 50051, 'TCP port; 0 picks a free port.', { min: 0, max: 65535, env: [gh('GATEHOUSE_GRPC_PORT')] }),
  }),
  // --- end HTTP/2, gRPC
  workers: leaf('int', 1, 'Worker processes sharing the listeners (node:cluster); 0 = one per CPU. State (users, lockout, revocation) is shared through the primary.', {
    min: 0,
    max: 64,
    env: [gh('GATEHOUSE_WORKERS')],
  }),
  stateDir: leaf('string', '.gatehouse', 'Directory for generated certificates and runtime state.', {
    isPath: true,
    env: [gh('GATEHOUSE_STATE_DIR')],
  }),
  store: group('Where the runtime state lives (users, tokens, revocations, lockout, sessions, settings, the local issuer’s key); docs/replicas.md.', {
    url: leaf('string', 'file:', 'file: the embedded store in stateDir (one process, or workers on one machine); redis://HOST:PORT[/DB] or rediss:// (TLS) for a Redis or Valkey shared by several replicas. No password here: use password or passwordFile.', {
      env: [gh('GATEHOUSE_STORE_URL')],
    }),
    caFile: leaf('string', undefined, 'PEM CA bundle trusted for rediss:// (in addition to the system CAs).', { optional: true, isPath: true, env: [gh('GATEHOUSE_STORE_CA_FILE')] }),
    username: leaf('string', undefined, 'ACL user name (unset: the default user).', { optional: true, env: [gh('GATEHOUSE_STORE_USERNAME')] }),
    password: leaf('string', undefined, 'ACL password (or the requirepass password).', { optional: true, secret: true, env: [gh('GATEHOUSE_STORE_PASSWORD')] }),
    passwordFile: leaf('string', undefined, 'File holding the password (a Kubernetes Secret); trailing newline ignored.', { optional: true, isPath: true, env: [gh('GATEHOUSE_STORE_PASSWORD_FILE')] }),
    keyPrefix: leaf('string', 'gatehouse:', 'Prefix of every key and of the pub/sub channel (several gatehouse deployments can share one Redis with different prefixes).', { env: [gh('GATEHOUSE_STORE_KEY_PREFIX')] }),
    connectTimeout: leaf('duration', 5 * SECOND, 'Time limit of each connection attempt; at start, gatehouse gives up (exit 1) when the store cannot be reached within it.', { min: 100, max: 120_000 }),
    commandTimeout: leaf('duration', 2 * SECOND, 'Time limit of each store operation (503 ERR_STORE_UNAVAILABLE beyond).', { min: 50, max: 60_000 }),
    maxStaleness: leaf('duration', 1 * SECOND, 'How long a replica that lost the store’s revocation feed keeps honouring local tokens from its verified-token cache; beyond it they get 503 until the feed is back (a revocation is never missed silently).', { min: 250, max: 60_000 }),
  }),
  log: group('Logging (pino JSON lines on stdout).', {
    level: leaf('enum', 'info', 'Log level.', {
      values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      env: [gh('GATEHOUSE_LOG_LEVEL')],
    }),
    access: leaf('bool', true, 'Write one access line per request.'),
  }),
  metrics: group('GET /metrics on the admin listener: Prometheus text format (docs/metrics.md). With workers: N, the sum over the workers.', {
    enabled: leaf('bool', true, 'Count requests, authentication, logins, store operations and the process, and serve them at /metrics. Off: no counting at all on the request path, and /metrics is 404.', { env: [gh('GATEHOUSE_METRICS_ENABLED')] }),
    bearerToken: leaf('string', undefined, 'When set, /metrics needs Authorization: Bearer <this token> (401 otherwise); at least 16 characters. Unset: /metrics is open to whoever reaches the admin listener.', { optional: true, secret: true, env: [gh('GATEHOUSE_METRICS_BEARER_TOKEN')] }),
    bearerTokenFile: leaf('string', undefined, 'File holding the bearer token (a Kubernetes Secret); trailing newline ignored.', { optional: true, isPath: true, env: [gh('GATEHOUSE_METRICS_BEARER_TOKEN_FILE')] }),
  }),
  trustedProxies: leaf('stringList', [], 'Peers (IPs or CIDRs) whose X-Forwarded-* headers are kept; others are stripped.'),
  upstream: group('Where requests go.', {
    url: leaf('string', 'echo:', 'Upstream base URL (http:// or https://), or echo: for the built-in echo upstream.', {
      env: [gh('GATEHOUSE_UPSTREAM_URL')],
    }),
    grpcUrl: leaf('string', undefined, 'Where gRPC requests go (h2c:// or https://); used by the HTTP/2 support.', {
      optional: true,
      env: [gh('GATEHOUSE_UPSTREAM_GRPC_URL')],
    }),
    profile: leaf('enum', 'generic', 'What counts as a read and which paths are public.', {
      values: ['generic', 'weaviate', 'qdrant'],
      env: [gh('GATEHOUSE_UPSTREAM_PROFILE')],
    }),
    caFile: leaf('string', undefined, 'PEM CA bundle trusted for an https upstream (in addition to the system CAs).', {
      optional: true,
      isPath: true,
    }),
    preserveHost: leaf('bool', false, 'Send the client Host header upstream instead of the upstream host.'),
    timeouts: group('Upstream timeouts; a timeout answers 504.', {
      connect: leaf('duration', 10 * SECOND, 'Connecting to the upstream.', { min: 1, max: 3_600_000 }),
      headers: leaf('duration', 60 * SECOND, 'Waiting for the response headers.', { min: 1, max: 86_400_000 }),
      body: leaf('duration', 300 * SECOND, 'Maximum idle time between body chunks (0s: none).', { min: 0, max: 86_400_000 }),
    }),
    headers: leaf('secretMap', {}, 'Headers set on every forwarded request (e.g. the upstream’s own API key): a string, {env: VAR} or {file: PATH}.', {
      secret: true,
    }),
  }),
  limits: group('Request and body size limits; a body limit of 0 means unlimited. Bodies always stream.', {
    maxRequestBody: leaf('size', 0, 'Largest request body forwarded (413 beyond).'),
    maxResponseBody: leaf('size', 0, 'Largest upstream response body relayed.'),
    maxHeaderBytes: leaf('size', 16 * 1024, 'Largest request head (request line and headers) accepted (431 beyond).', { min: 1024, max: 1024 * 1024 }),
    maxHeaderCount: leaf('int', 100, 'Most request header fields accepted (431 beyond).', { min: 8, max: 10_000 }),
    maxUrlBytes: leaf('size', 8 * 1024, 'Longest request target accepted (414 beyond).', { min: 64, max: 1024 * 1024 }),
  }),
  reload: group('Reloading the configuration without a restart (SIGHUP always reloads).', {
    watch: leaf('bool', false, 'Also reload when the configuration file (or the API-key file) changes.'),
    watchInterval: leaf('duration', 2 * SECOND, 'How often watched files are checked.', { min: 100, max: 3_600_000 }),
  }),
  shutdown: group('Graceful shutdown.', {
    gracePeriod: leaf('duration', 10 * SECOND, 'How long SIGTERM waits for in-flight requests.', { min: 0, max: 3_600_000 }),
  }),
  authentication: group('Who a request comes from.', {
    anonymous: group('Requests without any credential.', {
      enabled: leaf('bool', undefined, 'Allow anonymous requests. Unset: on only when no other method is enabled.', {
        optional: true,
        env: [wv('AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED')],
      }),
    }),
    allowQueryToken: leaf('bool', false, 'Also accept the token from the access_token query parameter (removed before forwarding).'),
    apikey: group('Static API keys (Weaviate style).', {
      enabled: leaf('bool', false, 'Accept API keys.', { env: [wv('AUTHENTICATION_APIKEY_ENABLED')] }),
      allowedKeys: leaf('stringList', [], 'Keys, plaintext or sha256:<hex>. Prefer allowedKeysFile or the env variable.', {
        secret: true,
        env: [wv('AUTHENTICATION_APIKEY_ALLOWED_KEYS', 'authentication.apikey.enabled', ['authentication.apikey.allowedKeysFile'])],
      }),
      allowedKeysFile: leaf('string', undefined, 'File with one key per line (# comments), e.g. a mounted Kubernetes Secret.', {
        optional: true,
        isPath: true,
      }),
      generateIfMissing: leaf('bool', false, 'Create allowedKeysFile with one random key when it does not exist (demo setups).'),
      users: leaf('stringList', [], 'One user for all keys, or one user per key (key n → user n).', {
        env: [wv('AUTHENTICATION_APIKEY_USERS', 'authentication.apikey.enabled')],
      }),
    }),
    oidc: group('OIDC bearer JWTs (Weaviate style).', {
      enabled: leaf('bool', false, 'Accept OIDC JWTs.', { env: [wv('AUTHENTICATION_OIDC_ENABLED')] }),
      issuer: leaf('string', '', 'Issuer URL, exactly as in the tokens’ iss claim.', {
        env: [wv('AUTHENTICATION_OIDC_ISSUER', 'authentication.oidc.enabled')],
      }),
      clientId: leaf('string', '', 'Client id that must appear in aud.', {
        env: [wv('AUTHENTICATION_OIDC_CLIENT_ID', 'authentication.oidc.enabled')],
      }),
      skipClientIdCheck: leaf('bool', false, 'Do not check aud (only if the issuer’s tokens are meant for you alone).', {
        env: [wv('AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK', 'authentication.oidc.enabled')],
      }),
      usernameClaim: leaf('string', '', 'Claim (dotted path allowed) holding the user name.', {
        env: [wv('AUTHENTICATION_OIDC_USERNAME_CLAIM', 'authentication.oidc.enabled')],
      }),
      groupsClaim: leaf('string', '', 'Claim (dotted path allowed) holding the groups.', {
        env: [wv('AUTHENTICATION_OIDC_GROUPS_CLAIM', 'authentication.oidc.enabled')],
      }),
      scopes: leaf('stringList', [], 'Scopes advertised to clients on the discovery endpoint.', {
        env: [wv('AUTHENTICATION_OIDC_SCOPES', 'authentication.oidc.enabled')],
      }),
      jwksUrl: leaf('string', '', 'Fixed JWKS URL instead of discovery.', {
        env: [wv('AUTHENTICATION_OIDC_JWKS_URL', 'authentication.oidc.enabled')],
      }),
      certificate: leaf('string', '', 'PEM CA certificate (inline, file path, or URL) for TLS to the issuer.', {
        env: [wv('AUTHENTICATION_OIDC_CERTIFICATE', 'authentication.oidc.enabled')],
      }),
      algorithms: leaf('stringList', [], 'Allowed signing algorithms (asymmetric only). Empty: what the issuer advertises, else RS256.'),
      clockTolerance: leaf('duration', 60 * SECOND, 'Tolerance for nbf/iat/exp.', { min: 0, max: 600_000 }),
      maxTokenBytes: leaf('size', 16 * 1024, 'Longest JWT accepted.'),
      browserLogin: group('Browser sign-in on the data listener: an HTML GET without a credential is sent to the issuer (authorization code + PKCE), and a session cookie carries the identity.', {
        enabled: leaf('bool', false, 'Redirect browsers without a credential to the issuer instead of answering 401 (HTML GETs only; API clients keep the JSON 401).', { env: [gh('GATEHOUSE_BROWSER_LOGIN_ENABLED')] }),
        clientSecret: leaf('string', undefined, 'Client secret of a confidential client (unset, with no clientSecretFile: a public client with PKCE).', { optional: true, secret: true, env: [gh('GATEHOUSE_OIDC_CLIENT_SECRET')] }),
        clientSecretFile: leaf('string', undefined, 'File holding the client secret (a Kubernetes Secret); trailing newline ignored.', { optional: true, isPath: true, env: [gh('GATEHOUSE_OIDC_CLIENT_SECRET_FILE')] }),
        scopes: leaf('stringList', ['openid', 'profile', 'email', 'offline_access'], 'Scopes requested at sign-in (openid is always added).'),
        redirectUrl: leaf('string', '', 'The callback URL registered at the issuer, e.g. https://gh.example.com/oauth2/callback. Empty: derived from the request (scheme and Host) — set it behind a proxy that rewrites Host.'),
        cookieName: leaf('string', '__Host-gatehouse-session', 'Name of the session cookie (keep the __Host- prefix: no sibling host can plant or overwrite it).'),
        cookieLifetime: leaf('duration', 12 * 3600 * SECOND, 'Absolute lifetime of a browser session (re-sign-in after it).', { min: 60_000, max: 30 * 86_400_000 }),
        idleTimeout: leaf('duration', 3600 * SECOND, 'A browser session ends after this long without a request.', { min: 1000, max: 30 * 86_400_000 }),
        localUsers: leaf('bool', true, 'When local users are enabled, the data listener’s sign-in page (/oauth2/sign_in) offers them too.'),
      }),
      additionalIssuers: leaf('issuerList', [], 'More issuers, each {issuer, clientId, skipClientIdCheck, usernameClaim, groupsClaim, jwksUrl, certificate, algorithms}; unset fields are taken from this section. Tokens are routed by their iss.'),
      jwks: group('The JWKS cache of each issuer.', {
        cooldown: leaf('duration', 30 * SECOND, 'Minimum time between refetches triggered by an unknown kid.', { min: 0, max: 86_400_000 }),
        refreshInterval: leaf('duration', 600 * SECOND, 'Background refresh interval.', { min: 1000, max: 86_400_000 }),
        staleIfError: leaf('duration', 86_400 * SECOND, 'How long the last good keys keep working while the issuer is unreachable.', { min: 0, max: 30 * 86_400_000 }),
        fetchTimeout: leaf('duration', 5 * SECOND, 'Time limit of each discovery/JWKS fetch.', { min: 1, max: 60_000 }),
        maxBytes: leaf('size', 512 * 1024, 'Size limit of each discovery/JWKS document.'),
      }),
    }),
    local: group('Local users and tokens (Weka’s model) on the admin listener; runtime changes live in the state store.', {
      enabled: leaf('bool', false, 'Enable local users: login, refresh, long-lived tokens, user management.', { env: [gh('GATEHOUSE_LOCAL_ENABLED')] }),
      initialAdminPassword: leaf('string', undefined, 'Password of the admin user created on first start. Unset: admin on a loopback admin listener, else a random one written to <stateDir>/initial-admin-password; either must be changed at first login.', {
        optional: true,
        secret: true,
        env: [gh('GATEHOUSE_ADMIN_PASSWORD')],
      }),
      accessTokenLifetime: leaf('duration', 300 * SECOND, 'Lifetime of access tokens (Weka: 5 minutes).', { min: 1000, max: 86_400_000 }),
      refreshTokenLifetime: leaf('duration', 365 * 86_400 * SECOND, 'Lifetime of refresh tokens (Weka: 1 year).', { min: 1000, max: 10 * 365 * 86_400_000 }),
      longLivedTokenLifetime: leaf('duration', 30 * 86_400 * SECOND, 'Default lifetime of tokens from generate-token (infinite allowed per request).', { min: 1000, max: 100 * 365 * 86_400_000 }),
      lockout: group('Initial account lockout policy (gatehouse security lockout-config).', {
        failedAttempts: leaf('int', 5, 'Consecutive failed logins that lock an account.', { min: 2, max: 50 }),
        lockoutDuration: leaf('duration', 120 * SECOND, 'How long a locked account stays locked.', { min: 30_000, max: 3_600_000 }),
      }),
      banner: group('Initial login banner (gatehouse security login-banner).', {
        text: leaf('string', '', 'Text shown before login.'),
        enabled: leaf('bool', false, 'Show the banner.'),
      }),
      loginThrottle: group('Per-client-address limit of failed logins across all user names (password spraying); the per-account lockout cannot see it.', {
        enabled: leaf('bool', true, 'Throttle addresses with many failed logins.'),
        maxFailures: leaf('int', 30, 'Failed logins from one address within window (any names, unknown ones too) that block it.', { min: 1, max: 100_000 }),
        window: leaf('duration', 300 * SECOND, 'Window in which failed logins are counted.', { min: 1000, max: 86_400_000 }),
        blockDuration: leaf('duration', 300 * SECOND, 'How long a blocked address gets 429 for every login, a right password included.', { min: 1000, max: 86_400_000 }),
      }),
    }),
    // --- directory users (LDAP / Active Directory, SPEC §12; docs/directory.md)
    ldap: group('Directory users (LDAP or Active Directory) signing in beside local users; their role comes from directory groups. Needs authentication.local. Runtime changes (gatehouse user ldap …) live in the state store and override this section.', {
      enabled: leaf('bool', false, 'Let directory users sign in.', { env: [gh('GATEHOUSE_LDAP_ENABLED')] }),
      urls: leaf('stringList', [], 'Servers, tried in order when one cannot be reached: ldaps://HOST[:PORT], or ldap://HOST[:PORT] with StartTLS.'),
      startTls: leaf('bool', true, 'Require StartTLS on ldap:// URLs. false sends the passwords in clear text: for tests only (a warning).'),
      bindDn: leaf('string', '', 'DN of the reader account that searches users and groups.', { env: [gh('GATEHOUSE_LDAP_BIND_DN')] }),
      bindPassword: leaf('string', undefined, 'The reader’s password.', { optional: true, secret: true, env: [gh('GATEHOUSE_LDAP_BIND_PASSWORD')] }),
      bindPasswordFile: leaf('string', undefined, 'File holding the reader’s password (a Kubernetes Secret); trailing newline ignored.', { optional: true, isPath: true, env: [gh('GATEHOUSE_LDAP_BIND_PASSWORD_FILE')] }),
      userBaseDn: leaf('string', '', 'Where users are searched (subtree). With activeDirectory: default the domain’s DN.'),
      userObjectClass: leaf('string', 'inetOrgPerson', 'Object class of user entries (activeDirectory: user).'),
      userIdAttribute: leaf('string', 'uid', 'Attribute holding the sign-in name (activeDirectory: sAMAccountName, or userPrincipalName for names with @).'),
      userFilter: leaf('string', '', 'Extra LDAP filter a user entry must also match, e.g. (!(pwdAccountLockedTime=*)) to refuse locked accounts (activeDirectory adds the disabled-account bit).'),
      groupBaseDn: leaf('string', '', 'Where groups are searched (subtree). With activeDirectory: default the domain’s DN.'),
      groupObjectClass: leaf('string', 'groupOfNames', 'Object class of group entries (activeDirectory: group).'),
      membershipAttribute: leaf('enum', 'member', 'How membership is recorded: member or uniqueMember (the group lists user DNs), memberUid (the group lists user ids), memberOf (the user lists group DNs; activeDirectory: memberOf with nested groups).', { values: ['member', 'uniqueMember', 'memberUid', 'memberOf'] }),
      groupIdAttribute: leaf('string', 'cn', 'Attribute naming a group (the values roleGroups refer to).'),
      roleGroups: group('Groups (their groupIdAttribute value) granting each role; a user in several gets the highest (admin > regular > readonly), a user in none may not sign in.', {
        admin: leaf('string', '', 'Group of admins.'),
        regular: leaf('string', '', 'Group of regular users.'),
        readonly: leaf('string', '', 'Group of read-only users.'),
      }),
      timeouts: group('Bounds on every directory round trip; beyond them a directory sign-in answers 503 ERR_DIRECTORY_UNAVAILABLE.', {
        connect: leaf('duration', 5 * SECOND, 'Connecting (TCP and TLS) to one server.', { min: 100, max: 60_000 }),
        operation: leaf('duration', 5 * SECOND, 'Each LDAP operation (bind, StartTLS, search).', { min: 100, max: 60_000 }),
      }),
      caFile: leaf('string', undefined, 'PEM CA bundle trusted for the directory’s certificate (the CA of security ca-cert is trusted too; unset: the system CAs as well).', { optional: true, isPath: true, env: [gh('GATEHOUSE_LDAP_CA_FILE')] }),
      localShadowsDirectory: leaf('bool', false, 'A local user whose name also exists in the directory signs in as the local user. false: such a sign-in is refused (409 ERR_DIRECTORY_NAME_CLASH) until one of them is renamed.'),
      activeDirectory: group('The Active Directory preset: set the domain and the directory’s object classes and attributes follow from it.', {
        domain: leaf('string', '', 'DNS domain, e.g. corp.example.com (empty: not Active Directory).'),
      }),
    }),
    // --- end directory users
    tokenCache: group('Verified-token cache (JWTs): a repeated token costs a hash and a look-up.', {
      maxEntries: leaf('int', 10_000, 'Entries kept (LRU); 0 turns the cache off.', { min: 0, max: 10_000_000 }),
      maxTtl: leaf('duration', 300 * SECOND, 'Longest time a verification is reused (never past the token’s exp).', { min: 0, max: 86_400_000 }),
    }),
    failureThrottle: group('Per-client-address throttling of failed credentials (429 with Retry-After), so keys cannot be guessed at line rate.', {
      enabled: leaf('bool', true, 'Throttle addresses that present failing credentials.'),
      maxFailures: leaf('int', 20, 'Failed credentials from one address within window that block it.', { min: 1, max: 1_000_000 }),
      window: leaf('duration', 60 * SECOND, 'Window in which failures are counted.', { min: 1000, max: 86_400_000 }),
      blockDuration: leaf('duration', 60 * SECOND, 'How long a blocked address gets 429 for credentials that could be guesses (JWTs whose signature verifies and API keys proven from it still pass).', { min: 1000, max: 86_400_000 }),
      maxAddresses: leaf('int', 100_000, 'Addresses tracked at most (LRU; bounds memory).', { min: 100, max: 10_000_000 }),
    }),
  }),
  authorization: group('What an identity may do.', {
    adminlist: group('Weaviate’s admin list.', {
      enabled: leaf('bool', false, 'Enforce the admin list; off: every authenticated principal may do everything.', {
        env: [wv('AUTHORIZATION_ADMINLIST_ENABLED')],
      }),
      users: leaf('stringList', [], 'Users who may do everything.', {
        env: [wv('AUTHORIZATION_ADMINLIST_USERS', 'authorization.adminlist.enabled')],
      }),
      readonlyUsers: leaf('stringList', [], 'Users who may only read.', {
        env: [wv('AUTHORIZATION_ADMINLIST_READONLY_USERS', 'authorization.adminlist.enabled')],
      }),
      groups: leaf('stringList', [], 'Groups whose members may do everything.', {
        env: [wv('AUTHORIZATION_ADMINLIST_GROUPS', 'authorization.adminlist.enabled')],
      }),
      readonlyGroups: leaf('stringList', [], 'Groups whose members may only read.', {
        env: [wv('AUTHORIZATION_ADMINLIST_READONLY_GROUPS', 'authorization.adminlist.enabled')],
      }),
    }),
  }),
  identityHeaders: group('Headers injected into forwarded requests (client-sent copies are always removed).', {
    user: leaf('string', 'X-Forwarded-User', 'User name.'),
    groups: leaf('string', 'X-Forwarded-Groups', 'Groups, comma-separated.'),
    email: leaf('string', 'X-Forwarded-Email', 'Email, when known.'),
    authMethod: leaf('string', 'X-Forwarded-Auth-Method', 'apikey | oidc | local | anonymous.'),
    requestId: leaf('string', 'X-Request-Id', 'Request id (kept from the client when well-formed).'),
    passAuthorization: leaf('bool', false, 'Pass the client’s Authorization header (and qdrant api-key header) upstream.'),
    strip: leaf('stringList', [...DEFAULT_IDENTITY_STRIP], 'Identity headers other proxies inject, removed from every client request in any spelling (case, _, .); an entry ending in * is a prefix. Setting it replaces the list.'),
  }),
})

/** Iterate over every leaf with its dotted path, in schema order. */
export function* leaves(node: Group = SCHEMA, prefix = ''): Generator<[string, Leaf]> {
  for (const [k, child] of Object.entries(node.children)) {
    const p = prefix === '' ? k : `${prefix}.${k}`
    if (child.kind === 'leaf') yield [p, child]
    else yield* leaves(child, p)
  }
}

/** Find the leaf at a dotted path. */
export function leafAt(path: string): Leaf | undefined {
  let node: Node = SCHEMA
  for (const part of path.split('.')) {
    if (node.kind !== 'group') return undefined
    const next: Node | undefined = node.children[part]
    if (next === undefined) return undefined
    node = next
  }
  return node.kind === 'leaf' ? node : undefined
}
