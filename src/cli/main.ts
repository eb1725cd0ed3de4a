/**
 * The `gatehouse` command line. Each command parses its own flags with node:util parseArgs;
 * errors print one clear line on stderr with a non-zero exit code.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { apikeyGenerate } from './apikey.ts'
import { configCheck, configPrint } from './config.ts'
import { explain } from './explain.ts'
import { UsageError } from './io.ts'
import { serve } from './serve.ts'

const USAGE = `gatehouse — an OIDC-aware reverse proxy

Usage:
  gatehouse serve [--config proxy.yaml]        run the proxy
  gatehouse config check [--config FILE]       validate; exit 0, or exit 2 listing every problem
  gatehouse config print [--config FILE]       effective config, secrets redacted, with sources
  gatehouse apikey generate [--user NAME]      print a new random key and its sha256 form
  gatehouse explain --method M --path P [--token T | --token-file F | --anonymous]
                                               show authenticator, principal, rule and decision

Every command takes --help. The configuration file defaults to $GATEHOUSE_CONFIG, else ./proxy.yaml.
`

interface Command {
  readonly usage: string
  readonly options: NonNullable<ParseArgsConfig['options']>
  readonly positionals?: boolean
  run(values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number> | number
}

const configOpt = { config: { type: 'string', short: 'c' } } as const

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: 'gatehouse serve [--config FILE]\n\nRun the proxy: the data listener (default 8443) and the admin listener (default 14000).',
    options: configOpt,
    run: (v) => serve(v.config as string | undefined),
  },
  'config check': {
    usage: 'gatehouse config check [--config FILE]\n\nValidate the configuration (file + environment). Exit 0 when valid, 2 listing every problem.',
    options: configOpt,
    run: (v) => configCheck(v.config as string | undefined),
  },
  'config print': {
    usage: 'gatehouse config print [--config FILE] [--json]\n\nPrint the effective configuration with the source of every value; secrets are redacted.',
    options: { ...configOpt, json: { type: 'boolean' } },
    run: (v) => configPrint(v.config as string | undefined, v.json === true),
  },
  'apikey generate': {
    usage: 'gatehouse apikey generate [--user NAME] [--json]\n\nPrint a new random API key and its sha256: form (store the sha256 form in the config).',
    options: { user: { type: 'string', short: 'u' }, json: { type: 'boolean' } },
    run: (v) => apikeyGenerate(v.user as string | undefined, v.json === true),
  },
  explain: {
    usage:
      'gatehouse explain --method M --path P [--token T | --token-file F | --anonymous] [--header "Name: value"]... [--config FILE] [--json]\n\n' +
      'Show which authenticator, principal, rule and decision a request would get. No upstream call is made.\n' +
      'Prefer --token-file (or --token-file - for stdin) so the token stays out of your shell history.',
    options: {
      ...configOpt,
      method: { type: 'string', short: 'X' },
      path: { type: 'string', short: 'p' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      anonymous: { type: 'boolean' },
      header: { type: 'string', short: 'H', multiple: true },
      json: { type: 'boolean' },
    },
    run: (v) => explain(v),
  },
}

/** Run the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  if (argv[0] === '--version' || argv[0] === '-v') {
    process.stdout.write(`${await version()}\n`)
    return 0
  }
  const two = `${argv[0]} ${argv[1] ?? ''}`
  const name = COMMANDS[two] !== undefined ? two : argv[0] as string
  const cmd = COMMANDS[name]
  if (cmd === undefined) {
    const group = Object.keys(COMMANDS).filter((k) => k.startsWith(`${argv[0]} `))
    process.stderr.write(group.length > 0 ? `gatehouse: '${two.trim()}' is not a command; try: ${group.map((g) => `gatehouse ${g}`).join(', ')}\n` : `gatehouse: unknown command '${argv[0]}'; run gatehouse --help\n`)
    return 2
  }
  const rest = argv.slice(name.split(' ').length)
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`)
    return 0
  }
  try {
    const { values, positionals } = parseArgs({ args: rest, options: cmd.options, allowPositionals: cmd.positionals === true, strict: true })
    return await cmd.run(values as Record<string, string | boolean | string[] | undefined>, positionals)
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.stderr.write(`gatehouse ${name}: ${msg}; see gatehouse ${name} --help\n`)
      return 2
    }
    process.stderr.write(`gatehouse ${name}: ${msg}\n`)
    return 1
  }
}

async function version(): Promise<string> {
  const { readFileSync } = await import('node:fs')
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}
