/**
 * The cache's one strict request-head parser, for the heads it reads itself
 * rather than through node's parser: the hit front's (hit-front.ts) and a
 * BAN's (node's parser does not know the method; app.ts). One set of rules on
 * a smuggling surface (RFC 9112 §2.2, §3, §5): CRLF only, a request line of
 * method SP origin-form SP version, token field names with no whitespace
 * before the colon and no obs-fold, field values of VCHAR, SP and HTAB only,
 * one line per field name. The methods and versions accepted are the
 * caller's.
 *
 * Linear in the head's length: one pass of char-code checks per line, no
 * regular expression (this runs before authentication, so a backtracking
 * pattern would let anyone burn CPU with one long line).
 */

export interface HeadRules<M extends string> {
  /** Methods accepted, exactly as written (case-sensitive, RFC 9110 §9.1). */
  methods: readonly M[]
  versions: readonly string[]
  /** Most fields; more is a failure. */
  maxFields: number
  maxUrlBytes: number
  /** Longest head, up to its blank line. */
  maxHeadBytes: number
  /** Lower-case field names whose presence fails the parse. */
  refused?: ReadonlySet<string>
}

export interface StrictHead<M extends string> {
  method: M
  /** The origin-form target as sent. */
  url: string
  version: string
  /** Field values by lower-case name (a plain object: a name that collides with one of its members is refused as a duplicate). */
  headers: Record<string, string>
}

/** The parsed head, or why it was refused (a message for a 400). */
export type HeadParse<M extends string> = StrictHead<M> | string

/** RFC 9110 §5.6.2 token characters, as a table by char code. */
const TCHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1

export function isToken (s: string, from: number, to: number): boolean {
  if (from >= to) return false
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c > 127 || TCHAR[c] === 0) return false
  }
  return true
}

/** RFC 9110 §5.5 field-value characters, VCHAR SP HTAB (no obs-text, no CR, LF or NUL). */
function isFieldValue (s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if ((c < 0x20 && c !== 9) || c > 0x7e) return false
  }
  return true
}

/** RFC 9112 §3.2.1 origin-form, printable ASCII only. */
function isOriginForm (s: string, from: number, to: number): boolean {
  if (to <= from || s.charCodeAt(from) !== 47 /* / */) return false
  for (let i = from + 1; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

const BAD = 'malformed request\n'

/**
 * Parses the head at the start of `text` (latin1), up to its first blank
 * line; what follows is not looked at. A failure is the reason, as a string.
 */
export function parseStrictHead<M extends string> (text: string, rules: HeadRules<M>): HeadParse<M> {
  const headEnd = text.indexOf('\r\n\r\n')
  if (headEnd === -1 || headEnd > rules.maxHeadBytes) return BAD
  const lineEnd = text.indexOf('\r\n')
  const sp1 = text.indexOf(' ')
  if (sp1 <= 0 || sp1 > lineEnd) return BAD
  let method: M | undefined
  for (const m of rules.methods) if (m.length === sp1 && text.startsWith(m)) method = m
  if (method === undefined) return BAD
  const sp2 = text.indexOf(' ', sp1 + 1)
  if (sp2 === -1 || sp2 > lineEnd) return BAD
  if (sp2 - sp1 - 1 > rules.maxUrlBytes || !isOriginForm(text, sp1 + 1, sp2)) return BAD
  const version = text.slice(sp2 + 1, lineEnd)
  if (!rules.versions.includes(version)) return BAD
  const headers: Record<string, string> = {}
  let fields = 0
  let at = lineEnd + 2
  const end = headEnd + 2 // past the last field line's CRLF
  while (at < end) {
    const next = text.indexOf('\r\n', at)
    const colon = text.indexOf(':', at)
    // A name ending in whitespace, obs-fold (a line starting with SP/HTAB), a line without a colon: not a token.
    if (colon === -1 || colon > next || !isToken(text, at, colon)) return BAD
    let from = colon + 1
    let to = next
    while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++
    while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--
    // A bare CR or LF inside a line is a framing attack, not a separator.
    if (!isFieldValue(text, from, to)) return BAD
    const name = text.slice(at, colon).toLowerCase()
    at = next + 2
    if (rules.refused?.has(name) === true) return `${name} not accepted here\n`
    if (headers[name] !== undefined) return `duplicate ${name}\n`
    if (++fields > rules.maxFields) return 'too many header fields\n'
    headers[name] = text.slice(from, to)
  }
  return { method, url: text.slice(sp1 + 1, sp2), version, headers }
}
