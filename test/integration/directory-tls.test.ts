/**
 * The directory client (src/directory/directory.ts) against a real slapd (test/helpers/slapd.ts):
 * StartTLS and ldaps verified against the test CA, an untrusted server certificate refused, the
 * `security ca-cert` CA trusted, failover to the next URL, bounded timeouts on a server that
 * never answers, a refused reader, an unauthenticated bind that never signs in.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Client } from 'ldapts'
import type { LdapSettings } from '../../src/config/ldap.ts'
import { Directory } from '../../src/directory/directory.ts'
import { DirectoryService } from '../../src/directory/service.ts'
import { GatehouseError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { freePort } from '../helpers/redis.ts'
import { PEOPLE, startSlapd, type RunningSlapd } from '../helpers/slapd.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

async function unavailable(p: Promise<unknown>): Promise<GatehouseError> {
  try {
    await p
  } catch (e) {
    assert.ok(e instanceof GatehouseError, String(e))
    assert.equal(e.code, 'ERR_DIRECTORY_UNAVAILABLE')
    return e
  }
  assert.fail('expected ERR_DIRECTORY_UNAVAILABLE')
}

describe('the directory client against a real slapd: TLS, failover, timeouts', { timeout: 120_000 }, () => {
  let ldap: RunningSlapd
  let ca: string
  let otherCa: string
  let settings: LdapSettings
  let silent: net.Server
  let silentPort: number
  const sockets = new Set<net.Socket>()

  before(async () => {
    ldap = await startSlapd()
    ca = ldap.caPem
    otherCa = readFileSync(ldap.otherCaFile, 'utf8')
    settings = {
      enabled: true, urls: [ldap.ldapUrl], startTls: true, bindDn: ldap.readerDn, bindPassword: ldap.readerPassword,
      userBaseDn: `ou=people,${ldap.baseDn}`, userObjectClass: 'inetOrgPerson', userIdAttribute: 'uid', userFilter: '',
      groupBaseDn: `ou=groups,${ldap.baseDn}`, groupObjectClass: 'groupOfNames', membershipAttribute: 'member', groupIdAttribute: 'cn',
      roleGroups: { admin: 'gh-admins', regular: 'gh-users', readonly: 'gh-readonly' },
      connectTimeoutMs: 1000, operationTimeoutMs: 1000, activeDirectoryDomain: '', localShadowsDirectory: false,
    }
    // A server that accepts connections and never says a word (a hung directory).
    silent = net.createServer((s) => {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => undefined)
    })
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
    silentPort = (silent.address() as net.AddressInfo).port
  })
  after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((r) => silent.close(() => r()))
    await ldap.close()
  })

  it('StartTLS on ldap:// and ldaps:// both sign in with the test CA', async () => {
    for (const url of [ldap.ldapUrl, ldap.ldapsUrl]) {
      const d = new Directory({ ...settings, urls: [url] }, { ca: [ca] })
      const u = await d.authenticate('alice', PEOPLE.alice)
      assert.equal(u?.role, 'admin', url)
      assert.equal(await d.authenticate('alice', 'Wrong-pass-1'), undefined, url)
    }
  })

  it('an untrusted server certificate is refused, over StartTLS and ldaps alike (no fallback to clear text)', async () => {
    for (const url of [ldap.ldapUrl, ldap.ldapsUrl]) {
      const e = await unavailable(new Directory({ ...settings, urls: [url] }, { ca: [otherCa] }).authenticate('alice', PEOPLE.alice))
      assert.match(e.detail ?? '', /certificate|self[- ]signed|issuer/i, url)
    }
  })

  it('the CA set with security ca-cert is trusted (DirectoryService extraCa), and a change of it rebuilds the client', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-dir-tls-'))
    try {
      const store = new FileStore(dir)
      let extra: string | undefined = undefined // set below: the operator adds the CA
      const svc = new DirectoryService({ config: { ...settings, urls: [ldap.ldapsUrl] }, caFile: undefined, extraCa: () => extra, store, logger: createLogger('silent') })
      await unavailable((await svc.current())?.authenticate('bob', PEOPLE.bob) as Promise<unknown>)
      extra = ca
      assert.equal((await (await svc.current())?.authenticate('bob', PEOPLE.bob))?.role, 'regular')
      assert.deepEqual({ ...(await svc.health()), checkedAt: undefined }, { enabled: true, reachable: true, checkedAt: undefined })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a dead first URL fails over to the next; a server that never answers is cut at the timeout', async () => {
    const dead = `ldap://127.0.0.1:${await freePort()}`
    const d = new Directory({ ...settings, urls: [dead, ldap.ldapsUrl] }, { ca: [ca] })
    assert.equal((await d.authenticate('carol', PEOPLE.carol))?.role, 'readonly')
    const t0 = Date.now()
    const e = await unavailable(new Directory({ ...settings, urls: [`ldap://127.0.0.1:${silentPort}`] }, { ca: [ca] }).authenticate('carol', PEOPLE.carol))
    const took = Date.now() - t0
    assert.ok(took < 4000, `bounded: ${took} ms`)
    assert.ok(!(e.detail ?? '').includes(PEOPLE.carol))
  })

  it('a refused reader is a 503 naming the reader, never a wrong user password', async () => {
    const e = await unavailable(new Directory({ ...settings, bindPassword: 'Wrong-reader-1' }, { ca: [ca] }).authenticate('alice', PEOPLE.alice))
    assert.match(e.detail ?? '', /reader bind .* was refused/)
    assert.ok(!(e.detail ?? '').includes('Wrong-reader-1'))
  })

  it('slapd accepts an unauthenticated bind (DN, no password) — which is why the client never binds with an empty password', async () => {
    // The server's side of RFC 4513 §5.1.2: a DN with an empty password "succeeds" anonymously.
    const c = new Client({ url: ldap.ldapsUrl, tlsOptions: { ca: [ca] } })
    await c.bind(`uid=alice,ou=people,${ldap.baseDn}`, '')
    await c.unbind()
    const d = new Directory(settings, { ca: [ca] })
    assert.equal(await d.authenticate('alice', ''), undefined)
    assert.equal(await d.authenticate('', PEOPLE.alice), undefined)
  })

  it('membershipAttribute memberOf reads the groups from the user entry (the memberof overlay)', async () => {
    ldap.modify(`dn: cn=gh-memberof-readers,ou=groups,${ldap.baseDn}\nchangetype: add\nobjectClass: groupOfNames\ncn: gh-memberof-readers\nmember: uid=erin,ou=people,${ldap.baseDn}\n`)
    const d = new Directory({ ...settings, membershipAttribute: 'memberOf', groupBaseDn: '', roleGroups: { admin: '', regular: '', readonly: 'gh-memberof-readers' } }, { ca: [ca] })
    const erin = await d.authenticate('erin', PEOPLE.erin)
    assert.deepEqual(erin?.groups, ['gh-memberof-readers'])
    assert.equal(erin?.role, 'readonly')
    assert.equal((await d.lookup('alice'))?.role, undefined, 'the seeded groups carry no memberOf')
  })

  it('a user is found only by the exact id: case variants and wildcards find nobody', async () => {
    const d = new Directory(settings, { ca: [ca] })
    for (const name of ['ALICE', 'Alice', 'al*', '*', 'alice)(uid=*']) assert.equal(await d.authenticate(name, PEOPLE.alice), undefined, name)
    assert.equal((await d.lookup('dave')), undefined, 'dave is outside the user base (disabled)')
    assert.deepEqual((await d.lookup('erin'))?.role, undefined)
    assert.deepEqual((await d.lookup('frank'))?.groups.slice().sort(), ['gh-admins', 'gh-users'])
  })
})
