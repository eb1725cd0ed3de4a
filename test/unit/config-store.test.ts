/**
 * The `store` group (SPEC §11, docs/replicas.md): defaults, the environment variables, every
 * validation problem named at once (exit 2), and that no store password is ever echoed.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { loadConfig, formatProblem, type LoadResult } from '../../src/config/load.ts'
import type { Config } from '../../src/config/types.ts'

const DIR = mkdtempSync(path.join(tmpdir(), 'gh-config-store-'))
after(() => rmSync(DIR, { recursive: true, force: true }))
const SECRET = 'Sup3r-Secret-Store-Pw'

function load(env: Record<string, string>, yaml?: string): LoadResult {
  let configPath: string | undefined
  if (yaml !== undefined) {
    configPath = path.join(DIR, `c${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(configPath, yaml)
  }
  return loadConfig({ configPath, env, cwd: DIR })
}

function ok(env: Record<string, string>, yaml?: string): Config {
  const r = load(env, yaml)
  assert.deepEqual(r.problems.map((p) => `${p.path}: ${p.message}`), [])
  assert.ok(r.config !== undefined)
  return r.config
}

/** Every problem, formatted as `config check` prints them (what an operator sees). */
function problems(env: Record<string, string>, yaml?: string): string[] {
  const r = load(env, yaml)
  assert.equal(r.config, undefined, 'a config with problems yields no config')
  return r.problems.map(formatProblem)
}

describe('store: defaults and sources', () => {
  it('defaults to the embedded file store with the documented bounds', () => {
    const c = ok({})
    assert.equal(c.store.url, 'file:')
    assert.equal(c.store.keyPrefix, 'gatehouse:')
    assert.equal(c.store.connectTimeout, 5000)
    assert.equal(c.store.commandTimeout, 2000)
    assert.equal(c.store.maxStaleness, 1000)
    assert.equal(c.store.password, undefined)
  })

  it('reads GATEHOUSE_STORE_URL, _USERNAME, _PASSWORD, _KEY_PREFIX and the YAML timeouts', () => {
    const c = ok({ GATEHOUSE_STORE_URL: 'redis://127.0.0.1:6379/2', GATEHOUSE_STORE_USERNAME: 'gh', GATEHOUSE_STORE_PASSWORD: SECRET, GATEHOUSE_STORE_KEY_PREFIX: 'gh-prod:' }, 'store:\n  commandTimeout: 500ms\n  maxStaleness: 3s\n')
    assert.equal(c.store.url, 'redis://127.0.0.1:6379/2')
    assert.equal(c.store.username, 'gh')
    assert.equal(c.store.password, SECRET)
    assert.equal(c.store.keyPrefix, 'gh-prod:')
    assert.equal(c.store.commandTimeout, 500)
    assert.equal(c.store.maxStaleness, 3000)
  })

  it('accepts rediss:// with a CA file and a password file', () => {
    const ca = path.join(DIR, 'ca.pem')
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
    const pw = path.join(DIR, 'pw')
    writeFileSync(pw, `${SECRET}\n`)
    const c = ok({ GATEHOUSE_STORE_URL: 'rediss://redis.example:6380', GATEHOUSE_STORE_CA_FILE: ca, GATEHOUSE_STORE_PASSWORD_FILE: pw })
    assert.equal(c.store.caFile, ca)
    assert.equal(c.store.passwordFile, pw)
  })
})

describe('store: validation names every problem and never echoes a password', () => {
  it('a password in the URL is refused, and the message does not contain it', () => {
    const out = problems({ GATEHOUSE_STORE_URL: `redis://gh:${SECRET}@10.0.0.5:6379` })
    assert.ok(out.some((l) => l.includes('store.url') && l.includes('carries a password') && l.includes('GATEHOUSE_STORE_PASSWORD')), out.join('\n'))
    assert.ok(!out.join('\n').includes(SECRET), 'the password is never echoed')
  })

  it('every problem of a bad store group at once', () => {
    const out = problems({ GATEHOUSE_STORE_URL: 'redis://10.0.0.5:6379/db?x=1', GATEHOUSE_STORE_PASSWORD: SECRET, GATEHOUSE_STORE_PASSWORD_FILE: path.join(DIR, 'missing'), GATEHOUSE_STORE_CA_FILE: path.join(DIR, 'missing-ca'), GATEHOUSE_STORE_KEY_PREFIX: 'bad prefix*' })
    const text = out.join('\n')
    for (const want of [/store\.url.*database number/, /store\.url.*query parameters/, /store\.passwordFile.*both password and passwordFile/, /store\.passwordFile.*does not exist/, /store\.caFile.*only used with rediss/, /store\.keyPrefix.*letters/]) {
      assert.match(text, want)
    }
    assert.ok(!text.includes(SECRET))
  })

  it('credentials or a CA with the file store are problems, not silently ignored', () => {
    const text = problems({ GATEHOUSE_STORE_PASSWORD: SECRET, GATEHOUSE_STORE_USERNAME: 'gh' }).join('\n')
    assert.match(text, /store\.password.*store\.url is file:/)
    assert.match(text, /store\.username.*store\.url is file:/)
    assert.ok(!text.includes(SECRET))
  })

  it('an unknown scheme and a missing host are named', () => {
    assert.match(problems({ GATEHOUSE_STORE_URL: 'memcached://x:1' }).join('\n'), /store\.url.*not file: nor a redis/)
    assert.match(problems({ GATEHOUSE_STORE_URL: 'file:/var/lib/gh' }).join('\n'), /store\.url.*not file: nor a redis/)
    assert.match(problems({ GATEHOUSE_STORE_URL: 'redis://' }).join('\n'), /store\.url/)
  })

  it('the staleness bound has a floor and a ceiling', () => {
    assert.match(problems({}, 'store:\n  maxStaleness: 10ms\n').join('\n'), /store\.maxStaleness/)
    assert.match(problems({}, 'store:\n  maxStaleness: 2h\n').join('\n'), /store\.maxStaleness/)
  })

  it('a password over plain redis:// to another host is a warning', () => {
    const r = load({ GATEHOUSE_STORE_URL: 'redis://redis.internal:6379', GATEHOUSE_STORE_PASSWORD: SECRET })
    assert.deepEqual(r.problems, [])
    assert.ok(r.warnings.some((w) => w.includes('plain redis://') && !w.includes(SECRET)), r.warnings.join('\n'))
  })
})
