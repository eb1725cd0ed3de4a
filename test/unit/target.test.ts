/**
 * Request-target parsing and path normalization (SPEC §6: "Paths are matched after
 * normalization … and the request is rejected with 400 when the path the upstream would see
 * differs in meaning from the path that was judged").
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { profileFor } from '../../src/authz/profiles.ts'
import { normalizePath, parseTarget, takeQueryToken } from '../../src/http/target.ts'

/** Assert that `f` throws a GatehouseError with code ERR_BAD_PATH (status 400). */
function assertBadPath(f: () => unknown, label: string): void {
  assert.throws(f, (e: unknown) => {
    const err = e as { code?: unknown; status?: unknown }
    assert.equal(err.code, 'ERR_BAD_PATH', `${label}: code`)
    assert.equal(err.status, 400, `${label}: status`)
    return true
  }, `${label} must be refused with ERR_BAD_PATH`)
}

describe('normalizePath: dot segments (RFC 3986 §5.2.4)', () => {
  const cases: [string, string][] = [
    ['/a/./b', '/a/b'],
    ['/a/../b', '/b'],
    ['/a/b/../c', '/a/c'],
    ['/../x', '/x'],
    ['/../../x', '/x'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E%2E/b', '/b'],
    ['/a/%2e/b', '/a/b'],
    ['/a/%2E/b', '/a/b'],
    ['/a/.%2e/b', '/b'],
    ['/a/%2e./b', '/b'],
    ['/a/..', '/'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/%2e', '/a/'],
    ['/.', '/'],
    ['/..', '/'],
  ]
  for (const [input, want] of cases) {
    it(`${input} → ${want}`, () => assert.equal(normalizePath(input), want))
  }

  it('keeps segments that merely start with a dot', () => {
    assert.equal(normalizePath('/a/.b/..c/...'), '/a/.b/..c/...')
    assert.equal(normalizePath('/.well-known/x'), '/.well-known/x')
  })
})

describe('normalizePath: slashes', () => {
  it('merges duplicate slashes', () => {
    assert.equal(normalizePath('//a///b'), '/a/b')
    assert.equal(normalizePath('/v1//objects'), '/v1/objects')
    assert.equal(normalizePath('//'), '/')
  })
  it('keeps a trailing slash', () => {
    assert.equal(normalizePath('/a/b/'), '/a/b/')
    assert.equal(normalizePath('/v1/graphql/'), '/v1/graphql/')
    assert.equal(normalizePath('/a//b//'), '/a/b/')
  })
  it('the empty path is /', () => {
    assert.equal(normalizePath(''), '/')
    assert.equal(normalizePath('/'), '/')
  })
})

describe('normalizePath: percent-encoding', () => {
  it('decodes unreserved characters', () => {
    assert.equal(normalizePath('/%41'), '/A')
    assert.equal(normalizePath('/%7E'), '/~')
    assert.equal(normalizePath('/%7e'), '/~')
    assert.equal(normalizePath('/%61%62%63%2D%5F%30'), '/abc-_0')
    assert.equal(normalizePath('/v1/%6Fbjects'), '/v1/objects')
  })
  it('keeps reserved and other characters encoded, hex upper-cased', () => {
    assert.equal(normalizePath('/a%3ab'), '/a%3Ab')
    assert.equal(normalizePath('/a%3Ab'), '/a%3Ab')
    assert.equal(normalizePath('/a%20b'), '/a%20b')
    assert.equal(normalizePath('/a%3fb'), '/a%3Fb')
    assert.equal(normalizePath('/caf%c3%a9'), '/caf%C3%A9')
    assert.equal(normalizePath('/100%25'), '/100%25')
  })
  it('decoding an unreserved letter makes a path match the rule it spells', () => {
    // /v1/%67raphql is /v1/graphql: the profile must see the decoded path.
    assert.equal(profileFor('weaviate').classify('POST', normalizePath('/v1/%67raphql')).access, 'read')
    assert.equal(profileFor('weaviate').classify('POST', normalizePath('/v1/%6Fbjects')).access, 'write')
  })
})

describe('normalizePath: ambiguous paths are refused with 400 ERR_BAD_PATH', () => {
  const bad: [string, string][] = [
    ['/a%2fb', 'encoded slash (lower case)'],
    ['/a%2Fb', 'encoded slash'],
    ['/v1/graphql%2F..%2Fobjects', 'encoded slash around dots'],
    ['/a%5cb', 'encoded backslash'],
    ['/a%5Cb', 'encoded backslash (upper case)'],
    ['/a\\b', 'raw backslash'],
    ['/a;b', 'matrix parameter'],
    ['/v1/objects;x=1', 'matrix parameter in a segment'],
    ['/a#b', 'fragment'],
    ['/a%00b', 'encoded NUL'],
    ['/a%0ab', 'encoded LF'],
    ['/a%0Db', 'encoded CR'],
    ['/a%7fb', 'encoded DEL'],
    ['/a\u0000b', 'raw NUL'],
    ['/a\tb', 'raw tab'],
    ['/a\nb', 'raw LF'],
    ['/a b', 'raw space'],
    ['/a\u007fb', 'raw DEL'],
    ['/café', 'non-ASCII'],
    ['/a\u2215b', 'non-ASCII division slash'],
    ['/a%zzb', 'malformed escape %zz'],
    ['/a%4', 'truncated escape %4'],
    ['/a%', 'lone %'],
    ['/a%g1', 'malformed escape %g1'],
    ['/a/%252e%252e/b', 'double-encoded dots'],
    ['/a/%252E', 'double-encoded dot (upper case)'],
    ['/a%252fb', 'double-encoded slash'],
    ['/a%252Fb', 'double-encoded slash (upper case)'],
    ['/a%255cb', 'double-encoded backslash'],
  ]
  for (const [input, label] of bad) {
    it(`${JSON.stringify(input)} (${label})`, () => assertBadPath(() => normalizePath(input), label))
  }

  it('a double-encoded slash spelled with encoded digits (%25%32%66) is refused too', () => {
    // %25%32%66 normalizes to %252f (the %32 and %66 are unreserved and get decoded); an upstream
    // that decodes twice would see "/". The raw %252f is refused, so this spelling must be too.
    assertBadPath(() => normalizePath('/v1/graphql%25%32%66..%25%32%66objects'), '%25%32%66')
    assertBadPath(() => normalizePath('/a/%25%32%65%25%32%65/b'), '%25%32%65')
  })
})

describe('parseTarget', () => {
  it('splits origin-form into path and query; the query is untouched', () => {
    assert.deepEqual(parseTarget('/v1/objects?limit=10&after=%2Fx'), { path: '/v1/objects', query: 'limit=10&after=%2Fx' })
    assert.deepEqual(parseTarget('/a/../b?x=/../..;%00'), { path: '/b', query: 'x=/../..;%00' })
    assert.deepEqual(parseTarget('/a'), { path: '/a', query: '' })
    assert.deepEqual(parseTarget('/a?'), { path: '/a', query: '' })
  })
  it('absolute-form keeps only path and query', () => {
    assert.deepEqual(parseTarget('http://h/x?y'), { path: '/x', query: 'y' })
    assert.deepEqual(parseTarget('https://example.com:8443/a/./b?q=1'), { path: '/a/b', query: 'q=1' })
    assert.deepEqual(parseTarget('http://h'), { path: '/', query: '' })
    assert.deepEqual(parseTarget('http://h?y'), { path: '/', query: 'y' })
  })
  it('refuses targets that are not paths', () => {
    assertBadPath(() => parseTarget('*'), 'asterisk-form')
    assertBadPath(() => parseTarget('example.com:443'), 'authority-form')
    assertBadPath(() => parseTarget('v1/objects'), 'relative path')
  })
  it('refuses a fragment in the path or the query', () => {
    assertBadPath(() => parseTarget('/a#frag'), 'fragment in path')
    assertBadPath(() => parseTarget('/a?b=1#frag'), 'fragment in query')
  })
  it('normalizes the path of the target', () => {
    assertBadPath(() => parseTarget('/a%2Fb?x=1'), 'encoded slash')
    assert.equal(parseTarget('//v1//./meta?x').path, '/v1/meta')
  })
})

describe('security: what is judged is what is served', () => {
  const weaviate = profileFor('weaviate')
  it('POST /v1/graphql/../objects is judged (and forwarded) as the write /v1/objects', () => {
    const t = parseTarget('/v1/graphql/../objects')
    assert.equal(t.path, '/v1/objects')
    assert.equal(weaviate.classify('POST', t.path).access, 'write')
  })
  it('dot segments spelled with %2e are resolved before judging', () => {
    for (const p of ['/v1/graphql/%2e%2e/objects', '/v1/graphql/.%2E/objects', '/v1/graphql/%2E./objects', '/v1/graphql/./../objects']) {
      const t = parseTarget(p)
      assert.equal(t.path, '/v1/objects', p)
      assert.equal(weaviate.classify('POST', t.path).access, 'write', p)
    }
  })
  it('absolute-form cannot smuggle a write past a read rule', () => {
    const t = parseTarget('http://weaviate/v1/graphql/../batch/objects')
    assert.equal(t.path, '/v1/batch/objects')
    assert.equal(weaviate.classify('POST', t.path).access, 'write')
  })
  it('qdrant: /collections/c/points/search/../delete is the write …/points/delete', () => {
    const t = parseTarget('/collections/c/points/search/../delete')
    assert.equal(t.path, '/collections/c/points/delete')
    assert.equal(profileFor('qdrant').classify('POST', t.path).access, 'write')
  })
})

describe('takeQueryToken', () => {
  it('no access_token: nothing taken, query unchanged', () => {
    assert.deepEqual(takeQueryToken('a=1&b=2'), { token: undefined, query: 'a=1&b=2', count: 0 })
    assert.deepEqual(takeQueryToken(''), { token: undefined, query: '', count: 0 })
  })
  it('removes the parameter and returns its decoded value', () => {
    assert.deepEqual(takeQueryToken('access_token=abc'), { token: 'abc', query: '', count: 1 })
    assert.deepEqual(takeQueryToken('a=1&access_token=abc&b=2'), { token: 'abc', query: 'a=1&b=2', count: 1 })
    assert.deepEqual(takeQueryToken('access_token=a%2Bb%3D'), { token: 'a+b=', query: '', count: 1 })
    assert.deepEqual(takeQueryToken('access_token=a+b'), { token: 'a b', query: '', count: 1 })
  })
  it('the rest of the query is kept byte for byte', () => {
    assert.equal(takeQueryToken('x=%2f&access_token=t&y=a+b&z').query, 'x=%2f&y=a+b&z')
  })
  it('removes every access_token and counts duplicates', () => {
    const r = takeQueryToken('access_token=one&a=1&access_token=two&access_token=three')
    assert.equal(r.count, 3)
    assert.equal(r.query, 'a=1')
    assert.ok(!r.query.includes('access_token'))
  })
  it('a valueless access_token counts and yields the empty token', () => {
    assert.deepEqual(takeQueryToken('access_token&a=1'), { token: '', query: 'a=1', count: 1 })
    assert.deepEqual(takeQueryToken('access_token=&a=1'), { token: '', query: 'a=1', count: 1 })
  })
  it('similar names are not access_token', () => {
    assert.deepEqual(takeQueryToken('my_access_token=x&access_tokens=y'), { token: undefined, query: 'my_access_token=x&access_tokens=y', count: 0 })
  })
  it('a percent-encoded name (access%5Ftoken) is the same parameter for the upstream and is removed too', () => {
    // Servers decode parameter names (Go url.ParseQuery, Node URLSearchParams): the upstream
    // would read access%5Ftoken as access_token, so it must not be forwarded.
    assert.equal(new URLSearchParams('access%5Ftoken=abc').get('access_token'), 'abc')
    assert.deepEqual(takeQueryToken('access%5Ftoken=abc&x=1'), { token: 'abc', query: 'x=1', count: 1 })
    assert.equal(takeQueryToken('access_token=a&access%5ftoken=b').count, 2)
  })
})

describe('takeQueryToken: `;` separators and the `[]` array form', () => {
  it('a credential after or before a `;` is dropped with its segment; the other segments are kept byte for byte, in order', () => {
    assert.deepEqual(takeQueryToken('a=1;access_token=SECRET'), { token: undefined, query: 'a=1', count: 0 })
    assert.deepEqual(takeQueryToken('access_token=SECRET;a=1'), { token: undefined, query: 'a=1', count: 0 })
    assert.deepEqual(takeQueryToken('x=%2f;api_key=S;y=a+b&z;APIKEY=T&w'), { token: undefined, query: 'x=%2f;y=a+b&z&w', count: 0 })
    assert.deepEqual(takeQueryToken('a=1&api-key=S;access%5Ftoken=T&b=2'), { token: undefined, query: 'a=1&b=2', count: 0 })
  })
  it('a `;` without a credential name leaves the query untouched', () => {
    assert.deepEqual(takeQueryToken('a=1;b=token&c=;key'), { token: undefined, query: 'a=1;b=token&c=;key', count: 0 })
  })
  it('a trailing `[]`, raw or percent-encoded, does not hide a credential name', () => {
    assert.deepEqual(takeQueryToken('access_token[]=S&a=1'), { token: undefined, query: 'a=1', count: 0 })
    assert.deepEqual(takeQueryToken('a=1&access_token%5B%5D=S&api_key%5b%5d=T&API-KEY[]=U'), { token: undefined, query: 'a=1', count: 0 })
    assert.deepEqual(takeQueryToken('a=1;access_token[]=S'), { token: undefined, query: 'a=1', count: 0 })
    // only the array suffix is ignored: other names stay
    assert.deepEqual(takeQueryToken('access_token[x]=S&access_token[]x=T'), { token: undefined, query: 'access_token[x]=S&access_token[]x=T', count: 0 })
  })
  it('only an `&`-separated `access_token` is accepted as the credential, as before', () => {
    assert.deepEqual(takeQueryToken('access_token=GOOD&a=1;access_token=OTHER&access_token[]=X'), { token: 'GOOD', query: 'a=1', count: 1 })
  })
})
