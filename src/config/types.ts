/**
 * The validated, frozen configuration. Produced by `loadConfig` (YAML, then environment over it)
 * and consumed only at start by `compile`; the hot path never reads it.
 */
import type { LogLevel } from '../log.ts'
import type { StoreSettings } from '../store/open.ts'

/** The upstream profile decides what counts as a read and which paths are public (SPEC §6). */
export type ProfileName = 'generic' | 'weaviate' | 'qdrant'

/** A secret value given inline, by environment variable or by file (Kubernetes Secret). */
export type SecretRef = { value: string } | { env: string } | { file: string }

export interface Config {
  /** Absolute path of the YAML file that was read, or undefined when only defaults/env applied. */
  readonly configFile: string | undefined
  readonly listen: {
    readonly address: string
    readonly port: number
    /** Slow-client limits, in ms (body 0: none). */
    readonly timeouts: { readonly headers: number; readonly body: number; readonly keepAlive: number; readonly minBodyRate: number; readonly bodyRateWindow: number; readonly bodyRateGrace: number }
  }
  readonly admin: { readonly enabled: boolean; readonly address: string; readonly port: number; readonly bodyTimeout: number }
  /** The web console (ms). */
  readonly console: { readonly enabled: boolean; readonly idleTimeout: number; readonly absoluteLifetime: number }
  readonly tls: {
    readonly enabled: boolean
    readonly certFile: string | undefined
    readonly keyFile: string | undefined
    readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
    readonly ciphers: string | undefined
    /** Poll interval for certificate file changes, in ms; 0 turns watching off. */
    readonly watchInterval: number
    /** Session-ticket key replacement period, in ms; 0: never (src/tls/ticketKeys.ts). */
    readonly ticketKeyRotation: number
  }
  // HTTP/2 and gRPC
  readonly http2: {
    readonly enabled: boolean
    readonly maxConcurrentStreams: number
    readonly maxHeaderListSize: number
    readonly maxSessionRejectedStreams: number
    readonly maxResets: number
    /** ms */
    readonly resetWindow: number
    /** ms without any frame before a session gets GOAWAY */
    readonly idleTimeout: number
  }
  readonly grpcListener: { readonly enabled: boolean; readonly address: string; readonly port: number }
  readonly workers: number
  readonly stateDir: string
  /** The state store (docs/replicas.md); durations in ms. */
  readonly store: StoreSettings
  readonly log: { readonly level: LogLevel; readonly access: boolean }
  /** `GET /metrics` (docs/metrics.md). */
  readonly metrics: { readonly enabled: boolean; readonly bearerToken: string | undefined; readonly bearerTokenFile: string | undefined }
  /** Peers whose X-Forwarded-* headers are kept (IPs or CIDRs). */
  readonly trustedProxies: readonly string[]
  readonly upstream: {
    readonly url: string
    readonly grpcUrl: string | undefined
    readonly profile: ProfileName
    readonly caFile: string | undefined
    readonly preserveHost: boolean
    readonly timeouts: { readonly connect: number; readonly headers: number; readonly body: number }
    readonly headers: Readonly<Record<string, SecretRef>>
  }
  readonly limits: {
    readonly maxRequestBody: number
    readonly maxResponseBody: number
    readonly maxHeaderBytes: number
    readonly maxHeaderCount: number
    readonly maxUrlBytes: number
  }
  readonly reload: { readonly watch: boolean; readonly watchInterval: number }
  readonly shutdown: { readonly gracePeriod: number }
  readonly authentication: {
    readonly anonymous: { readonly enabled: boolean | undefined }
    readonly allowQueryToken: boolean
    readonly apikey: {
      readonly enabled: boolean
      readonly allowedKeys: readonly string[]
      readonly allowedKeysFile: string | undefined
      readonly generateIfMissing: boolean
      readonly users: readonly string[]
    }
    readonly oidc: {
      readonly enabled: boolean
      readonly issuer: string
      readonly clientId: string
      readonly skipClientIdCheck: boolean
      readonly usernameClaim: string
      readonly groupsClaim: string
      readonly scopes: readonly string[]
      readonly jwksUrl: string
      readonly certificate: string
      readonly algorithms: readonly string[]
      readonly clockTolerance: number
      readonly maxTokenBytes: number
      /** Browser sign-in (SPEC §10); durations in ms. */
      readonly browserLogin: {
        readonly enabled: boolean
        readonly clientSecret: string | undefined
        readonly clientSecretFile: string | undefined
        readonly scopes: readonly string[]
        readonly redirectUrl: string
        readonly cookieName: string
        readonly cookieLifetime: number
        readonly idleTimeout: number
        readonly localUsers: boolean
      }
      readonly additionalIssuers: readonly AdditionalIssuer[]
      readonly jwks: {
        readonly cooldown: number
        readonly refreshInterval: number
        readonly staleIfError: number
        readonly fetchTimeout: number
        readonly maxBytes: number
      }
    }
    readonly local: {
      readonly enabled: boolean
      readonly initialAdminPassword: string | undefined
      readonly accessTokenLifetime: number
      readonly refreshTokenLifetime: number
      readonly longLivedTokenLifetime: number
      readonly lockout: { readonly failedAttempts: number; readonly lockoutDuration: number }
      readonly banner: { readonly text: string; readonly enabled: boolean }
      readonly loginThrottle: { readonly enabled: boolean; readonly maxFailures: number; readonly window: number; readonly blockDuration: number }
    }
    /** Directory users (SPEC §12, docs/directory.md); durations in ms. */
    readonly ldap: LdapDirectoryShape & {
      readonly enabled: boolean
      readonly urls: readonly string[]
      readonly startTls: boolean
      readonly bindDn: string
      readonly bindPassword: string | undefined
      readonly bindPasswordFile: string | undefined
      readonly timeouts: { readonly connect: number; readonly operation: number }
      readonly caFile: string | undefined
      readonly localShadowsDirectory: boolean
      readonly activeDirectory: { readonly domain: string }
    }
    readonly tokenCache: { readonly maxEntries: number; readonly maxTtl: number }
    readonly failureThrottle: {
      readonly enabled: boolean
      readonly maxFailures: number
      readonly window: number
      readonly blockDuration: number
      readonly maxAddresses: number
    }
  }
  readonly authorization: {
    readonly adminlist: {
      readonly enabled: boolean
      readonly users: readonly string[]
      readonly readonlyUsers: readonly string[]
      readonly groups: readonly string[]
      readonly readonlyGroups: readonly string[]
    }
  }
  readonly identityHeaders: {
    readonly user: string
    readonly groups: string
    readonly email: string
    readonly authMethod: string
    readonly requestId: string
    readonly passAuthorization: boolean
    /** Header names and prefixes (`x-remote-*`) removed from client requests (docs/configuration.md). */
    readonly strip: readonly string[]
  }
}

/** One more OIDC issuer; unset fields inherit from `authentication.oidc`. */
export interface AdditionalIssuer {
  readonly issuer: string
  readonly clientId?: string
  readonly skipClientIdCheck?: boolean
  readonly usernameClaim?: string
  readonly groupsClaim?: string
  readonly jwksUrl?: string
  readonly certificate?: string
  readonly algorithms?: readonly string[]
}

export type { LogLevel }

/** Where a configuration value came from; `config print` shows it next to the value. */
export type Source =
  | { readonly kind: 'default' }
  | { readonly kind: 'file'; readonly file: string; readonly line: number }
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'derived'; readonly why: string }

/** One configuration problem; all are collected and reported together (exit 2). */
export interface Problem {
  /** Dotted key path, e.g. `authentication.apikey.users[1]`. */
  readonly path: string
  readonly source: Source | undefined
  /** The offending value, already redacted when the key holds a secret. */
  readonly value: string | undefined
  readonly message: string
  /** What to do about it. */
  readonly remedy: string
}

/** Where users and groups are in a directory: shared by `authentication.ldap` and the effective settings. */
export interface LdapDirectoryShape {
  readonly userBaseDn: string
  readonly userObjectClass: string
  readonly userIdAttribute: string
  readonly userFilter: string
  readonly groupBaseDn: string
  readonly groupObjectClass: string
  readonly membershipAttribute: 'member' | 'uniqueMember' | 'memberUid' | 'memberOf'
  readonly groupIdAttribute: string
  readonly roleGroups: { readonly admin: string; readonly regular: string; readonly readonly: string }
}
