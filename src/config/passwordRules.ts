/**
 * Weka's password rules and the length cap. Plain data and one pure check, kept under `config/`
 * because validation (the initial admin password) and the issuer both need them.
 */

/** Longest password accepted: scrypt cost does not depend on length, but parsing and transport do. */
export const MAX_PASSWORD_LENGTH = 128

/**
 * The first rule `password` breaks, as a message naming it; undefined when it is acceptable.
 * Weka: at least 8 characters, an uppercase letter, a lowercase letter, a number or a special character.
 */
export function passwordProblem(password: string): string | undefined {
  if (password.length < 8) return 'password must be at least 8 characters long'
  if (password.length > MAX_PASSWORD_LENGTH) return `password must be at most ${MAX_PASSWORD_LENGTH} characters long`
  if (!/\p{Lu}/u.test(password)) return 'password must contain an uppercase letter'
  if (!/\p{Ll}/u.test(password)) return 'password must contain a lowercase letter'
  if (!/[^\p{L}]/u.test(password)) return 'password must contain a number or a special character'
  return undefined
}
