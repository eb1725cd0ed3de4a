/** src/http/html.ts: the `html` template escapes everything that is not itself `html`. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { escapeHtml, html, PAGE_HEADERS, SafeHtml } from '../../src/http/html.ts'

describe('html', () => {
  it('escapes interpolated text, attributes included', () => {
    const banner = '<script>alert("x")</script> & \'quoted\' `tick`'
    assert.equal(html`<p title="${banner}">${banner}</p>`.toString(), '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39; &#96;tick&#96;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39; &#96;tick&#96;</p>')
  })
  it('nests html without escaping it twice, joins arrays, drops undefined/null/false', () => {
    const items = ['a<b', 'c'].map((x) => html`<li>${x}</li>`)
    assert.equal(html`<ul>${items}</ul>${undefined}${null}${false}${0}`.toString(), '<ul><li>a&lt;b</li><li>c</li></ul>0')
  })
  it('a string that looks like markup is never trusted, only SafeHtml from html is', () => {
    assert.ok(html`x` instanceof SafeHtml)
    assert.equal(html`${'<b>' as string}`.toString(), '&lt;b&gt;')
    assert.equal(escapeHtml('&amp;'), '&amp;amp;')
  })
  it('page headers: CSP without inline script and no framing, nosniff, same-origin referrer policy', () => {
    const csp = PAGE_HEADERS['content-security-policy'] as string
    assert.match(csp, /script-src 'self'(;|$)/)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
    assert.match(csp, /frame-ancestors 'none'/)
    assert.equal(PAGE_HEADERS['x-content-type-options'], 'nosniff')
    assert.equal(PAGE_HEADERS['referrer-policy'], 'same-origin')
  })
})
