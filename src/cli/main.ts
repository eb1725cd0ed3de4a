/**
 * The `gatehouse` command line. Each command parses its own flags with node:util parseArgs;
 * errors print one clear line on stderr with a non-zero exit code.
 *
 * Start-up time is part of the interface (scripts call the CLI in loops; docs/benchmarks.md,
 * "CLI start-up"): a command loads only its own modules. The modules of serve, config, apikey
 * and explain are loaded when their command runs, so the admin commands do not pay for the
 * server, YAML and configuration code; the admin commands' table (user, security: HTTP, TLS,
 * readline) is loaded only for `user …` and `security …`, so the local commands and --help do
 * not pay for it either.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'

const USAGE = `gatehouse — an OIDC-aware reverse proxy

Usage:
  gatehouse serve [--config FILE]              run the proxy
  gatehouse config check [--config FILE]       validate; exit 0, or exit 2 listing every problem
  gatehouse config print [--config FILE]       effective config, secrets redacted, with sources
  gatehouse apikey generate [--user NAME]      print a new random key and its sha256 form
  gatehouse explain --method M --path P [--token T | --token-file F | --anonymous]
                                               show authenticator, principal, rule and decision
  gatehouse store migrate --from file:DIR --to redis://HOST:PORT [--dry-run] [--force]
                                               copy a single replica's state into a shared store

Weka-style administration (talks to the admin API; see docs/api.md):
  gatehouse user login [USERNAME] [PASSWORD] [--org ORG] [--path FILE]
                                               log in; writes ~/.gatehouse/auth-token.json (0600)
  gatehouse user whoami
  gatehouse user add USERNAME --role admin|readonly|regular [--password P]
  gatehouse user list | delete USERNAME
  gatehouse user update USERNAME --role admin|readonly|regular
  gatehouse user passwd [NEW_PASSWORD] [--username U] [--current-password P]
  gatehouse user generate-token [--access-token-timeout 30d] [--json]
  gatehouse user revoke-tokens USERNAME
  gatehouse user ldap setup | setup-ad | show | update | enable | disable | reset   (directory users; --help on each)
  gatehouse security lockout-config show | set [--failed-attempts N] [--lockout-duration D] | reset
  gatehouse security login-banner show | set TEXT | reset | enable | disable
  gatehouse security tls status | set --certificate FILE --private-key FILE | unset
  gatehouse security ca-cert status | set --cert-file FILE | unset
  gatehouse security signing-key status | rotate [--revoke-previous]
These take --host URL (or $GATEHOUSE_HOST; default https://localhost:14000), --ca FILE (or
$GATEHOUSE_CA_FILE; else $GATEHOUSE_STATE_DIR/tls/self-signed.crt and served.crt when readable;
else the system CAs) and --path FILE (the token file; or $GATEHOUSE_TOKEN_FILE). The access token
is refreshed transparently when it expires.

Every command takes --help. The configuration file is --config FILE, else $GATEHOUSE_CONFIG; without
either no file is read (defaults and environment only; ./proxy.yaml is not picked up by itself).
`

interface Command {
  readonly usage: string
  readonly options: NonNullable<ParseArgsConfig['options']>
  readonly positionals?: boolean
  run(values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number> | number
}

const configOpt = { config: { type: 'string', short: 'c' } } as const

const LOCAL_COMMANDS: Record<string, Command> = {
  serve: {
    usage: 'gatehouse serve [--config FILE]\n\nRun the proxy: the data listener (default 8443) and the admin listener (default 14000).',
    options: configOpt,
    run: async (v) => (await import('./serve.ts')).serve(v.config as string | undefined),
  },
  'config check': {
    usage: 'gatehouse config check [--config FILE]\n\nValidate the configuration (file + environment). Exit 0 when valid, 2 listing every problem.',
    options: configOpt,
    run: async (v) => (await import('./config.ts')).configCheck(v.config as string | undefined),
  },
  'config print': {
    usage: 'gatehouse config print [--config FILE] [--json]\n\nPrint the effective configuration with the source of every value; secrets are redacted.',
    options: { ...configOpt, json: { type: 'boolean' } },
    run: async (v) => (await import('./config.ts')).configPrint(v.config as string | undefined, v.json === true),
  },
  'apikey generate': {
    usage: 'gatehouse apikey generate [--user NAME] [--json]\n\nPrint a new random API key and its sha256: form (store the sha256 form in the config).',
    options: { user: { type: 'string', short: 'u' }, json: { type: 'boolean' } },
    run: async (v) => (await import('./apikey.ts')).apikeyGenerate(v.user as string | undefined, v.json === true),
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
    run: async (v) => (await import('./explain.ts')).explain(v),
  },
  'store migrate': {
    usage:
      'gatehouse store migrate --from file:DIR --to redis://HOST:PORT|rediss://HOST:PORT [--ca-file F] [--username U] [--password-file F] [--key-prefix P] [--dry-run] [--force] [--json] [--config FILE]\n\n' +
      'Copy the state of one gatehouse on the file store (users, refresh tokens, revocations, lockout, sessions, settings,\n' +
      "the local issuer's signing key) into a shared Redis/Valkey store, so that tokens issued before keep working on every\n" +
      'replica. Stop the single replica first. Everything is read and validated before one transaction writes it; a target\n' +
      'that is not empty is refused unless --force (which replaces it). --dry-run lists what would be copied and writes nothing.\n' +
      '--from defaults to file:<stateDir>, --to to store.url; the password comes from GATEHOUSE_STORE_PASSWORD or --password-file\n' +
      '(store.password / store.passwordFile), never from a flag. See docs/replicas.md.',
    options: {
      ...configOpt,
      from: { type: 'string' },
      to: { type: 'string' },
      'ca-file': { type: 'string' },
      username: { type: 'string' },
      'password-file': { type: 'string' },
      'key-prefix': { type: 'string' },
      'dry-run': { type: 'boolean' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    run: async (v) => (await import('./store.ts')).storeMigrate(v),
  },
}

/** The command table for `argv[0]`, and how its errors are redacted. */
async function commandsFor(first: string | undefined): Promise<{ commands: Record<string, Command>; redact: (text: string) => string }> {
  if (first !== 'user' && first !== 'security') return { commands: LOCAL_COMMANDS, redact: (t) => t }
  const [{ USER_COMMANDS }, { SECURITY_COMMANDS }, { LDAP_COMMANDS }, { redactSecrets }] = await Promise.all([import('./user.ts'), import('./security.ts'), import('./ldap.ts'), import('./adminClient.ts')])
  return { commands: { ...LOCAL_COMMANDS, ...USER_COMMANDS, ...LDAP_COMMANDS, ...SECURITY_COMMANDS }, redact: redactSecrets }
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
  const { commands, redact } = await commandsFor(argv[0])
  // Commands are one to three words ('serve', 'user login', 'security tls set'): longest match wins.
  const name = [3, 2, 1].map((n) => argv.slice(0, n).join(' ')).find((k) => commands[k] !== undefined) ?? (argv[0] as string)
  const cmd = commands[name]
  if (cmd === undefined) {
    // A group ('user', 'security tls'): list its commands (exit 0 for --help, else 2).
    const prefix = [2, 1].map((n) => argv.slice(0, n).filter((a) => !a.startsWith('-')).join(' ')).find((p) => p !== '' && Object.keys(commands).some((k) => k.startsWith(`${p} `)))
    if (prefix === undefined) {
      process.stderr.write(`gatehouse: unknown command '${argv[0]}'; run gatehouse --help\n`)
      return 2
    }
    const group = Object.keys(commands).filter((k) => k.startsWith(`${prefix} `))
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(`Commands of gatehouse ${prefix} (each takes --help):\n${group.map((g) => `  ${commands[g]?.usage.split('\n')[0] ?? `gatehouse ${g}`}\n`).join('')}`)
      return 0
    }
    const typed = argv.slice(0, prefix.split(' ').length + 1).join(' ')
    process.stderr.write(`gatehouse: '${typed}' is not a command; try: ${group.map((g) => `gatehouse ${g}`).join(', ')}\n`)
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
    // Tokens and passwords the admin commands handled never reach the terminal.
    const msg = redact(e instanceof Error ? e.message : String(e))
    if ((e instanceof Error && e.name === 'UsageError') || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
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
