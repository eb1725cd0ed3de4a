/**
 * A real OpenLDAP for the directory tests: Debian's `slapd` on 127.0.0.1 and two free ports —
 * `ldap://` (StartTLS offered) and `ldaps://` — with a temporary `slapd.conf` (`-f`), the mdb
 * backend, the core, cosine, inetorgperson and nis schemas, and a seeded directory loaded with
 * `slapadd` before the first start. A test CA and a server certificate for 127.0.0.1/localhost
 * are made with `openssl` at runtime; a second, unrelated CA (`otherCaFile`) is for the
 * "untrusted certificate" tests. Only the process this helper started is ever signalled (by PID).
 *
 * The seeded directory (base `dc=example,dc=org`):
 *
 * | entry | groups | meaning |
 * | --- | --- | --- |
 * | uid=alice,ou=people | gh-admins | directory admin |
 * | uid=bob,ou=people | gh-users | regular user |
 * | uid=carol,ou=people | gh-readonly | read-only user |
 * | uid=erin,ou=people | (none) | in no role group: may not sign in |
 * | uid=frank,ou=people | gh-users, gh-admins | in two role groups: the highest wins (admin) |
 * | uid=clash,ou=people | gh-users | a name a test also creates as a local user |
 * | uid=dave,ou=disabled | gh-admins | disabled: moved out of the user base (ou=people) |
 *
 * Groups are `groupOfNames` with `member` DNs under `ou=groups` (the `memberof` overlay keeps
 * `memberOf` on users for groups added after start: the seeded ones have none); alice is also in a posixGroup
 * `gh-posix-admins` (`memberUid: alice`) for the memberUid mapping. Passwords are `{SSHA}` hashes.
 * The reader `cn=reader,ou=system` may read people and groups; nobody reads `userPassword`.
 * `allow bind_anon_dn`: like Active Directory, this server answers a DN with an empty password
 * (an unauthenticated bind) with success, so an empty-password sign-in is a real danger here.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort } from './redis.ts'

export const SLAPD = '/usr/sbin/slapd'
export const BASE_DN = 'dc=example,dc=org'

/** Every seeded person and their password (the tests sign in with these). */
export const PEOPLE = {
  alice: 'Alice-Pass-1',
  bob: 'Bob-Pass-22',
  carol: 'Carol-Pass-3',
  dave: 'Dave-Pass-44',
  erin: 'Erin-Pass-55',
  frank: 'Frank-Pass-6',
  clash: 'Clash-Pass-7',
} as const

export interface RunningSlapd {
  /** `ldap://127.0.0.1:PORT` (StartTLS with the test CA). */
  readonly ldapUrl: string
  /** `ldaps://127.0.0.1:PORT`. */
  readonly ldapsUrl: string
  /** The test CA that signed the server certificate (PEM file and text). */
  readonly caFile: string
  readonly caPem: string
  /** A CA that signed nothing here: trusting only it must refuse the server. */
  readonly otherCaFile: string
  readonly baseDn: string
  readonly readerDn: string
  readonly readerPassword: string
  readonly rootDn: string
  readonly rootPassword: string
  pid(): number | undefined
  /** Kill slapd (SIGKILL by default: an outage) and wait for its exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Start it again on the same ports and data. */
  start(): Promise<void>
  /** Apply an LDIF change as the root DN (`ldapmodify`); throws with its output on failure. */
  modify(ldif: string): void
  /** Stop and remove the temporary directory. */
  close(): Promise<void>
}

function ssha(password: string): string {
  const salt = randomBytes(8)
  return `{SSHA}${Buffer.concat([createHash('sha1').update(password).update(salt).digest(), salt]).toString('base64')}`
}

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`)
  return r.stdout
}

/** A CA, and a server certificate for 127.0.0.1 and localhost signed by it (openssl). */
function makeCerts(dir: string): void {
  const o = (...a: string[]): string => run('openssl', a)
  for (const ca of ['ca', 'other-ca']) {
    o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=gatehouse test ${ca}`, '-keyout', path.join(dir, `${ca}.key`), '-out', path.join(dir, `${ca}.crt`), '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  }
  o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', path.join(dir, 'server.key'), '-out', path.join(dir, 'server.csr'))
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n')
  o('x509', '-req', '-in', path.join(dir, 'server.csr'), '-CA', path.join(dir, 'ca.crt'), '-CAkey', path.join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', path.join(dir, 'server.ext'), '-out', path.join(dir, 'server.crt'))
}

function seed(readerPassword: string): string {
  const person = (uid: string, ou: string): string => `dn: uid=${uid},ou=${ou},${BASE_DN}
objectClass: inetOrgPerson
uid: ${uid}
cn: ${uid}
sn: ${uid}
mail: ${uid}@example.org
userPassword: ${ssha(PEOPLE[uid as keyof typeof PEOPLE])}
`
  const group = (cn: string, members: string[]): string => `dn: cn=${cn},ou=groups,${BASE_DN}
objectClass: groupOfNames
cn: ${cn}
${members.map((m) => `member: ${m}`).join('\n')}
`
  const dn = (uid: string, ou = 'people'): string => `uid=${uid},ou=${ou},${BASE_DN}`
  return [
    `dn: ${BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n`,
    ...['people', 'groups', 'system', 'disabled'].map((ou) => `dn: ou=${ou},${BASE_DN}\nobjectClass: organizationalUnit\nou: ${ou}\n`),
    `dn: cn=reader,ou=system,${BASE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: ${ssha(readerPassword)}\n`,
    ...['alice', 'bob', 'carol', 'erin', 'frank', 'clash'].map((u) => person(u, 'people')),
    person('dave', 'disabled'),
    group('gh-admins', [dn('alice'), dn('frank'), dn('dave', 'disabled')]),
    group('gh-users', [dn('bob'), dn('frank'), dn('clash')]),
    group('gh-readonly', [dn('carol')]),
    group('unrelated', [dn('erin')]),
    `dn: cn=gh-posix-admins,ou=groups,${BASE_DN}\nobjectClass: posixGroup\ncn: gh-posix-admins\ngidNumber: 5000\nmemberUid: alice\n`,
  ].join('\n')
}

/** Start a slapd; fails (never skips) when Debian's package is missing. */
export async function startSlapd(): Promise<RunningSlapd> {
  if (!existsSync(SLAPD)) {
    throw new Error(`${SLAPD} is missing: install Debian's slapd and ldap-utils (apt-get install -y --no-install-recommends slapd ldap-utils); .ci/run does this`)
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-slapd-'))
  const data = path.join(dir, 'data')
  mkdirSync(data, { mode: 0o700 })
  makeCerts(dir)
  const readerPassword = `Reader-${randomBytes(6).toString('hex')}`
  const rootPassword = `Root-${randomBytes(6).toString('hex')}`
  const rootDn = `cn=admin,${BASE_DN}`
  const readerDn = `cn=reader,ou=system,${BASE_DN}`
  const conf = path.join(dir, 'slapd.conf')
  writeFileSync(conf, `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile ${path.join(dir, 'slapd.pid')}
argsfile ${path.join(dir, 'slapd.args')}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
# Accept an unauthenticated bind (a DN with an empty password, RFC 4513 §5.1.2) as anonymous, as
# Active Directory and older servers do: the tests prove gatehouse never lets one sign anyone in.
allow bind_anon_dn
TLSCACertificateFile ${path.join(dir, 'ca.crt')}
TLSCertificateFile ${path.join(dir, 'server.crt')}
TLSCertificateKeyFile ${path.join(dir, 'server.key')}
database mdb
maxsize 33554432
suffix "${BASE_DN}"
rootdn "${rootDn}"
rootpw ${ssha(rootPassword)}
directory ${data}
index objectClass,uid,cn,member,memberUid eq
# memberOf on user entries for groups added or changed after start (slapadd bypasses overlays).
overlay memberof
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="${readerDn}" read
  by users read
  by * none
`)
  writeFileSync(path.join(dir, 'seed.ldif'), seed(readerPassword))
  run('/usr/sbin/slapadd', ['-f', conf, '-l', path.join(dir, 'seed.ldif')])
  const port = await freePort()
  const tlsPort = await freePort()
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const launch = async (): Promise<void> => {
    let out = ''
    // -d 0: stay in the foreground (a child this helper can kill by PID) without debug output.
    const c = spawn(SLAPD, ['-f', conf, '-h', `ldap://127.0.0.1:${port}/ ldaps://127.0.0.1:${tlsPort}/`, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    c.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    child = c
    exited = new Promise((resolve) => c.once('exit', () => resolve()))
    const deadline = Date.now() + 10_000
    for (;;) {
      if (c.exitCode !== null) throw new Error(`slapd exited at start (${c.exitCode}): ${out}`)
      if ((await accepts(port)) && (await accepts(tlsPort))) return
      if (Date.now() > deadline) throw new Error(`slapd did not listen on 127.0.0.1:${port}/${tlsPort}: ${out}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const stop = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const c = child
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    if (c.pid !== undefined) process.kill(c.pid, signal)
    await exited
    child = undefined
  }

  await launch()
  return {
    ldapUrl: `ldap://127.0.0.1:${port}`,
    ldapsUrl: `ldaps://127.0.0.1:${tlsPort}`,
    caFile: path.join(dir, 'ca.crt'),
    caPem: readFileSync(path.join(dir, 'ca.crt'), 'utf8'),
    otherCaFile: path.join(dir, 'other-ca.crt'),
    baseDn: BASE_DN,
    readerDn,
    readerPassword,
    rootDn,
    rootPassword,
    pid: () => child?.pid,
    stop,
    start: async () => {
      if (child !== undefined) return
      await launch()
    },
    modify: (ldif: string) => {
      run('ldapmodify', ['-x', '-H', `ldap://127.0.0.1:${port}`, '-D', rootDn, '-w', rootPassword], ldif)
    },
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}
