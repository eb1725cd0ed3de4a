/** A usage error: printed as one line with a pointer to --help, exit 2. Kept in its own module so every command can use it without loading the configuration code. */
export class UsageError extends Error {
  override name = 'UsageError'
}
