/** `gatehouse apikey generate`: a new random key and its sha256 form. */
import { generateApiKey, sha256Form } from '../config/keys.ts'

/** Print a new key. The key is printed once, on stdout only; store its sha256 form. */
export function apikeyGenerate(user: string | undefined, json: boolean): number {
  const key = generateApiKey()
  const hash = sha256Form(key)
  if (json) {
    process.stdout.write(`${JSON.stringify({ key, sha256: hash, ...(user === undefined ? {} : { user }) })}\n`)
    return 0
  }
  const u = user ?? 'NAME'
  process.stdout.write(
    `key:    ${key}\n` +
      `sha256: ${hash}\n\n` +
      `Give the key to the client (Authorization: Bearer <key>). Configure gatehouse with the sha256 form, e.g.\n` +
      `  proxy.yaml:  authentication.apikey.allowedKeys: ["${hash}"]  and  users: ["${u}"]\n` +
      `  or env:      AUTHENTICATION_APIKEY_ALLOWED_KEYS=${hash} AUTHENTICATION_APIKEY_USERS=${u}\n`,
  )
  return 0
}
