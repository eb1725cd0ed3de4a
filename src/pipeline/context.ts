/**
 * The state of one request as it moves through the stages. Plain data; each stage fills in
 * its part, and the access-log line reads it at the end.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Credential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import type { Classification } from '../authz/profiles.ts'
import type { ErrorCode } from '../errors.ts'

export interface RequestContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly start: bigint
  requestId: string
  /** Normalized path (undefined until stage 2 succeeds). */
  path: string | undefined
  /** Query to forward (without a consumed access_token). */
  query: string
  credential: Credential | undefined
  classification: Classification | undefined
  principal: Principal | undefined
  /** Reason code of the error answer, if any. */
  reason: ErrorCode | undefined
  upstreamStatus: number | undefined
  /** How long the upstream exchange took (ms), measured only when metrics are on. */
  upstreamMs: number | undefined
  /** Log-only detail of an error. */
  detail: string | undefined
  /** Set by the forwarder: aborts the upstream exchange when the client goes away. */
  abortUpstream: (() => void) | undefined
}
