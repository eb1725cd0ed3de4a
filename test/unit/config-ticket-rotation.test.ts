/** `tls.ticketKeyRotation`: a duration, default 1 h, 0 (never) up to 7 days. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { loadConfig, type LoadResult } from '../../src/config/load.ts'

const DIR = mkdtempSync(path.join(tmpdir(), 'gh-ticket-config-'))
after(() => rmSync(DIR, { recursive: true, force: true }))

function load(yaml: string): LoadResult {
  const f = path.join(DIR, `c${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(f, yaml)
  return loadConfig({ configPath: f, env: {}, cwd: DIR })
}

describe('tls.ticketKeyRotation', () => {
  it('defaults to one hour', () => {
    assert.equal(load('{}\n').config?.tls.ticketKeyRotation, 3_600_000)
  })
  it('takes a duration, and 0s (never)', () => {
    assert.equal(load('tls:\n  ticketKeyRotation: 15m\n').config?.tls.ticketKeyRotation, 900_000)
    assert.equal(load('tls:\n  ticketKeyRotation: 0s\n').config?.tls.ticketKeyRotation, 0)
  })
  for (const [value, message] of [
    ['8d', /out of range/],
    ['-1s', /./],
    ['often', /duration/i],
  ] as const) {
    it(`refuses ${value}, naming the key`, () => {
      const r = load(`tls:\n  ticketKeyRotation: ${value}\n`)
      assert.equal(r.config, undefined)
      const p = r.problems.find((x) => x.path === 'tls.ticketKeyRotation')
      assert.ok(p !== undefined, r.problems.map((x) => `${x.path}: ${x.message}`).join('\n'))
      assert.match(p.message, message)
    })
  }
})
