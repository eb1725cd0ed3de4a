import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { renderReference, spliceReference } from '../../scripts/config-reference.ts'
import { leaves } from '../../src/config/schema.ts'

describe('docs/configuration.md', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  it('holds the reference table generated from the schema (run: node --import tsx scripts/config-reference.ts --write)', () => {
    assert.equal(spliceReference(doc), doc)
    assert.ok(doc.includes(renderReference()))
  })
  it('names every key and every environment variable', () => {
    for (const [p, l] of leaves()) {
      assert.ok(doc.includes(`\`${p}\``), `missing ${p}`)
      for (const e of l.env ?? []) assert.ok(doc.includes(e.name), `missing ${e.name}`)
    }
  })
})

describe('docs/errors.md', () => {
  it('documents every reason code of src/errors.ts with its status', async () => {
    const { ERRORS } = await import('../../src/errors.ts')
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
    for (const [code, spec] of Object.entries(ERRORS)) assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${spec.status} \\|`), `missing ${code}`)
  })
})
