/**
 * CLI and configuration fixes of the second reliability round, each through the real
 * `gatehouse` binary (and a real `gatehouse serve` with a recording upstream where a server is
 * involved):
 *
 * - after `security tls set` the CLI verifies the admin listener with GATEHOUSE_STATE_DIR alone
 *   (the server publishes what it serves to tls/served.crt); without it, the error names --ca;
 * - `user passwd` without a terminal names the flag or argument that supplies what is missing;
 * - `config check` / `config print` without a file say so plainly and how to name one, and
 *   `--help` says what the code does (no implicit ./proxy.yaml);
 * - `config print` shows empty values alike for every key;
 * - a keys file with only comments is reported with its path and the remedy;
 * - a YAML syntax error is reported at its real line and column, never past the end of the file.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { peerFingerprint, runCliAsync as run, startServe, type CliRun as Run, type ServeProcess } from '../helpers/cli.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'
import { generateLocalCa, issueServerCertificate } from '../../src/tls/selfsigned.ts'

describe('the CLI against a real gatehouse: trust after tls set, and user passwd without a terminal', () => {
  let dir: string
  let state: string
  let home: string
  let up: RecordingUpstream
  let gh: ServeProcess
  const secrets = new Set<string>(['admin-Pass1', 'Another-pass2'])
  const outputs: string[] = []
  const env = (extra: Record<string, string> = {}): Record<string, string> => ({ HOME: home, GATEHOUSE_HOST: gh.adminUrl, GATEHOUSE_STATE_DIR: state, ...extra })
  async function cli(args: string[], extra: Record<string, string> = {}, input?: string): Promise<Run> {
    const r = await run(args, env(extra), dir, input)
    outputs.push(r.stdout + r.stderr)
    return r
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-cli2-'))
    state = path.join(dir, 'state')
    home = path.join(dir, 'home')
    up = await startUpstream()
    gh = await startServe({ GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir })
    const login = await cli(['user', 'login', 'admin'], {}, 'admin\nadmin-Pass1\nadmin-Pass1\n')
    assert.equal(login.code, 0, login.stderr)
  })
  after(async () => {
    gh.child.kill('SIGTERM')
    await gh.exited
    await up.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('after security tls set (a leaf from a CA the CLI never saw), GATEHOUSE_STATE_DIR alone verifies the admin listener; unset goes back', async () => {
    const ca = generateLocalCa({ commonName: 'second-round test CA' })
    const leaf = issueServerCertificate(ca, { commonName: 'set through the API' })
    secrets.add(leaf.keyPem).add(ca.keyPem)
    const certFile = path.join(dir, 'api.crt')
    const keyFile = path.join(dir, 'api.key')
    writeFileSync(certFile, leaf.certPem)
    writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 })
    const served = path.join(state, 'tls', 'served.crt')
    assert.equal(readFileSync(served, 'utf8'), readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8'), 'served.crt is what the listeners present from the start')

    up.reset()
    const set = await cli(['security', 'tls', 'set', '--certificate', certFile, '--private-key', keyFile])
    assert.equal(set.code, 0, set.stderr)
    const fp = new X509Certificate(leaf.certPem).fingerprint256
    assert.equal(await peerFingerprint(gh.adminUrl), fp)
    assert.equal(readFileSync(served, 'utf8'), leaf.certPem, 'the server published the certificate it serves now')
    assert.doesNotMatch(readFileSync(served, 'utf8'), /PRIVATE KEY/)

    // The bug: with GATEHOUSE_STATE_DIR set the CLI could not verify this certificate.
    const status = await cli(['security', 'tls', 'status', '--json'])
    assert.equal(status.code, 0, status.stderr)
    assert.equal((JSON.parse(status.stdout) as { fingerprint256: string; source: string }).fingerprint256, fp)
    const who = await cli(['user', 'whoami'])
    assert.equal(who.code, 0, who.stderr)
    assert.match(who.stdout, /^admin \(role admin/)

    // Verification is never off: a state directory without the files gives an error that says --ca FILE…
    const empty = path.join(dir, 'empty-state')
    mkdirSync(empty)
    const refused = await cli(['user', 'whoami'], { GATEHOUSE_STATE_DIR: empty })
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /^gatehouse user whoami: cannot verify the server certificate of https:\/\/127\.0\.0\.1:\d+ \([A-Z_]+; trusted: the system CAs\); pass --ca FILE/m)
    // …and --ca with the CA that issued it works without the state directory.
    const caFile = path.join(dir, 'test-ca.crt')
    writeFileSync(caFile, ca.certPem)
    const withCa = await cli(['user', 'whoami', '--ca', caFile], { GATEHOUSE_STATE_DIR: empty })
    assert.equal(withCa.code, 0, withCa.stderr)
    // A file that trusts something else is named in the error, with what to do.
    const otherCa = path.join(dir, 'other-ca.crt')
    writeFileSync(otherCa, generateLocalCa().certPem)
    const wrong = await cli(['user', 'whoami', '--ca', otherCa])
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, new RegExp(`trusted: ${otherCa.replace(/[.]/g, '\\.')} and the system CAs\\); pass --ca FILE with the CA certificate that issued the server's certificate`))

    const unset = await cli(['security', 'tls', 'unset'])
    assert.equal(unset.code, 0, unset.stderr)
    assert.equal(readFileSync(served, 'utf8'), readFileSync(path.join(state, 'tls', 'self-signed.crt'), 'utf8'))
    const back = await cli(['security', 'tls', 'status'])
    assert.equal(back.code, 0, back.stderr)
    assert.match(back.stdout, /source:\s+self-signed/)
    assert.equal(up.requests.length, 0, 'the admin commands never reached the upstream')
  })

  it('user passwd without a terminal names --current-password, then NEW_PASSWORD; nothing is changed', async () => {
    up.reset()
    const noCurrent = await cli(['user', 'passwd'])
    assert.equal(noCurrent.code, 2, noCurrent.stderr)
    assert.match(noCurrent.stderr, /no current password given: stdin is not a terminal and has no more lines; pass --current-password P, or pipe it as the first line/)
    assert.doesNotMatch(noCurrent.stderr, /as an argument/)

    const noNew = await cli(['user', 'passwd', '--current-password', 'admin-Pass1'])
    assert.equal(noNew.code, 2, noNew.stderr)
    assert.match(noNew.stderr, /no new password given: .*; pass it as NEW_PASSWORD \(gatehouse user passwd NEW_PASSWORD\), or pipe it twice/)

    const noConfirm = await cli(['user', 'passwd', '--current-password', 'admin-Pass1'], {}, 'Another-pass2\n')
    assert.equal(noConfirm.code, 2)
    assert.match(noConfirm.stderr, /no new password confirmation given: .*; pass it as NEW_PASSWORD/)

    const add = await cli(['user', 'add', 'bob', '--role', 'readonly'])
    assert.equal(add.code, 2)
    assert.match(add.stderr, /no password given: .*; pass --password P, or pipe the password twice/)

    // Nothing was changed: the token still works and the old password still logs in.
    const who = await cli(['user', 'whoami'])
    assert.equal(who.code, 0, who.stderr)
    const again = await cli(['user', 'login', 'admin', 'admin-Pass1'])
    assert.equal(again.code, 0, again.stderr)
    // Positive control: with both given, it changes.
    const ok = await cli(['user', 'passwd', 'Another-pass2', '--current-password', 'admin-Pass1'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(up.requests.length, 0)
  })

  it('printed no password, key or token; the server logged none', () => {
    const printed = outputs.join('\n')
    const logs = gh.stdout.join('\n') + gh.stderr.join('')
    const t = JSON.parse(readFileSync(path.join(home, '.gatehouse', 'auth-token.json'), 'utf8')) as { access_token: string; refresh_token: string }
    for (const s of [...secrets, t.access_token, t.refresh_token]) {
      assert.ok(!printed.includes(s), `printed: ${s.slice(0, 12)}…`)
      assert.ok(!logs.includes(s), `logged: ${s.slice(0, 12)}…`)
    }
  })
})

describe('configuration commands (real binary)', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-cli2-cfg-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('config check without a file says plainly that no file was read and how to name one; ./proxy.yaml is not read, as --help says', async () => {
    // A broken proxy.yaml in the working directory proves it is not picked up implicitly.
    writeFileSync(path.join(dir, 'proxy.yaml'), 'listen:\n  port: not-a-port\n')
    const r = await run(['config', 'check'], {}, dir)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'configuration OK, but no configuration file was read (only the defaults and the environment); name one with --config FILE or GATEHOUSE_CONFIG\n')
    assert.doesNotMatch(r.stdout, /no file\)/)

    const print = await run(['config', 'print'], {}, dir)
    assert.equal(print.code, 0)
    assert.match(print.stderr, /^note: no configuration file was read .*--config FILE or GATEHOUSE_CONFIG$/m)
    assert.match(print.stdout, /^listen\.port +8443 +# default$/m)

    // Named either way, the file is read (and here refused).
    const named = await run(['config', 'check', '--config', 'proxy.yaml'], {}, dir)
    assert.equal(named.code, 2)
    const viaEnv = await run(['config', 'check'], { GATEHOUSE_CONFIG: 'proxy.yaml' }, dir)
    assert.equal(viaEnv.code, 2)
    assert.match(viaEnv.stderr, /proxy\.yaml:2: listen\.port/)

    const help = await run(['--help'], {}, dir)
    assert.equal(help.code, 0)
    assert.doesNotMatch(help.stdout, /else \.\/proxy\.yaml/)
    assert.doesNotMatch(help.stdout, /--config proxy\.yaml/)
    assert.match(help.stdout, /The configuration file is --config FILE, else \$GATEHOUSE_CONFIG; without\neither no file is read/)
  })

  it('config print shows empty values alike for every key: "" [] {} and bare (unset) / <redacted> markers', async () => {
    const cfg = path.join(dir, 'print.yaml')
    writeFileSync(cfg, 'authentication:\n  apikey:\n    enabled: true\n    allowedKeys: [print-secret-key-1]\n    users: [alice]\n')
    const withKey = await run(['config', 'print', '--config', cfg], {}, dir)
    assert.equal(withKey.code, 0, withKey.stderr)
    assert.ok(!withKey.stdout.includes('print-secret-key-1'), 'the key is redacted')
    const rows = new Map(withKey.stdout.trimEnd().split('\n').map((l) => {
      const m = /^(\S+(?: \(effective\))?) +(.*?) {2}# /.exec(l)
      assert.ok(m !== null, `unexpected line: ${l}`)
      return [m[1] as string, m[2] as string] as const
    }))
    assert.equal(rows.get('authentication.apikey.allowedKeys'), '<redacted: 1 item>')
    assert.equal(rows.get('authentication.apikey.users'), '["alice"]')
    assert.equal(rows.get('upstream.headers'), '{}', 'an empty secret map prints like an empty map')
    assert.equal(rows.get('trustedProxies'), '[]')
    assert.equal(rows.get('authentication.oidc.issuer'), '""')
    assert.equal(rows.get('tls.certFile'), '(unset)')
    for (const [key, value] of rows) {
      // Every value is JSON or one bare marker; never a quoted empty container or a quoted marker.
      if (/^(\(unset\)|<redacted[^>]*>)$/.test(value) || /^[A-Za-z][\w-]*=(env|file):/.test(value)) continue
      assert.doesNotThrow(() => JSON.parse(value), `${key}: ${value}`)
      assert.ok(!['"[]"', '"{}"', '"(unset)"', '"<redacted>"'].includes(value), `${key} quotes an empty value: ${value}`)
    }

    const defaults = await run(['config', 'print'], {}, dir)
    assert.match(defaults.stdout, /^authentication\.apikey\.allowedKeys +\[\] +# default$/m)
  })

  it('a keys file with only comments is reported with its path and the remedy; serve refuses it too and the upstream sees nothing', async () => {
    const keys = path.join(dir, 'api-keys')
    writeFileSync(keys, '# the keys of the team\n\n   # one per line\n')
    const cfg = path.join(dir, 'keys.yaml')
    writeFileSync(cfg, `authentication:\n  apikey:\n    enabled: true\n    allowedKeysFile: ${keys}\n    users: [alice]\n`)
    const r = await run(['config', 'check', '--config', cfg], {}, dir)
    assert.equal(r.code, 2)
    assert.match(r.stderr, new RegExp(`keys\\.yaml:4: authentication\\.apikey\\.allowedKeysFile = "${keys.replace(/[.]/g, '\\.')}": the keys file has no key \\(only blank lines and # comments\\)\\. Fix: add one key per line to ${keys.replace(/[.]/g, '\\.')} \\(gatehouse apikey generate makes one\\)`))
    assert.match(r.stderr, /the configuration has 1 problem:/, 'one problem, not a second one about allowedKeys without the path')

    const up = await startUpstream()
    try {
      const serve = await run(['serve', '--config', cfg], { GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1' }, dir)
      assert.equal(serve.code, 2)
      assert.ok((serve.stdout + serve.stderr).includes(keys), 'serve names the file too')
      assert.equal(up.requests.length, 0)
    } finally {
      await up.close()
    }

    // Positive control: one key in the file and it is fine.
    writeFileSync(keys, '# the keys of the team\nsecond-round-key-1\n')
    const ok = await run(['config', 'check', '--config', cfg], {}, dir)
    assert.equal(ok.code, 0, ok.stderr)
  })

  it('a YAML syntax error is reported at its real line and column, never past the end of the file', async () => {
    const cases: { text: string; where: RegExp }[] = [
      // The unclosed quote starts on the last line, column 8; the parser noticed at the end of the file.
      { text: 'listen:\n  port: 8443\nupstream:\n  url: "http://x\n', where: /bad\.yaml:4: \(yaml\): YAML syntax error at line 4, column 8: Missing closing "quote \(the file ends before it is closed\)/ },
      { text: "log:\n  level: 'info\n", where: /bad\.yaml:2: \(yaml\): YAML syntax error at line 2, column 10: Missing closing 'quote/ },
      { text: 'trustedProxies: [10.0.0.1,\n  10.0.0.2\n', where: /bad\.yaml:1: \(yaml\): YAML syntax error at line 1, column 17: .*\(the file ends before it is closed\)/ },
      // Not at the end: reported where the parser found it.
      { text: 'listen:\n\tport: 1\nlog:\n  level: info\n', where: /bad\.yaml:2: \(yaml\): YAML syntax error at line 2, column 1: Tabs are not allowed/ },
    ]
    for (const c of cases) {
      const file = path.join(dir, 'bad.yaml')
      writeFileSync(file, c.text)
      const lines = c.text.split('\n').length - 1
      const r = await run(['config', 'check', '--config', file], {}, dir)
      assert.equal(r.code, 2)
      assert.match(r.stderr, c.where)
      for (const m of r.stderr.matchAll(/bad\.yaml:(\d+):/g)) assert.ok(Number(m[1]) <= lines, `line ${m[1]} is past the end of a ${lines}-line file:\n${r.stderr}`)
    }
  })
})
