/**
 * Authorization (SPEC §6, W22, W23): what each profile counts as public, authentication-only,
 * read or write, and the admin list's decision.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Principal } from '../../src/http/principal.ts'
import { ANONYMOUS } from '../../src/http/principal.ts'
import { AdminList, type AdminListConfig } from '../../src/authz/adminlist.ts'
import { profileFor, type Access } from '../../src/authz/profiles.ts'

function expectAccess(profile: 'generic' | 'weaviate' | 'qdrant', cases: [string, string, Access][]): void {
  const p = profileFor(profile)
  for (const [method, path, want] of cases) {
    it(`${profile}: ${method} ${path} → ${want}`, () => {
      const c = p.classify(method, path)
      assert.equal(c.access, want)
      assert.equal(typeof c.rule, 'string')
      assert.ok(c.rule.length > 0)
    })
  }
}

describe('profileFor', () => {
  it('returns a profile with the requested name', () => {
    for (const n of ['generic', 'weaviate', 'qdrant'] as const) assert.equal(profileFor(n).name, n)
  })
})

describe('generic profile: GET, HEAD, OPTIONS are reads; everything else writes', () => {
  expectAccess('generic', [
    ['GET', '/anything', 'read'],
    ['HEAD', '/anything', 'read'],
    ['OPTIONS', '/anything', 'read'],
    ['GET', '/', 'read'],
    ['POST', '/anything', 'write'],
    ['PUT', '/anything', 'write'],
    ['PATCH', '/anything', 'write'],
    ['DELETE', '/anything', 'write'],
    ['POST', '/v1/graphql', 'write'],
    ['get', '/anything', 'write'],
    ['TRACE', '/anything', 'write'],
  ])
})

describe('weaviate profile: GET/HEAD reads (W23)', () => {
  expectAccess('weaviate', [
    ['GET', '/v1/schema', 'read'],
    ['GET', '/v1/objects', 'read'],
    ['HEAD', '/v1/objects/C/00000000-0000-0000-0000-000000000000', 'read'],
    ['GET', '/v1/nodes', 'read'],
    ['GET', '/v1/backups/fs', 'read'],
  ])
})

describe('weaviate profile: the POST reads of W23 and SPEC §6', () => {
  expectAccess('weaviate', [
    ['POST', '/v1/graphql', 'read'],
    ['POST', '/v1/graphql/batch', 'read'],
    ['POST', '/v1/objects/validate', 'read'],
    ['POST', '/v1/schema/C/properties/p/tokenize', 'read'],
    ['POST', '/v1/schema/Article/properties/title/tokenize', 'read'],
    ['POST', '/v1/tokenize', 'read'],
    ['POST', '/v1/aggregate/C', 'read'],
    ['POST', '/v1/search/C/bm25', 'read'],
    ['POST', '/v1/search/C/hybrid', 'read'],
    ['POST', '/v1/search/C/near-object', 'read'],
    ['POST', '/v1/search/C/near-text', 'read'],
    ['POST', '/v1/authz/roles/r/has-permission', 'read'],
    ['POST', '/v1/authz/roles/admin/has-permission', 'read'],
  ])
})

describe('weaviate profile: public paths and /v1/meta', () => {
  expectAccess('weaviate', [
    ['GET', '/v1/.well-known/live', 'public'],
    ['GET', '/v1/.well-known/ready', 'public'],
    ['HEAD', '/v1/.well-known/live', 'public'],
    ['GET', '/v1', 'public'],
    ['GET', '/', 'public'],
    ['GET', '/v1/meta', 'authenticated'],
    ['HEAD', '/v1/meta', 'authenticated'],
    // near misses are not public
    ['GET', '/v1/', 'read'],
    ['GET', '/v1/.well-known/live/x', 'read'],
    ['GET', '/v1/.well-known', 'read'],
    ['GET', '/v1/meta/', 'read'],
    ['POST', '/v1/.well-known/live', 'write'],
    ['POST', '/', 'write'],
    ['POST', '/v1/meta', 'write'],
    ['DELETE', '/v1', 'write'],
  ])
})

describe('weaviate profile: writes (W23: every other POST/PUT/PATCH/DELETE)', () => {
  expectAccess('weaviate', [
    ['POST', '/v1/objects', 'write'],
    ['POST', '/v1/batch/objects', 'write'],
    ['DELETE', '/v1/batch/objects', 'write'],
    ['POST', '/v1/batch/references', 'write'],
    ['PUT', '/v1/objects/C/id', 'write'],
    ['PATCH', '/v1/objects/C/id', 'write'],
    ['DELETE', '/v1/objects/C/id', 'write'],
    ['POST', '/v1/schema', 'write'],
    ['DELETE', '/v1/schema/C', 'write'],
    ['POST', '/v1/schema/C/properties', 'write'],
    ['POST', '/v1/schema/C/tenants', 'write'],
    ['POST', '/v1/backups/fs', 'write'],
    ['POST', '/v1/backups/fs/b1/restore', 'write'],
    ['POST', '/v1/classifications', 'write'],
    ['POST', '/v1/authz/roles', 'write'],
    ['POST', '/v1/authz/roles/r/add-permissions', 'write'],
    ['POST', '/v1/users/db/u', 'write'],
    ['POST', '/v1/mcp', 'write'],
    ['PUT', '/v1/graphql', 'write'],
    ['DELETE', '/v1/graphql', 'write'],
    ['PATCH', '/v1/objects/validate', 'write'],
    // near misses of the POST reads
    ['POST', '/v1/graphql/', 'write'],
    ['POST', '/v1/graphql/batch/', 'write'],
    ['POST', '/v1/graphql/x', 'write'],
    ['POST', '/v1/graphql/batch/x', 'write'],
    ['POST', '/v1/objects/validate/x', 'write'],
    ['POST', '/v1/objects/C', 'write'],
    ['POST', '/v1/schema/C/properties/p', 'write'],
    ['POST', '/v1/schema/C/properties/p/tokenize/x', 'write'],
    ['POST', '/v1/schema//properties/p/tokenize', 'write'],
    ['POST', '/v1/tokenize/x', 'write'],
    ['POST', '/v1/aggregate', 'write'],
    ['POST', '/v1/aggregate/', 'write'],
    ['POST', '/v1/aggregate/C/x', 'write'],
    ['POST', '/v1/search/C', 'write'],
    ['POST', '/v1/search', 'write'],
    ['POST', '/v1/search/C/', 'write'],
    ['POST', '/v1/authz/roles/r', 'write'],
    ['POST', '/v1/authz/roles//has-permission', 'write'],
    ['POST', '/v1/authz/roles/r/has-permission/x', 'write'],
    ['POST', '/v2/graphql', 'write'],
    ['POST', '/graphql', 'write'],
    ['POST', '/x/v1/graphql', 'write'],
    ['POST', '/V1/graphql', 'write'],
    ['POST', '/v1/GraphQL', 'write'],
    // the method is case-sensitive (RFC 9110 §9.1): lower-case methods are not GET/POST
    ['post', '/v1/graphql', 'write'],
    ['get', '/v1/schema', 'write'],
    ['get', '/v1/.well-known/live', 'write'],
    ['Post', '/v1/graphql', 'write'],
  ])
})

describe('qdrant profile: POST reads under /collections/{c}/points', () => {
  expectAccess('qdrant', [
    ['POST', '/collections/c/points', 'read'],
    ['POST', '/collections/c/points/count', 'read'],
    ['POST', '/collections/c/points/scroll', 'read'],
    ['POST', '/collections/c/points/search', 'read'],
    ['POST', '/collections/c/points/search/batch', 'read'],
    ['POST', '/collections/c/points/search/groups', 'read'],
    ['POST', '/collections/c/points/recommend', 'read'],
    ['POST', '/collections/c/points/recommend/batch', 'read'],
    ['POST', '/collections/c/points/recommend/groups', 'read'],
    ['POST', '/collections/c/points/discover', 'read'],
    ['POST', '/collections/c/points/discover/batch', 'read'],
    ['POST', '/collections/c/points/query', 'read'],
    ['POST', '/collections/c/points/query/batch', 'read'],
    ['POST', '/collections/c/points/query/groups', 'read'],
    ['POST', '/collections/my-collection/points/query/groups', 'read'],
    ['GET', '/collections', 'read'],
    ['GET', '/collections/c', 'read'],
    ['HEAD', '/collections/c/points/1', 'read'],
  ])
})

describe('qdrant profile: public paths', () => {
  expectAccess('qdrant', [
    ['GET', '/', 'public'],
    ['GET', '/healthz', 'public'],
    ['GET', '/readyz', 'public'],
    ['GET', '/livez', 'public'],
    ['GET', '/healthz/', 'read'],
    ['POST', '/healthz', 'write'],
  ])
})

describe('qdrant profile: writes', () => {
  expectAccess('qdrant', [
    ['PUT', '/collections/c/points', 'write'],
    ['POST', '/collections/c/points/delete', 'write'],
    ['POST', '/collections/c/points/payload', 'write'],
    ['POST', '/collections/c/points/payload/delete', 'write'],
    ['PUT', '/collections/c/points/payload', 'write'],
    ['POST', '/collections/c/points/payload/clear', 'write'],
    ['POST', '/collections/c/points/vectors/delete', 'write'],
    ['PUT', '/collections/c/points/vectors', 'write'],
    ['POST', '/collections/c/points/batch', 'write'],
    ['PUT', '/collections/c', 'write'],
    ['PATCH', '/collections/c', 'write'],
    ['DELETE', '/collections/c', 'write'],
    ['POST', '/collections/c/snapshots', 'write'],
    ['PUT', '/collections/c/points/search', 'write'],
    ['DELETE', '/collections/c/points/search', 'write'],
    // near misses
    ['POST', '/collections/c/points/', 'write'],
    ['POST', '/collections/c/points/search/', 'write'],
    ['POST', '/collections/c/points/search/batch/x', 'write'],
    ['POST', '/collections/c/points/discover/groups', 'write'],
    ['POST', '/collections/c/points/count/batch', 'write'],
    ['POST', '/collections//points/search', 'write'],
    ['POST', '/collections/points/search', 'write'],
    ['POST', '/collections/c/d/points/search', 'write'],
    ['POST', '/x/collections/c/points/search', 'write'],
    ['post', '/collections/c/points/search', 'write'],
    ['get', '/collections', 'write'],
  ])
})

describe('AdminList.decide (W22)', () => {
  const cfg: AdminListConfig = {
    enabled: true,
    users: ['jane@doe.com', 'anonymous-admin'],
    readonlyUsers: ['ian-smith'],
    groups: ['admins'],
    readonlyGroups: ['viewers'],
  }
  const al = new AdminList(cfg)
  const p = (user: string, groups: string[] = [], method: Principal['method'] = 'apikey'): Principal => ({ user, groups, method })

  it('disabled: every principal may do everything', () => {
    const off = new AdminList({ ...cfg, enabled: false })
    for (const a of ['read', 'write'] as const) {
      assert.equal(off.decide(p('nobody'), a).allowed, true, a)
      assert.equal(off.decide(ANONYMOUS, a).allowed, true, `anonymous ${a}`)
    }
  })
  it('disabled with empty lists: everything allowed', () => {
    const off = new AdminList({ enabled: false, users: [], readonlyUsers: [], groups: [], readonlyGroups: [] })
    assert.equal(off.decide(p('x'), 'write').allowed, true)
  })
  it('an admin user may read and write', () => {
    assert.equal(al.decide(p('jane@doe.com'), 'write').allowed, true)
    assert.equal(al.decide(p('jane@doe.com'), 'read').allowed, true)
  })
  it('a member of an admin group may read and write', () => {
    assert.equal(al.decide(p('someone', ['x', 'admins']), 'write').allowed, true)
    assert.equal(al.decide(p('someone', ['admins']), 'read').allowed, true)
  })
  it('a read-only user may read but not write', () => {
    assert.equal(al.decide(p('ian-smith'), 'read').allowed, true)
    const d = al.decide(p('ian-smith'), 'write')
    assert.equal(d.allowed, false)
    assert.ok(d.rule.length > 0)
  })
  it('a member of a read-only group may read but not write', () => {
    assert.equal(al.decide(p('someone', ['viewers']), 'read').allowed, true)
    assert.equal(al.decide(p('someone', ['viewers']), 'write').allowed, false)
  })
  it('read-only group plus admin group: admin wins', () => {
    assert.equal(al.decide(p('someone', ['viewers', 'admins']), 'write').allowed, true)
  })
  it('read-only user in an admin group may write', () => {
    assert.equal(al.decide(p('ian-smith', ['admins']), 'write').allowed, true)
  })
  it('an unknown user (on no list) is denied reads and writes', () => {
    assert.equal(al.decide(p('mallory'), 'read').allowed, false)
    assert.equal(al.decide(p('mallory'), 'write').allowed, false)
    assert.equal(al.decide(p('mallory', ['other']), 'read').allowed, false)
  })
  it('public and authentication-only requests need no role', () => {
    assert.equal(al.decide(p('mallory'), 'public').allowed, true)
    assert.equal(al.decide(p('mallory'), 'authenticated').allowed, true)
    assert.equal(al.decide(ANONYMOUS, 'public').allowed, true)
  })
  it('matching is case-sensitive and exact', () => {
    assert.equal(al.decide(p('Jane@doe.com'), 'write').allowed, false)
    assert.equal(al.decide(p('IAN-SMITH'), 'read').allowed, false)
    assert.equal(al.decide(p('x', ['Admins']), 'write').allowed, false)
    assert.equal(al.decide(p('x', ['VIEWERS']), 'read').allowed, false)
    assert.equal(al.decide(p('jane@doe.com '), 'write').allowed, false)
    assert.equal(al.decide(p('jane'), 'write').allowed, false)
  })
  it('a user name equal to a group name is not a group (lists are separate)', () => {
    assert.equal(al.decide(p('admins'), 'write').allowed, false)
    assert.equal(al.decide(p('x', ['jane@doe.com']), 'write').allowed, false)
  })

  describe('anonymous is judged as the user "anonymous"', () => {
    it('not listed: denied', () => {
      assert.equal(al.decide(ANONYMOUS, 'read').allowed, false)
      assert.equal(al.decide(ANONYMOUS, 'write').allowed, false)
    })
    it('listed as read-only: may read only', () => {
      const a = new AdminList({ ...cfg, readonlyUsers: ['anonymous'] })
      assert.equal(a.decide(ANONYMOUS, 'read').allowed, true)
      assert.equal(a.decide(ANONYMOUS, 'write').allowed, false)
    })
    it('listed as admin: may write', () => {
      const a = new AdminList({ ...cfg, users: ['anonymous'] })
      assert.equal(a.decide(ANONYMOUS, 'write').allowed, true)
    })
    it('the ANONYMOUS principal has user "anonymous", no groups, method anonymous', () => {
      assert.deepEqual({ ...ANONYMOUS, groups: [...ANONYMOUS.groups] }, { user: 'anonymous', groups: [], method: 'anonymous' })
    })
  })

  it('local users carry their role as a group', () => {
    const a = new AdminList({ enabled: true, users: [], readonlyUsers: [], groups: ['admin'], readonlyGroups: ['readonly'] })
    assert.equal(a.decide(p('alice', ['admin'], 'local'), 'write').allowed, true)
    assert.equal(a.decide(p('bob', ['readonly'], 'local'), 'read').allowed, true)
    assert.equal(a.decide(p('bob', ['readonly'], 'local'), 'write').allowed, false)
    assert.equal(a.decide(p('carol', ['regular'], 'local'), 'read').allowed, false)
  })

  it('the decision is made from the profile classification end to end', () => {
    const w = profileFor('weaviate')
    const ian = p('ian-smith')
    assert.equal(al.decide(ian, w.classify('POST', '/v1/graphql').access).allowed, true)
    assert.equal(al.decide(ian, w.classify('POST', '/v1/objects').access).allowed, false)
    assert.equal(al.decide(ian, w.classify('POST', '/v1/graphql/').access).allowed, false)
    assert.equal(al.decide(p('mallory'), w.classify('GET', '/v1/meta').access).allowed, true)
    assert.equal(al.decide(p('mallory'), w.classify('GET', '/v1/schema').access).allowed, false)
  })
})
