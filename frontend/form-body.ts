/**
 * The urlencoded body parser of the frontend's forms (replaces
 * @fastify/formbody, whose parser keeps `%FF%FE` as the literal text
 * "%FF%FE" and turns raw non-UTF-8 bytes into U+FFFD without a word).
 *
 * Every name and value is percent-decoded as the URL Standard's
 * application/x-www-form-urlencoded parser does (`+` is a space), then must
 * be valid UTF-8 with no character that no stored text may hold
 * (common/text.ts). A value that is not becomes an `InvalidFormValue`: the
 * form is shown again with a message beside that field (forms.ts), so the
 * visitor learns which field, and nothing reaches the backend. A repeated
 * field becomes an array, which forms.ts refuses as before.
 */
import fp from 'fastify-plugin'
import { textProblem } from '../common/text.js'

export class InvalidFormValue {
  /** What the visitor sent, made displayable (bad bytes and characters as U+FFFD). */
  readonly shown: string
  /** Follows the field's label: "… is not valid UTF-8 text". */
  readonly problem: string
  constructor (shown: string, problem: string) {
    this.shown = shown
    this.problem = problem
  }
}

export type FormValue = string | InvalidFormValue | Array<string | InvalidFormValue>

const lenient = new TextDecoder('utf-8')

/** Percent-decodes one name or value given as bytes in a latin1 string (one char per byte). */
export function decodeFormComponent (bytes: string): string | InvalidFormValue {
  let s = bytes.includes('+') ? bytes.replace(/\+/g, ' ') : bytes
  // Raw bytes above ASCII (browsers never send them, but a client may) get
  // the same UTF-8 check as percent-encoded ones.
  if (/[^\x00-\x7f]/.test(s)) s = s.replace(/[\x80-\xff]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
  let value: string
  try {
    value = s.includes('%') ? decodeURIComponent(s) : s
  } catch {
    // A `%` not followed by two hex digits, or bytes that are not UTF-8.
    return new InvalidFormValue(shown(s), 'is not valid UTF-8 text (it contains bytes that are not characters)')
  }
  const problem = textProblem(value)
  return problem ? new InvalidFormValue(shown(s), problem) : value
}

function shown (s: string): string {
  const bytes: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 37 && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) { bytes.push(Number.parseInt(s.slice(i + 1, i + 3), 16)); i += 2 } else bytes.push(c & 0xff)
  }
  return lenient.decode(Uint8Array.from(bytes)).replace(/[\u0000\u0080-\u009f]/g, '\ufffd')
}

/** Parses a whole body; names that cannot be decoded are kept as `(unreadable)` so forms.ts reports an unknown field. */
export function parseFormBody (body: Buffer): Record<string, FormValue> {
  const fields: Record<string, FormValue> = Object.create(null)
  for (const part of body.toString('latin1').split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const rawName = decodeFormComponent(eq === -1 ? part : part.slice(0, eq))
    const name = typeof rawName === 'string' ? rawName : '(unreadable)'
    const value = decodeFormComponent(eq === -1 ? '' : part.slice(eq + 1))
    const previous = fields[name]
    if (previous === undefined) fields[name] = value
    else fields[name] = Array.isArray(previous) ? [...previous, value] : [previous, value]
  }
  return fields
}

export const formBodyPlugin = fp(async function formBodyPlugin (app, opts: { bodyLimit: number }) {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer', bodyLimit: opts.bodyLimit }, (_request, body, done) => {
    done(null, parseFormBody(body as Buffer))
  })
}, { name: 'flashcrowd-form-body', fastify: '5.x' })
