/**
 * Which requests without a credential are sent to sign in, and which keep the JSON 401 of
 * SPEC §9: only a browser navigating to a page. Pomerium decides from `Accept` alike
 * (authorize/check_response.go `ShouldRedirect`); oauth2-proxy's users asked for years that XHR
 * and API calls never be redirected (oauth2-proxy#1522, #461): a redirect to an identity
 * provider's HTML is useless to a program and breaks CORS for a script.
 */

/** What the decision reads of a request. */
export interface NavigationFacts {
  readonly method?: string | undefined
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v
}

/**
 * True for a top-level page load: a `GET` whose `Accept` names `text/html`, and — when the
 * browser sends Fetch Metadata — `Sec-Fetch-Mode: navigate` and `Sec-Fetch-Dest: document`
 * (an `<iframe>`, a `fetch()` or an `XMLHttpRequest` never is). `X-Requested-With:
 * XMLHttpRequest` (jQuery, Angular) is never a navigation either.
 */
export function isPageNavigation(r: NavigationFacts): boolean {
  if (r.method !== 'GET') return false
  const h = r.headers
  const accept = one(h.accept)?.toLowerCase()
  if (accept === undefined || !accept.split(',').some((t) => t.split(';')[0]?.trim() === 'text/html')) return false
  const mode = one(h['sec-fetch-mode'])?.trim().toLowerCase()
  if (mode !== undefined && mode !== 'navigate') return false
  const dest = one(h['sec-fetch-dest'])?.trim().toLowerCase()
  if (dest !== undefined && dest !== 'document') return false
  if (one(h['x-requested-with'])?.trim().toLowerCase() === 'xmlhttprequest') return false
  return true
}
