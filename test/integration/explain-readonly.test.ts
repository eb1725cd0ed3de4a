/**
 * `gatehouse explain` never writes into the server's state directory (review finding F5). The
 * local issuer used to be opened as the server opens it: on a state directory with a signing key
 * but no users and a non-loopback admin listener, its first-start bootstrap wrote
 * `<stateDir>/initial-admin-password` with plain fs, past the read-only store. Now explain opens
 * the issuer for verification only (no bootstrap, no key generation, no file written).
 *
 * The real binary (dist/bin/gatehouse.js) on a prepared state directory: every file is hashed
 * (with its mode) before and after, and the directory list compared, for a token signed by the
 * state directory's own key (so the local issuer is opened) and for one that merely claims a
 * local issuer on a state directory without a key.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { runCliAsync } from '../helpers/cli.ts'

/** Relative path → type, mode and (for files) SHA-256 of the content, for everything under `dir`. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name)
      const st = statSync(p)
      const rel = path.relative(dir, p)
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o777).toString(8)}`
        walk(p)
      } else out[rel] = `file ${(st.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`
    }
  }
  walk(dir)
  return out
}

const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')

describe('gatehouse explain leaves the state directory as it found it', () => {
  let root: string
  let yaml: string

  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'gh-explain-ro-'))
    yaml = path.join(root, 'proxy.yaml')
    // A network admin listener and no GATEHOUSE_ADMIN_PASSWORD: the server's first start would
    // write a random first-admin password into the state directory.
    writeFileSync(yaml, 'upstream:\n  url: "echo:"\nadmin:\n  address: 0.0.0.0\nauthentication:\n  local:\n    enabled: true\n')
  })
  after(() => rmSync(root, { recursive: true, force: true }))

  const explain = (stateDir: string, token: string): ReturnType<typeof runCliAsync> =>
    runCliAsync(['explain', '--config', yaml, '--method', 'GET', '--path', '/v1/objects', '--token', token, '--json'], { GATEHOUSE_STATE_DIR: stateDir }, root)

  it('a signing key, no users, admin.address 0.0.0.0: explain opens the local issuer and writes nothing (no initial-admin-password, no users)', async () => {
    const state = path.join(root, 'with-key')
    mkdirSync(path.join(state, 'issuer'), { recursive: true, mode: 0o700 })
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const iss = 'urn:gatehouse:local:readonlytest'
    const kid = 'local-readonlytest'
    writeFileSync(path.join(state, 'issuer', 'signing-key.json'), JSON.stringify({ iss, kid, privateJwk: { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' } }), { mode: 0o600 })
    // Signed by the state directory's key, so explain must open the issuer to judge it.
    const token = await new SignJWT({ role: 'admin', gen: 0, typ: 'access' })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .setIssuer(iss)
      .setAudience('gatehouse')
      .setSubject('admin')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey)
    const beforeRun = snapshot(state)
    const r = await explain(state, token)
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as { decision: string; status?: number; reason?: string }
    // No user admin exists in this state: the local issuer was consulted and refused the token.
    assert.deepEqual([j.decision, j.status, j.reason], ['deny', 401, 'ERR_INVALID_TOKEN'], r.stdout)
    assert.deepEqual(snapshot(state), beforeRun)
  })

  it('no signing key: explain generates none and writes nothing', async () => {
    const state = path.join(root, 'empty')
    mkdirSync(state, { recursive: true, mode: 0o700 })
    const token = `${b64({ alg: 'ES256', kid: 'local-none', typ: 'JWT' })}.${b64({ iss: 'urn:gatehouse:local:none', sub: 'admin', aud: 'gatehouse', exp: 4102444800 })}.AAAA`
    const beforeRun = snapshot(state)
    const r = await explain(state, token)
    assert.equal(r.code, 0, r.stderr)
    assert.equal((JSON.parse(r.stdout) as { decision: string }).decision, 'deny')
    assert.deepEqual(snapshot(state), beforeRun)
  })
})
