/**
 * Escaping for values put into LDAP filters and DNs. Every user-supplied value that reaches the
 * directory goes through one of these, so `*`, `)(uid=*`, `\00` or `admin)(|(uid=*` is matched
 * as the literal text it is and can never change the filter's structure (LDAP injection).
 */

/**
 * RFC 4515 §3: in an assertion value, `*`, `(`, `)`, `\` and NUL must be written as `\XX`.
 * Every byte outside printable ASCII is escaped as well (its UTF-8 bytes), so nothing a server
 * might normalise differently survives raw.
 */
export function escapeFilterValue(value: string): string {
  let out = ''
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x20 || byte > 0x7e || ch === '*' || ch === '(' || ch === ')' || ch === '\\' ? `\\${byte.toString(16).padStart(2, '0')}` : ch
  }
  return out
}

/**
 * RFC 4514 §2.4: an attribute value inside a DN. `"`, `+`, `,`, `;`, `<`, `>` and `\` are
 * escaped with a backslash, as are a leading space or `#` and a trailing space; NUL and other
 * control bytes are written as `\XX`.
 */
export function escapeDnValue(value: string): string {
  let out = ''
  const bytes = Buffer.from(value, 'utf8')
  bytes.forEach((byte, i) => {
    const ch = String.fromCharCode(byte)
    if (byte < 0x20 || byte === 0x7f) out += `\\${byte.toString(16).padStart(2, '0')}`
    else if ('"+,;<>\\='.includes(ch) || (i === 0 && (ch === ' ' || ch === '#')) || (i === bytes.length - 1 && ch === ' ')) out += `\\${ch}`
    else out += ch
  })
  // Multi-byte UTF-8 was appended byte by byte above as Latin-1 code units: rebuild it.
  return Buffer.from(out, 'latin1').toString('utf8')
}

/**
 * The value of the first RDN of a DN when its attribute is `attribute` (case-insensitive), with
 * RFC 4514 escapes undone; undefined otherwise. `cn=Admins\, EU,ou=groups,…` → `Admins, EU`.
 */
export function firstRdnValue(dn: string, attribute: string): string | undefined {
  const eq = dn.indexOf('=')
  if (eq < 0 || dn.slice(0, eq).trim().toLowerCase() !== attribute.toLowerCase()) return undefined
  const bytes: number[] = []
  for (let i = eq + 1; i < dn.length; i++) {
    const ch = dn[i] as string
    if (ch === ',' || ch === '+') break
    if (ch === '\\') {
      const hex = dn.slice(i + 1, i + 3)
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16))
        i += 2
      } else if (i + 1 < dn.length) {
        bytes.push(...Buffer.from(dn[i + 1] as string, 'utf8'))
        i += 1
      }
      continue
    }
    bytes.push(...Buffer.from(ch, 'utf8'))
  }
  return Buffer.from(bytes).toString('utf8').trim()
}
