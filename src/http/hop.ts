/**
 * Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still see). They describe one
 * connection and are never forwarded in either direction.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])
