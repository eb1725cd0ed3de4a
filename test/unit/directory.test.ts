/**
 * Directory users' pure parts (docs/directory.md): RFC 4515 filter and RFC 4514 DN escaping,
 * the filters built for OpenLDAP and Active Directory, role mapping, and the validation of
 * `authentication.ldap` (every problem named, exit 2) and of the runtime settings.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { AndFilter, EqualityFilter, FilterParser, OrFilter } from 'ldapts'
import { domainDn, ldapFromConfig, ldapProblems, type LdapSettings } from '../../src/config/ldap.ts'
import { loadConfig } from '../../src/config/load.ts'
import { IN_CHAIN, roleOf, schemaOf, userFilter } from '../../src/directory/directory.ts'
import { escapeDnValue, escapeFilterValue, firstRdnValue } from '../../src/directory/escape.ts'

const DIR = mkdtempSync(path.join(tmpdir(), 'gh-directory-unit-'))
after(() => rmSync(DIR, { recursive: true, force: true }))

const SETTINGS: LdapSettings = {
  enabled: true,
  urls: ['ldaps://ldap.example.org'],
  startTls: true,
  bindDn: 'cn=reader,dc=example,dc=org',
  bindPassword: 'Reader-secret-1',
  userBaseDn: 'ou=people,dc=example,dc=org',
  userObjectClass: 'inetOrgPerson',
  userIdAttribute: 'uid',
  userFilter: '',
  groupBaseDn: 'ou=groups,dc=example,dc=org',
  groupObjectClass: 'groupOfNames',
  membershipAttribute: 'member',
  groupIdAttribute: 'cn',
  roleGroups: { admin: 'gh-admins', regular: 'gh-users', readonly: 'gh-readonly' },
  connectTimeoutMs: 5000,
  operationTimeoutMs: 5000,
  activeDirectoryDomain: '',
  localShadowsDirectory: false,
}

/** The equality assertions of a parsed filter, in order. */
function equalities(f: unknown): { attribute: string; value: string }[] {
  if (f instanceof EqualityFilter) return [{ attribute: f.attribute, value: Buffer.isBuffer(f.value) ? f.value.toString('utf8') : f.value }]
  if (f instanceof AndFilter || f instanceof OrFilter) return f.filters.flatMap(equalities)
  return []
}

describe('RFC 4515 filter escaping', () => {
  it('escapes the five special characters and every non-printable byte (RFC 4515 §4 examples)', () => {
    assert.equal(escapeFilterValue('Parens R Us (for all your parenthetical needs)'), 'Parens R Us \\28for all your parenthetical needs\\29')
    assert.equal(escapeFilterValue('*'), '\\2a')
    assert.equal(escapeFilterValue('C:\\MyFile'), 'C:\\5cMyFile')
    assert.equal(escapeFilterValue('\u0000\u0000\u0000\u0004'), '\\00\\00\\00\\04')
    assert.equal(escapeFilterValue('Lučić'), 'Lu\\c4\\8di\\c4\\87')
    assert.equal(escapeFilterValue('alice'), 'alice')
  })

  it('an injection string stays one literal equality when the server parses the filter', () => {
    const schema = schemaOf(SETTINGS)
    for (const name of ['*', ')(uid=*', '\\00', '\u0000', 'admin)(|(uid=*', '*)(objectClass=*', 'a\\2a', 'x)(|(cn=*)(uid=*))']) {
      const f = FilterParser.parseString(userFilter(schema, name))
      assert.deepEqual(equalities(f), [{ attribute: 'objectClass', value: 'inetOrgPerson' }, { attribute: 'uid', value: name }], JSON.stringify(name))
      assert.ok(f instanceof AndFilter && f.filters.length === 2, `no extra clause for ${JSON.stringify(name)}`)
    }
  })
})

describe('RFC 4514 DN escaping', () => {
  it('escapes the special characters, a leading # or space, a trailing space and control bytes', () => {
    assert.equal(escapeDnValue('Sue, Grabbit and Runn'), 'Sue\\, Grabbit and Runn')
    assert.equal(escapeDnValue('a+b=c;d<e>f"g\\h'), 'a\\+b\\=c\\;d\\<e\\>f\\"g\\\\h')
    assert.equal(escapeDnValue('#admins'), '\\#admins')
    assert.equal(escapeDnValue(' x '), '\\ x\\ ')
    assert.equal(escapeDnValue('nul\u0000'), 'nul\\00')
    assert.equal(escapeDnValue('Lučić'), 'Lučić')
  })

  it('reads back the first RDN value, escapes undone', () => {
    assert.equal(firstRdnValue('cn=Admins\\, EU,ou=groups,dc=x', 'cn'), 'Admins, EU')
    assert.equal(firstRdnValue('CN=gh-admins,OU=Groups,DC=corp,DC=example,DC=com', 'cn'), 'gh-admins')
    assert.equal(firstRdnValue('cn=Lu\\c4\\8di\\c4\\87,dc=x', 'cn'), 'Lučić')
    assert.equal(firstRdnValue('ou=gh-admins,dc=x', 'cn'), undefined)
    assert.equal(firstRdnValue(`cn=${escapeDnValue('#a, b+c')},dc=x`, 'cn'), '#a, b+c')
  })
})

describe('schemas, filters and roles', () => {
  it('OpenLDAP: objectClass and the id attribute, plus the extra userFilter', () => {
    assert.equal(userFilter(schemaOf({ ...SETTINGS, userFilter: '(!(pwdAccountLockedTime=*))' }), 'alice'), '(&(objectClass=inetOrgPerson)(uid=alice)(!(pwdAccountLockedTime=*)))')
  })

  it('Active Directory: sAMAccountName or userPrincipalName, disabled accounts excluded, nested groups, base DNs from the domain', () => {
    const s = schemaOf({ ...SETTINGS, activeDirectoryDomain: 'corp.example.com', userBaseDn: '', groupBaseDn: '' })
    assert.equal(s.userBaseDn, 'DC=corp,DC=example,DC=com')
    assert.equal(s.groupBaseDn, 'DC=corp,DC=example,DC=com')
    assert.equal(s.membership, 'adNested')
    assert.equal(IN_CHAIN, '1.2.840.113556.1.4.1941')
    assert.equal(userFilter(s, 'alice@corp.example.com'), '(&(objectClass=user)(|(sAMAccountName=alice@corp.example.com)(userPrincipalName=alice@corp.example.com))(!(userAccountControl:1.2.840.113556.1.4.803:=2)))')
    // The server parses it into exactly these assertions (the name stays literal).
    assert.deepEqual(equalities(FilterParser.parseString(userFilter(s, 'a)(x=*'))).map((e) => e.value), ['user', 'a)(x=*', 'a)(x=*'])
    assert.equal(domainDn('a.b'), 'DC=a,DC=b')
  })

  it('the highest role wins; none is undefined; group names compare without case', () => {
    const g = SETTINGS.roleGroups
    assert.equal(roleOf(['gh-users', 'gh-admins'], g), 'admin')
    assert.equal(roleOf(['GH-READONLY', 'gh-users'], g), 'regular')
    assert.equal(roleOf(['gh-readonly'], g), 'readonly')
    assert.equal(roleOf(['unrelated'], g), undefined)
    assert.equal(roleOf(['gh-users'], { admin: '', regular: '', readonly: 'gh-users' }), 'readonly')
    assert.equal(roleOf([''], { admin: '', regular: '', readonly: '' }), undefined, 'an unset role group matches nothing')
  })
})

describe('authentication.ldap validation', () => {
  const yaml = (text: string): string => {
    const f = path.join(DIR, `c${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(f, text)
    return f
  }

  it('names every problem of an enabled section at once', () => {
    const r = loadConfig({
      configPath: yaml('authentication:\n  ldap:\n    enabled: true\n    urls: [http://x, ldap://ok.example.org]\n    userObjectClass: "x)(y"\n    userFilter: "(a=b"\n    bindPasswordFile: /nonexistent/pw\n'),
      env: {},
      cwd: DIR,
    })
    const got = r.problems.map((p) => p.path).sort()
    for (const p of ['authentication.ldap.enabled', 'authentication.ldap.urls', 'authentication.ldap.bindDn', 'authentication.ldap.bindPasswordFile', 'authentication.ldap.userBaseDn', 'authentication.ldap.groupBaseDn', 'authentication.ldap.userObjectClass', 'authentication.ldap.userFilter', 'authentication.ldap.roleGroups']) {
      assert.ok(got.includes(p), `${p} in ${got.join(', ')}`)
    }
    assert.ok(!r.problems.some((p) => (p.value ?? '').includes('Reader')), 'no secret in a problem')
  })

  it('a complete section loads; the reader password comes from the environment; ldap:// without StartTLS only warns', () => {
    const f = yaml('authentication:\n  local:\n    enabled: true\n  ldap:\n    enabled: true\n    urls: [ldap://127.0.0.1:389]\n    startTls: false\n    bindDn: cn=r,dc=x\n    userBaseDn: ou=p,dc=x\n    groupBaseDn: ou=g,dc=x\n    roleGroups:\n      admin: admins\n')
    const r = loadConfig({ configPath: f, env: { GATEHOUSE_LDAP_BIND_PASSWORD: 'Reader-secret-1' }, cwd: DIR })
    assert.deepEqual(r.problems.map((p) => `${p.path}: ${p.message}`), [])
    assert.ok(r.warnings.some((w) => /clear text/.test(w)))
    const s = ldapFromConfig((r.config as NonNullable<typeof r.config>).authentication.ldap)
    assert.equal(s.bindPassword, 'Reader-secret-1')
    assert.equal(s.roleGroups.admin, 'admins')
  })

  it('the Active Directory preset needs the domain, the reader and a group, not the base DNs', () => {
    assert.deepEqual(ldapProblems({ ...SETTINGS, activeDirectoryDomain: 'corp.example.com', userBaseDn: '', groupBaseDn: '' }), [])
    assert.deepEqual(ldapProblems({ ...SETTINGS, activeDirectoryDomain: 'not a domain' }).map((p) => p.key), ['activeDirectoryDomain'])
  })

  it('refuses one group granting two roles, and a disabled section is not checked', () => {
    assert.deepEqual(ldapProblems({ ...SETTINGS, roleGroups: { admin: 'x', regular: 'X', readonly: '' } }).map((p) => p.key), ['roleGroups'])
    assert.deepEqual(ldapProblems({ ...SETTINGS, enabled: false, urls: [] }), [])
  })
})
