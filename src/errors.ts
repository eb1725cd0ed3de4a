/**
 * The one error type of gatehouse and its table of stable reason codes.
 *
 * Callers branch on `.code`, never on message text (STYLE habit 1). Errors from jose, undici
 * and node:tls are translated into these at the boundary where they are caught.
 */

/** One row of the table: HTTP status and the public message clients see. */
export interface ErrorSpec {
  readonly status: number
  readonly message: string
}

/**
 * Reason code → status and public message. Public messages never contain claims, keys or
 * tokens (SPEC §9); details go to `GatehouseError.detail`, which is logged but not sent.
 */
export const ERRORS = {
  ERR_UNAUTHENTICATED: { status: 401, message: 'anonymous access not enabled' },
  ERR_NO_AUTH_SCHEME: {
    status: 401,
    message:
      "no authentication scheme is configured (API Key or OIDC), but an 'Authorization' header was provided. Please configure an auth scheme or remove the header for anonymous access",
  },
  ERR_INVALID_API_KEY: { status: 401, message: 'unauthorized: invalid api key' },
  ERR_UNKNOWN_ISSUER: {
    status: 401,
    message: 'unauthorized: the token was issued by an issuer this proxy does not trust',
  },
  ERR_INVALID_TOKEN: { status: 401, message: 'unauthorized: invalid token' },
  ERR_TOKEN_EXPIRED: { status: 401, message: 'unauthorized: the token has expired' },
  ERR_MISSING_CLAIM: { status: 401, message: 'unauthorized: the token lacks the user name claim' },
  ERR_FORBIDDEN: { status: 403, message: 'forbidden: insufficient permissions for this request' },
  ERR_PASSWORD_CHANGE_REQUIRED: { status: 403, message: 'password change required: change the password first (gatehouse user passwd)' },
  ERR_LOGIN_FAILED: { status: 401, message: 'Invalid username or password' },
  ERR_INVALID_REFRESH_TOKEN: { status: 401, message: 'unauthorized: invalid or expired refresh token; log in again' },
  ERR_ACCOUNT_LOCKED: { status: 429, message: 'too many failed login attempts; try again later' },
  ERR_WEAK_PASSWORD: { status: 400, message: 'the password breaks the password rules' },
  ERR_USER_EXISTS: { status: 409, message: 'a user with this name already exists' },
  ERR_USER_NOT_FOUND: { status: 404, message: 'no such user' },
  ERR_BAD_CERTIFICATE: { status: 400, message: 'the certificate or key is not usable' },
  ERR_BAD_REQUEST: { status: 400, message: 'bad request: the request is not valid HTTP/1.1' },
  ERR_BAD_PATH: {
    status: 400,
    message:
      'the request path is ambiguous (encoded slash or backslash, control character, fragment or matrix parameter); send the plain path',
  },
  ERR_AMBIGUOUS_CREDENTIAL: {
    status: 400,
    message: 'more than one credential was presented; send exactly one',
  },
  ERR_HEADERS_TOO_LARGE: { status: 431, message: 'request headers are too large' },
  ERR_TOO_MANY_HEADERS: { status: 431, message: 'too many request header fields' },
  ERR_UNSUPPORTED_TRANSFER_CODING: { status: 501, message: 'only the chunked transfer coding is supported; send the body with Content-Length or chunked' },
  ERR_URL_TOO_LONG: { status: 414, message: 'the request target is too long' },
  ERR_REQUEST_TIMEOUT: { status: 408, message: 'the request was not received in time; send it without pauses' },
  ERR_TOO_MANY_FAILURES: {
    status: 429,
    message: 'too many failed authentication attempts from this address; wait for Retry-After seconds and use a valid credential',
  },
  ERR_STORE_UNAVAILABLE: {
    status: 503,
    message: 'the state store cannot be written (disk full or read-only); the operator must free space or fix permissions',
  },
  ERR_NOT_FOUND: { status: 404, message: 'not found' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  ERR_METHOD_NOT_FORWARDED: { status: 405, message: 'TRACE and TRACK are never forwarded (they would echo credentials back); send the request with another method' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'the admin API takes JSON bodies only: send Content-Type: application/json' },
  ERR_REQUEST_TOO_LARGE: { status: 413, message: 'request body exceeds the configured limit' },
  ERR_UPSTREAM_UNAVAILABLE: {
    status: 502,
    message: 'the upstream service refused or reset the connection',
  },
  ERR_UPSTREAM_RESPONSE_TOO_LARGE: {
    status: 502,
    message: 'the upstream response exceeds the configured limit',
  },
  ERR_UPSTREAM_BAD_RESPONSE: { status: 502, message: 'the upstream sent an invalid response' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, message: 'the upstream service did not answer in time' },
  ERR_IDP_UNAVAILABLE: {
    status: 503,
    message: 'the identity provider’s keys are not available yet; retry shortly',
  },
  ERR_DRAINING: { status: 503, message: 'gatehouse is shutting down; retry on another instance' },
  // Directory users (LDAP / Active Directory, SPEC §12)
  ERR_DIRECTORY_UNAVAILABLE: { status: 503, message: 'the user directory (LDAP) cannot be reached or did not answer in time; retry shortly, or sign in as a local user' },
  ERR_DIRECTORY_NAME_CLASH: { status: 409, message: 'this name belongs both to a local user and to a directory user; an admin must rename or delete one of them (or set authentication.ldap.localShadowsDirectory)' },
  ERR_DIRECTORY_NO_ROLE: { status: 403, message: 'forbidden: the directory account is in none of the groups that grant a gatehouse role (admin, regular, readonly)' },
  ERR_INTERNAL: { status: 500, message: 'internal error' },
  // HTTP/2, gRPC, WebSocket
  ERR_GRPC_NOT_CONFIGURED: { status: 501, message: 'gRPC is not configured on this proxy: set upstream.grpcUrl' },
  ERR_GRPC_BAD_CALL: { status: 400, message: 'not a valid gRPC call: POST to /package.Service/Method' },
  ERR_GRPC_ONLY: { status: 415, message: 'this listener serves only gRPC (content-type application/grpc)' },
  ERR_UPGRADE_UNSUPPORTED: { status: 501, message: 'this upgrade is not supported: only WebSocket upgrades to an http(s) upstream are proxied' },
} as const satisfies Record<string, ErrorSpec>

/** A stable reason code. */
export type ErrorCode = keyof typeof ERRORS

/**
 * An error with a stable reason code. `message` is the public message (may be overridden
 * with a more precise public text); `detail` is for logs only.
 */
export class GatehouseError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly detail: string | undefined
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(
    code: ErrorCode,
    options: { message?: string; detail?: string; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(options.message ?? ERRORS[code].message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatehouseError'
    this.code = code
    this.status = ERRORS[code].status
    this.detail = options.detail
    this.headers = options.headers
  }
}

/** True when `e` is a GatehouseError (works across module copies). */
export function isGatehouseError(e: unknown): e is GatehouseError {
  return e instanceof GatehouseError
}

/** The JSON body of every error gatehouse itself answers with (SPEC §9). */
export interface ErrorBody {
  code: number
  message: string
  reason: ErrorCode
  requestId: string
}

/** Build the public JSON body for an error. */
export function errorBody(err: GatehouseError, requestId: string): ErrorBody {
  return { code: err.status, message: err.message, reason: err.code, requestId }
}
