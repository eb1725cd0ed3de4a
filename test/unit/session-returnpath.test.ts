/**
 * safeReturnPath: the return-to URL of the browser sign-in is a path on this origin only. The
 * cases are oauth2-proxy's (its advisories and its testdata/openredirects.txt, at commit
 * 14af2951e562c9573c72c433732ceee83aea3282, pkg/app/redirect/validator_test.go) plus issue 14's list.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_RETURN_PATH, MAX_RETURN_PATH, safeReturnPath } from '../../src/session/returnPath.ts'

const REFUSED: readonly (readonly [string, string])[] = [
  // issue 14
  ['protocol-relative //evil', '//evil.com'],
  ['slash-backslash /\\evil', '/\\evil.com'],
  ['double backslash \\\\evil', '\\\\evil.com'],
  ['encoded tab /%09/evil', '/%09/evil.com'],
  ['encoded slashes /%2F%2Fevil', '/%2F%2Fevil.com'],
  ['encoded lowercase slashes /%2f%2fevil', '/%2f%2fevil.com'],
  ['encoded backslashes /%5C%5Cevil', '/%5C%5Cevil.com'],
  ['scheme without slashes https:evil', 'https:evil.com'],
  ['absolute URL https://evil', 'https://evil.com/'],
  ['javascript: URL', 'javascript:alert(1)'],
  ['tab inside the scheme', 'java\tscript:alert(1)'],
  ['newline inside the scheme', 'java\nscript:alert(1)'],
  ['raw CR in a path', '/a\rb'],
  ['raw LF in a path', '/a\nb'],
  ['raw NUL in a path', '/a\u0000b'],
  ['encoded CR', '/a%0Db'],
  ['encoded LF', '/a%0ab'],
  ['encoded NUL', '/a%00b'],
  ['dot segment then slash /.//evil', '/.//evil.com'],
  ['dot-dot segments', '/a/../../evil'],
  ['encoded dot segment', '/%2e%2e/evil'],
  ['userinfo /@evil', '/@evil.com'],
  ['userinfo //user@evil', '//user@evil.com'],
  ['encoded userinfo /%40evil', '/%40evil.com'],
  ['backslash at the end', '/path\\'],
  ['double-encoded slashes /%252F%252Fevil', '/%252F%252Fevil.com'],
  ['fullwidth solidus (NFKC → //)', '/\uFF0Fevil.com'],
  ['encoded fullwidth solidus', '/%EF%BC%8Fevil.com'],
  ['stray percent sign', '/a%zz'],
  ['relative path', 'evil.com/path'],
  ['empty', ''],
  ['raw space', '/a b'],
  // oauth2-proxy GHSA-qqxw-m5fj-f7gv: /\ redirects
  ['GHSA-qqxw-m5fj-f7gv /\\evil.com', '/\\evil.com'],
  // oauth2-proxy GHSA-j7px-6hwj-hpjg: whitespace between the slashes
  ['GHSA-j7px-6hwj-hpjg space single slash', '/ /evil.com'],
  ['GHSA-j7px-6hwj-hpjg space double slash', '/ \\evil.com'],
  ['GHSA-j7px-6hwj-hpjg tab single slash', '/\t/evil.com'],
  ['GHSA-j7px-6hwj-hpjg tab double slash', '/\t\\evil.com'],
  ['GHSA-j7px-6hwj-hpjg vertical tab single slash', '/\v/evil.com'],
  ['GHSA-j7px-6hwj-hpjg vertical tab double slash', '/\v\\evil.com'],
  ['GHSA-j7px-6hwj-hpjg new line single slash', '/\n/evil.com'],
  ['GHSA-j7px-6hwj-hpjg new line double slash', '/\n\\evil.com'],
  ['GHSA-j7px-6hwj-hpjg carriage return single slash', '/\r/evil.com'],
  ['GHSA-j7px-6hwj-hpjg carriage return double slash', '/\r\\evil.com'],
  // oauth2-proxy GHSA-5m6c-jp6f-2vcv: more tabs, and dot segments
  ['GHSA-5m6c-jp6f-2vcv double tab', '/\t/\t\\evil.com'],
  ['GHSA-5m6c-jp6f-2vcv triple tab 1', '/\t\t/\t/evil.com'],
  ['GHSA-5m6c-jp6f-2vcv triple tab 2', '/\t\t\\\t/evil.com'],
  ['GHSA-5m6c-jp6f-2vcv quad tab 1', '/\t\t/\t\t\\evil.com'],
  ['GHSA-5m6c-jp6f-2vcv quad tab 2', '/\t\t\\\t\t/evil.com'],
  ['GHSA-5m6c-jp6f-2vcv relative path /./\\', '/./\\evil.com'],
  ['GHSA-5m6c-jp6f-2vcv relative subpath /./../../\\', '/./../../\\evil.com'],
  // oauth2-proxy validator_test.go
  ['oauth2-proxy double slash', '//redirect'],
  ['oauth2-proxy missing protocol root domain', 'foo.bar/redirect'],
  ['oauth2-proxy valid HTTP (absolute URLs are never ours)', 'http://foo.bar/redirect'],
  // a trailing slash is allowed, but never a doubled one or one made of spaces
  ['a doubled trailing slash', '/dashboard//'],
  ['an encoded doubled trailing slash', '/dashboard/%2F'],
  ['a trailing segment of spaces', '/dashboard/%20'],
  ['a root of spaces', '/%20/'],
]

// A sample of oauth2-proxy's testdata/openredirects.txt (every 12th line; added by GHSA-5m6c-jp6f-2vcv).
// oauth2-proxy tests each line after one query-unescape; both forms are checked here.
const OPENREDIRECTS_TXT: readonly string[] = [
  "/%09/www.whitelisteddomain.tld@localdomain.pw",
  "/%5cwww.whitelisteddomain.tld@google.com",
  "//%5cgoogle.com",
  "///%5cexample.com",
  "////%5cexample.com",
  "////example.com/",
  "////google.com/",
  "////www.google.com/%2e%2e",
  "////www.whitelisteddomain.tld@www.google.com/%2e%2e",
  "///example.com//",
  "///google.com/%2f..",
  "///www.whitelisteddomain.tld@google.com/",
  "//3H6k7lIAiqjfNeN@example.com+@google.com/",
  "//example.com/",
  "//google%00.com",
  "//google.com\\texample.com/",
  "//https://localdomain.pw//",
  "//localdomain.pw/%2e%2e%2f",
  "//www.whitelisteddomain.tld@google.com/%2f..",
  "/?url=//example.com&next=//example.com&redirect=//example.com&redir=//example.com&rurl=//example.com&redirect_uri=//example.com",
  "/http://google.com",
  "/https:///example.com/%2e%2e",
  "/https://example.com/%2f%2e%2e",
  "/https://localdomain.pw/%2e%2e",
  "/https://www.whitelisteddomain.tld@www.google.com/%2f%2e%2e",
  "\\/\\/google.com/",
  "http://00330.3856078",
  "http://3H6k7lIAiqjfNeN@0xd8.0x3a.0xd6.0xce",
  "http://;@google.com",
  "http://XY>.7d8T\\205pZM@[::216.58.214.206]",
  "http://example.com@00330.0x3a.54990",
  "http://google.com%2f%2f.example.com/",
  "http://localdomain.pw:80#@www.whitelisteddomain.tld/",
  "http://www.whitelisteddomain.tld@0xd8.0x3a.0xd6.0xce",
  "http:0xd8.0x3a.0xd6.0xce",
  "http:3H6k7lIAiqjfNeN@3627734734",
  "http:XY>.7d8T\\205pZM@0xd83ad6ce",
  "http:example.com@0xd8.0x3a.0xd6.0xce",
  "http:www.whitelisteddomain.tld@0xd8.0x3a.0xd6.0xce",
  "https://%5cexample.com@google.com",
  "https:///www.google.com/%2f%2e%2e",
  "https://example.com@google.com/%2f%2e%2e",
  "https://localdomain.pw/%2f%2e%2e",
  "https://www.whitelisteddomain.tld@localdomain.pw/%2f%2e%2e",
  "java%0dscript:alert(1)",
  "\u3035localdomain.pw",
]

const ACCEPTED: readonly (readonly [string, string])[] = [
  ['the root', '/'],
  ['oauth2-proxy single slash', '/redirect'],
  ['a nested path', '/ui/users/alice'],
  ['a path with a query', '/search?q=vector&limit=10'],
  ['a path with a fragment', '/docs#section-2'],
  ['percent-encoded characters that decode harmlessly', '/files/a%20b%C3%A9.txt'],
  ['a colon after the first slash', '/v1/objects:batch'],
  ['a query holding an encoded URL that never decodes to //', '/page?u=https%3A%2Fx'],
  ['a directory-style path (a UI under /dashboard/)', '/dashboard/'],
  ['a nested directory with a query', '/v1/objects/?limit=5'],
]

describe('safeReturnPath refuses every open-redirect shape (→ /)', () => {
  for (const [name, rd] of REFUSED) {
    it(name, () => assert.equal(safeReturnPath(rd), DEFAULT_RETURN_PATH, JSON.stringify(rd)))
  }
  it('oauth2-proxy testdata/openredirects.txt (sample), raw and query-unescaped', () => {
    const accepted: string[] = []
    for (const line of OPENREDIRECTS_TXT) {
      let unescaped = line
      try {
        unescaped = decodeURIComponent(line.replace(/\+/g, ' '))
      } catch {
        // oauth2-proxy skips lines it cannot unescape; the raw form is still checked
      }
      for (const rd of [line, unescaped]) if (safeReturnPath(rd) !== DEFAULT_RETURN_PATH) accepted.push(rd)
    }
    assert.deepEqual(accepted, [])
    assert.ok(OPENREDIRECTS_TXT.length >= 40)
  })
  it('over-long values', () => {
    const long = `/${'a'.repeat(MAX_RETURN_PATH)}`
    assert.equal(safeReturnPath(long), DEFAULT_RETURN_PATH)
    assert.equal(safeReturnPath(long.slice(0, MAX_RETURN_PATH)), long.slice(0, MAX_RETURN_PATH))
  })
  it('values that are not strings', () => {
    for (const v of [undefined, null, 42, ['/a'], { toString: () => '/a' }]) assert.equal(safeReturnPath(v), DEFAULT_RETURN_PATH)
  })
  it('decodings that go on and on', () => {
    assert.equal(safeReturnPath('/a%2525252525252541'), DEFAULT_RETURN_PATH)
  })
})

describe('safeReturnPath keeps same-origin paths unchanged', () => {
  for (const [name, rd] of ACCEPTED) {
    it(name, () => assert.equal(safeReturnPath(rd), rd))
  }
})
