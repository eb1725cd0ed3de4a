/**
 * Render the configuration reference table of docs/configuration.md from the schema, so the
 * docs cannot drift from the code (test/unit/docs.test.ts compares them).
 *
 *   node --import tsx scripts/config-reference.ts --write
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { leaves } from '../src/config/schema.ts'
import { formatDuration } from '../src/config/units.ts'

export const BEGIN = '<!-- BEGIN GENERATED: config reference (scripts/config-reference.ts) -->'
export const END = '<!-- END GENERATED -->'

/** The generated Markdown table. */
export function renderReference(): string {
  const rows = ['| key | type | default | environment | description |', '| --- | --- | --- | --- | --- |']
  for (const [p, l] of leaves()) {
    let def: string
    if (l.default === undefined) def = '—'
    else if (l.type === 'duration') def = `\`${formatDuration(l.default as number)}\``
    else def = `\`${JSON.stringify(l.default)}\``
    const type = l.type === 'enum' ? (l.values ?? []).map((v) => `\`${v}\``).join(' \\| ') : l.type
    const env = (l.env ?? []).map((e) => `\`${e.name}\``).join(', ') || '—'
    rows.push(`| \`${p}\` | ${type}${l.secret === true ? ' (secret)' : ''} | ${def} | ${env} | ${l.doc.replace(/\|/g, '\\|')} |`)
  }
  return `${BEGIN}\n${rows.join('\n')}\n${END}`
}

/** Replace the generated block in a document. */
export function spliceReference(doc: string): string {
  const a = doc.indexOf(BEGIN)
  const b = doc.indexOf(END)
  if (a === -1 || b === -1) throw new Error('docs/configuration.md lacks the generated-block markers')
  return doc.slice(0, a) + renderReference() + doc.slice(b + END.length)
}

if (process.argv.includes('--write')) {
  const file = new URL('../docs/configuration.md', import.meta.url)
  writeFileSync(file, spliceReference(readFileSync(file, 'utf8')))
}
