/**
 * Methods gatehouse never forwards, refused before authentication (stage 0).
 *
 * `TRACE` makes the server echo the request it received — `Authorization`, cookies and the
 * identity headers gatehouse injects included — back in the response body; a script that can
 * send it reads them (cross-site tracing, CWE-693; OWASP WSTG-CONF-06). `TRACK` is IIS's
 * variant. Nobody needs either through an authenticating proxy.
 */
import { GatehouseError } from '../errors.ts'

/**
 * Refuse a method that is never forwarded. The answer is 405 without `Allow`: gatehouse does
 * not know which methods the upstream serves, and a guessed list would mislead.
 *
 * @throws GatehouseError ERR_METHOD_NOT_FORWARDED for `TRACE` and `TRACK` (exact, as methods
 *   are case-sensitive, RFC 9110 §9.1; a lower-case `trace` is an unknown method and a write).
 */
export function refuseUnforwardable(method: string | undefined): void {
  if (method === 'TRACE' || method === 'TRACK') throw new GatehouseError('ERR_METHOD_NOT_FORWARDED', { detail: method })
}
