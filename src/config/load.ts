/**
 * Load the configuration: YAML file (with line numbers), then environment variables over it,
 * then semantic validation. Every problem is collected; nothing throws on bad input.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import type * as Yaml from 'yaml'
import type { Document, LineCounter, Node as YamlNode } from 'yaml'
import { leafAt, leaves, SCHEMA, type Group, type Leaf } from './schema.ts'
import type { Config, Problem, SecretRef, Source } from './types.ts'
import { parseDuration, parseSize } from './units.ts'
import { validate } from './validate.ts'

/** The result of loading: a config only when there are no problems. */
export interface LoadResult {
  readonly config: Config | undefined
  readonly problems: readonly Problem[]
  /** Non-fatal notes (e.g. TLS disabled), logged at start and printed by `config check`. */
  readonly warnings: readonly string[]
  /** Source of every leaf value, keyed by dotted path. */
  readonly sources: ReadonlyMap<string, Source>
  /** Flat values by dotted path (for `config print`). */
  readonly values: ReadonlyMap<string, unknown>
}

export interface LoadOptions {
  /** Explicit `--config` path; missing file is a problem. */
  readonly configPath?: string | undefined
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

/**
 * Which file to read: `--config`, else `GATEHOUSE_CONFIG`, else none (defaults and environment
 * only). A file is never picked up implicitly, so an environment-only deployment is not changed
 * by a proxy.yaml that happens to sit in the working directory.
 */
export function resolveConfigPath(opts: LoadOptions): { path: string | undefined; explicit: boolean } {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const explicit = opts.configPath ?? env.GATEHOUSE_CONFIG
  if (explicit !== undefined && explicit !== '') return { path: path.resolve(cwd, explicit), explicit: true }
  return { path: undefined, explicit: false }
}

/** Load and validate. Never throws for bad input; see `problems`. */
export function loadConfig(opts: LoadOptions = {}): LoadResult {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const problems: Problem[] = []
  const warnings: string[] = []
  const values = new Map<string, unknown>()
  const sources = new Map<string, Source>()
  const { path: file, explicit } = resolveConfigPath(opts)

  for (const [p, l] of leaves()) {
    values.set(p, l.default)
    sources.set(p, { kind: 'default' })
  }

  if (file !== undefined) {
    readYaml(file, explicit, values, sources, problems)
  }
  applyEnv(env, cwd, values, sources, problems)
  // generateIfMissing without a file: the key file lives in the state directory (writable in
  // containers, unlike the directory of a read-only config file).
  if (values.get('authentication.apikey.generateIfMissing') === true && values.get('authentication.apikey.allowedKeysFile') === undefined && sources.get('authentication.apikey.allowedKeysFile')?.kind === 'default') {
    values.set('authentication.apikey.allowedKeysFile', path.resolve(cwd, String(values.get('stateDir')), 'api-keys'))
    sources.set('authentication.apikey.allowedKeysFile', { kind: 'derived', why: 'generateIfMissing: <stateDir>/api-keys' })
  }

  // Semantic checks run even after type problems (every problem at once, SPEC §3); a value that
  // failed its type check kept its default, so semantic findings about that key are dropped.
  const typed = new Set(problems.map((p) => baseKey(p.path)))
  const semantic: Problem[] = []
  const config = build(values, file)
  validate(config, sources, semantic, warnings)
  for (const p of semantic) if (!typed.has(baseKey(p.path))) problems.push(p)
  return { config: problems.length === 0 ? config : undefined, problems, warnings, sources, values }
}

// The YAML parser is loaded when a file is read, not with this module: an environment-only
// configuration (and `config check` without a file) does not pay its ~40 ms of start-up
// (docs/benchmarks.md, "CLI start-up").
let yamlModule: typeof Yaml | undefined
function yaml(): typeof Yaml {
  return (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml)
}

function readYaml(file: string, explicit: boolean, values: Map<string, unknown>, sources: Map<string, Source>, problems: Problem[]): void {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    problems.push({
      path: '(config file)',
      source: undefined,
      value: file,
      message: code === 'ENOENT' ? 'the configuration file does not exist' : `cannot read the configuration file (${code ?? String(e)})`,
      remedy: explicit ? 'pass an existing file with --config or GATEHOUSE_CONFIG, or unset it to use the defaults' : 'check the file permissions',
    })
    return
  }
  const { isMap, isScalar, LineCounter, parseDocument } = yaml()
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false })
  const lineOf = (n: YamlNode | null | undefined): number => (n?.range ? lineCounter.linePos(n.range[0]).line : 1)
  for (const err of doc.errors) {
    const at = yamlErrorPosition(text, doc, err.pos[0], lineCounter)
    problems.push({
      path: '(yaml)',
      source: { kind: 'file', file, line: at.line },
      value: undefined,
      message: `YAML syntax error at line ${at.line}, column ${at.col}: ${err.message.split('\n')[0] ?? err.code}${at.unclosed ? ' (the file ends before it is closed)' : ''}`,
      remedy: at.unclosed ? 'close the quote or bracket that starts at this line and column' : 'fix the YAML syntax at this line',
    })
  }
  if (doc.errors.length > 0) return
  const root = doc.contents
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return
  if (!isMap(root)) {
    problems.push({ path: '(root)', source: { kind: 'file', file, line: lineOf(root) }, value: undefined, message: 'the configuration must be a YAML mapping', remedy: 'start the file with keys such as listen:, upstream:, authentication:' })
    return
  }
  walkGroup(SCHEMA, root, '', file, lineOf, values, sources, problems)
}

/**
 * Where to report a YAML syntax error. The parser puts "missing closing quote" and an unclosed
 * flow collection at the end of the input — past the last line of the file — so such an error
 * is reported where the unclosed scalar or collection starts; any other error where the parser
 * put it, kept within the file.
 */
function yamlErrorPosition(text: string, doc: Document, offset: number, lineCounter: LineCounter): { line: number; col: number; unclosed: boolean } {
  const { isMap, isScalar, isSeq, visit } = yaml()
  const end = text.trimEnd().length
  if (offset >= end) {
    // The construct still open at the end of the file: the latest-starting quoted scalar or flow
    // collection that reaches it.
    let start: number | undefined
    visit(doc, (_key, node) => {
      const n = node as YamlNode | null
      if (n === null || n.range === undefined || n.range === null) return
      const open = (isScalar(n) && (n.type === 'QUOTE_DOUBLE' || n.type === 'QUOTE_SINGLE')) || ((isMap(n) || isSeq(n)) && n.flow === true)
      if (open && n.range[1] >= end && (start === undefined || n.range[0] > start)) start = n.range[0]
    })
    if (start !== undefined) return { ...lineCounter.linePos(start), unclosed: true }
  }
  // Never past the last character of the file.
  const p = lineCounter.linePos(Math.max(0, Math.min(offset, Math.max(end - 1, 0))))
  return { ...p, unclosed: false }
}

function walkGroup(
  group: Group,
  node: YamlNode,
  prefix: string,
  file: string,
  lineOf: (n: YamlNode | null | undefined) => number,
  values: Map<string, unknown>,
  sources: Map<string, Source>,
  problems: Problem[],
): void {
  const { isMap, isScalar, isSeq } = yaml()
  if (!isMap(node)) {
    problems.push({ path: prefix, source: { kind: 'file', file, line: lineOf(node) }, value: undefined, message: 'expected a mapping of keys', remedy: `write ${prefix}: followed by indented keys (${Object.keys(group.children).join(', ')})` })
    return
  }
  for (const pair of node.items) {
    const keyNode = pair.key as YamlNode | null
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode)
    const p = prefix === '' ? key : `${prefix}.${key}`
    const child = group.children[key]
    const valueNode = pair.value as YamlNode | null
    if (child === undefined) {
      const suggestion = closest(key, Object.keys(group.children))
      problems.push({
        path: p,
        source: { kind: 'file', file, line: lineOf(keyNode) },
        value: undefined,
        message: 'unknown key',
        remedy: suggestion === undefined ? `remove it; valid keys here: ${Object.keys(group.children).join(', ')}` : `did you mean ${prefix === '' ? suggestion : `${prefix}.${suggestion}`}?`,
      })
      continue
    }
    if (child.kind === 'group') {
      if (valueNode === null || (isScalar(valueNode) && valueNode.value === null)) continue
      walkGroup(child, valueNode, p, file, lineOf, values, sources, problems)
      continue
    }
    const src: Source = { kind: 'file', file, line: lineOf(valueNode ?? keyNode) }
    const raw: unknown = valueNode === null ? null : valueNode.toJSON()
    if (raw === null) continue // `key:` with no value keeps the default
    const converted = convertYaml(child, raw, p, src, problems)
    if (converted === INVALID) continue
    values.set(p, child.isPath === true && typeof converted === 'string' ? path.resolve(path.dirname(file), converted) : resolveSecretPaths(child, converted, file))
    sources.set(p, src)
    if (isSeq(valueNode) && child.type === 'stringList') {
      // Item-level lines make list problems point at the exact entry.
      valueNode.items.forEach((item, i) => sources.set(`${p}[${i}]`, { kind: 'file', file, line: lineOf(item as YamlNode) }))
    }
  }
}

const INVALID = Symbol('invalid')

function convertYaml(l: Leaf, raw: unknown, p: string, src: Source, problems: Problem[]): unknown {
  const bad = (message: string, remedy: string): typeof INVALID => {
    problems.push({ path: p, source: src, value: l.secret === true ? '<redacted>' : show(raw), message, remedy })
    return INVALID
  }
  switch (l.type) {
    case 'string':
      if (typeof raw === 'string') return raw
      if (typeof raw === 'number') return String(raw)
      return bad('expected a string', 'quote the value')
    case 'enum':
      if (typeof raw === 'string' && l.values?.includes(raw) === true) return raw
      return bad(`must be one of ${l.values?.join(', ')}`, `use one of: ${l.values?.join(', ')}`)
    case 'bool':
      if (typeof raw === 'boolean') return raw
      return bad('expected true or false', 'write true or false (unquoted)')
    case 'int':
      if (typeof raw === 'number' && Number.isInteger(raw) && raw >= (l.min ?? -Infinity) && raw <= (l.max ?? Infinity)) return raw
      return bad(`expected an integer between ${l.min} and ${l.max}`, `use a whole number from ${l.min} to ${l.max}`)
    case 'duration': {
      const ms = typeof raw === 'string' ? parseDuration(raw) : raw === 0 ? 0 : undefined
      if (ms === undefined) return bad('expected a duration', 'write a duration such as 500ms, 30s, 4m, 2h, 1d5h, 1w')
      if (ms < (l.min ?? 0) || ms > (l.max ?? Infinity)) return bad('duration out of range', `use a value between ${l.min ?? 0} ms and ${l.max} ms`)
      return ms
    }
    case 'size': {
      const n = parseSize(raw)
      if (n === undefined) return bad('expected a byte size', 'write a number of bytes or a size such as 512KiB, 10MiB, 1GiB (0: unlimited)')
      return n
    }
    case 'stringList':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string' || typeof x === 'number')) return raw.map(String)
      return bad('expected a list of strings', 'write a YAML list, e.g. [a, b] or one "- item" per line')
    case 'issuerList': {
      if (!Array.isArray(raw)) return bad('expected a list of issuers', 'write a YAML list of mappings, each with at least issuer:')
      const fields: Record<string, 'string' | 'bool' | 'list'> = { issuer: 'string', clientId: 'string', skipClientIdCheck: 'bool', usernameClaim: 'string', groupsClaim: 'string', jwksUrl: 'string', certificate: 'string', algorithms: 'list' }
      let ok = true
      raw.forEach((item, i) => {
        const at = `${p}[${i}]`
        if (typeof item !== 'object' || item === null || Array.isArray(item)) {
          problems.push({ path: at, source: src, value: show(item), message: 'expected a mapping', remedy: 'write - issuer: https://… with optional clientId, usernameClaim, …' })
          ok = false
          return
        }
        for (const [k, v] of Object.entries(item as Record<string, unknown>)) {
          const t = fields[k]
          const good = t === 'string' ? typeof v === 'string' : t === 'bool' ? typeof v === 'boolean' : t === 'list' ? Array.isArray(v) && v.every((x) => typeof x === 'string') : false
          if (!good) {
            problems.push({ path: `${at}.${k}`, source: src, value: show(v), message: t === undefined ? 'unknown key' : `expected a ${t === 'list' ? 'list of strings' : t}`, remedy: t === undefined ? `use only: ${Object.keys(fields).join(', ')}` : 'fix the value type' })
            ok = false
          }
        }
      })
      return ok ? raw : INVALID
    }
    case 'secretMap': {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('expected a mapping of header name to value', 'write Header-Name: value, or Header-Name: {env: VAR} / {file: PATH}')
      const out: Record<string, SecretRef> = {}
      let ok = true
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        const ref = toSecretRef(v)
        if (ref === undefined) {
          problems.push({ path: `${p}.${k}`, source: src, value: '<redacted>', message: 'expected a string, {env: VAR} or {file: PATH}', remedy: 'give the value inline, or {env: NAME} to read an environment variable, or {file: PATH} to read a file' })
          ok = false
        } else out[k] = ref
      }
      return ok ? out : INVALID
    }
  }
}

function toSecretRef(v: unknown): SecretRef | undefined {
  if (typeof v === 'string') return { value: v }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const keys = Object.keys(v)
    const o = v as Record<string, unknown>
    if (keys.length === 1 && typeof o.env === 'string' && o.env !== '') return { env: o.env }
    if (keys.length === 1 && typeof o.file === 'string' && o.file !== '') return { file: o.file }
    if (keys.length === 1 && typeof o.value === 'string') return { value: o.value }
  }
  return undefined
}

function resolveSecretPaths(l: Leaf, v: unknown, file: string): unknown {
  if (l.type !== 'secretMap') return v
  const out: Record<string, SecretRef> = {}
  for (const [k, ref] of Object.entries(v as Record<string, SecretRef>)) {
    out[k] = 'file' in ref ? { file: path.resolve(path.dirname(file), ref.file) } : ref
  }
  return out
}

/** Weaviate's `Enabled`: true only for on/enabled/1/true, case-insensitive, untrimmed (W1). */
export function weaviateBool(v: string): boolean {
  const l = v.toLowerCase()
  return l === 'on' || l === 'enabled' || l === '1' || l === 'true'
}

/** gatehouse's strict boolean: anything unreadable is undefined (a problem). */
export function strictBool(v: string): boolean | undefined {
  const l = v.trim().toLowerCase()
  if (['true', '1', 'on', 'enabled', 'yes'].includes(l)) return true
  if (['false', '0', 'off', 'disabled', 'no'].includes(l)) return false
  return undefined
}

function applyEnv(env: NodeJS.ProcessEnv, cwd: string, values: Map<string, unknown>, sources: Map<string, Source>, problems: Problem[]): void {
  const bindings = [...leaves()].flatMap(([p, l]) => (l.env ?? []).map((b) => ({ p, l, b })))
  // Flags first, so that a list's readWhen sees the effective (env over YAML) flag (W2).
  bindings.sort((x, y) => Number(x.b.readWhen !== undefined) - Number(y.b.readWhen !== undefined))
  for (const { p, l, b } of bindings) {
    const raw = env[b.name]
    if (raw === undefined) continue
    if (b.readWhen !== undefined && values.get(b.readWhen) !== true) continue
    const src: Source = { kind: 'env', name: b.name }
    const bad = (message: string, remedy: string): void => {
      problems.push({ path: p, source: src, value: l.secret === true ? '<redacted>' : show(raw), message, remedy })
    }
    let v: unknown
    if (b.style === 'weaviate') {
      if (l.type === 'bool') v = weaviateBool(raw)
      else if (l.type === 'stringList') v = raw.split(',') // untrimmed, and "" gives [""] (W2)
      else v = raw
    } else {
      switch (l.type) {
        case 'bool':
          v = strictBool(raw)
          if (v === undefined) {
            bad('expected a boolean', `set ${b.name} to true or false`)
            continue
          }
          break
        case 'int': {
          const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN
          if (!Number.isInteger(n) || n < (l.min ?? -Infinity) || n > (l.max ?? Infinity)) {
            bad(`expected an integer between ${l.min} and ${l.max}`, `set ${b.name} to a whole number from ${l.min} to ${l.max}`)
            continue
          }
          v = n
          break
        }
        case 'enum':
          if (l.values?.includes(raw) !== true) {
            bad(`must be one of ${l.values?.join(', ')}`, `set ${b.name} to one of: ${l.values?.join(', ')}`)
            continue
          }
          v = raw
          break
        case 'duration':
        case 'size': {
          // The YAML rules (units, min, max), with the variable named in the problem.
          const converted = convertYaml(l, raw, p, src, problems)
          if (converted === INVALID) continue
          v = converted
          break
        }
        default:
          v = l.isPath === true && raw !== '' ? path.resolve(cwd, raw) : raw
      }
    }
    values.set(p, v)
    sources.set(p, src)
    for (const r of b.replaces ?? []) {
      values.set(r, leafAt(r)?.default)
      sources.set(r, { kind: 'derived', why: `cleared because ${b.name} is set` })
    }
  }
}

/** The leaf key of a problem path: `a.b[2]` → `a.b`, `upstream.headers.X` → `upstream.headers`. */
function baseKey(p: string): string {
  const k = p.replace(/\[\d+\].*$/, '')
  return leafAt(k) !== undefined ? k : k.split('.').slice(0, -1).join('.') || k
}

/** Assemble the nested Config from flat values. */
function build(values: Map<string, unknown>, file: string | undefined): Config {
  const root: Record<string, unknown> = { configFile: file }
  for (const [p] of leaves()) {
    const parts = p.split('.')
    let obj = root
    for (const part of parts.slice(0, -1)) {
      obj = (obj[part] ??= {}) as Record<string, unknown>
    }
    obj[parts[parts.length - 1] as string] = values.get(p)
  }
  return deepFreeze(root) as unknown as Config
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v)
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

/** Closest candidate by edit distance, for "did you mean" remedies. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestD) {
      bestD = d
      best = c
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length] as number
}

/** Render one problem as the single line `config check` and `serve` print. */
export function formatProblem(p: Problem): string {
  const where =
    p.source === undefined
      ? ''
      : p.source.kind === 'file'
        ? `${path.relative(process.cwd(), p.source.file) || p.source.file}:${p.source.line}: `
        : p.source.kind === 'env'
          ? `env ${p.source.name}: `
          : p.source.kind === 'derived'
            ? `(${p.source.why}): `
            : '(default): '
  const value = p.value === undefined ? '' : ` = ${p.value}`
  return `${where}${p.path}${value}: ${p.message}. Fix: ${p.remedy}`
}
