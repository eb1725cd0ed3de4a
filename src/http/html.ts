/**
 * HTML that gatehouse renders itself (the web console, the browser sign-in page): escaping by
 * default, and the security headers every page carries (SPEC §10).
 *
 * `html` is a tagged template: every interpolated value is escaped unless it is itself the
 * result of `html` (a `SafeHtml`), so user-controlled text (a banner, a user name, an error
 * message) can only ever appear as text. Arrays are joined, `undefined`/`null`/`false` render
 * nothing. There is no "raw" escape hatch on purpose; static markup belongs in the template.
 */

/** Markup produced by `html` (and only by it). */
export class SafeHtml {
  readonly #text: string
  /** @internal use `html` */
  constructor(text: string) {
    this.#text = text
  }
  toString(): string {
    return this.#text
  }
}

const ESC: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' }

/** Escape text for an HTML text node or a quoted attribute value. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => ESC[c] as string)
}

type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[]

function render(v: Value): string {
  if (v === undefined || v === null || v === false) return ''
  if (v instanceof SafeHtml) return v.toString()
  if (Array.isArray(v)) return (v as readonly Value[]).map(render).join('')
  return escapeHtml(String(v))
}

/** The tagged template: `html\`<p>${userText}</p>\`` escapes `userText`. */
export function html(strings: TemplateStringsArray, ...values: readonly Value[]): SafeHtml {
  let out = strings[0] as string
  for (let i = 0; i < values.length; i++) out += render(values[i] as Value) + (strings[i + 1] as string)
  return new SafeHtml(out)
}

/**
 * Headers of every page gatehouse serves (SPEC §10): a CSP with no inline script or style and
 * no framing, `nosniff`, `Referrer-Policy: same-origin` (with `no-referrer` browsers send
 * `Origin: null` on the page's own form posts), no caching of pages that show account data.
 * `form-action 'self'` keeps a page's forms (even an injected one) posting to this origin only;
 * the sign-in flows that continue to an identity provider do so by redirect, which it allows.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
})
