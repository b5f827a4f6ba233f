/**
 * The response fields freshness is computed from, checked against their
 * grammar before http-cache-semantics sees them. The library is lenient where
 * RFC 9111 is strict (it reads `Expires` with Date.parse, `Age` with
 * parseInt, directive names case-sensitively), and every leniency there is a
 * page served longer than its origin allowed.
 */

/** RFC 9111 §5.2: "Cache directives are identified by a token, to be compared case-insensitively". */
export interface Directives extends Map<string, string | true> {}

export function parseCacheControl (value: string | undefined): Directives {
  const out: Directives = new Map()
  if (!value) return out
  for (const part of value.split(',')) {
    const eq = part.indexOf('=')
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase()
    if (!name) continue
    const raw = eq === -1 ? true : part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1')
    if (!out.has(name)) out.set(name, raw) // RFC 9111 §4.2.1: the first occurrence wins for duplicates
  }
  return out
}

const DELTA_SECONDS = /^[0-9]+$/
/** RFC 9111 §1.2.2: a delta-seconds beyond 2^31 is taken as 2^31. */
const MAX_DELTA = 2147483648

/** RFC 9111 §1.2.2 delta-seconds, or undefined when the value is not 1*DIGIT. */
export function deltaSeconds (v: string | true | undefined): number | undefined {
  if (typeof v !== 'string' || !DELTA_SECONDS.test(v)) return undefined
  const n = Number(v)
  return n > MAX_DELTA ? MAX_DELTA : n
}

/** Directives whose argument is a delta-seconds; an invalid one makes the response stale (RFC 9111 §4.2.1). */
const DELTA_DIRECTIVES = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])

/** Cache-Control written back with lower-case names, first occurrences only, and invalid lifetimes as 0. */
export function canonicalCacheControl (value: string): string {
  const parts: string[] = []
  for (const [name, v] of parseCacheControl(value)) {
    if (DELTA_DIRECTIVES.has(name)) {
      // `max-age=60.5`, `max-age=abc`: not a lifetime; read as "already stale", never as 60.
      const n = deltaSeconds(v)
      parts.push(`${name}=${n ?? 0}`)
      continue
    }
    parts.push(v === true ? name : `${name}=${v}`)
  }
  return parts.join(', ')
}

const DAY = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].join('|')
const DAY_L = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'].join('|')
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const MONTH = MONTHS.join('|')
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})'
// RFC 9110 §5.6.7, case-sensitive, single spaces, two-digit fields exactly.
const IMF_FIXDATE = new RegExp(`^(?:${DAY}), (\\d{2}) (${MONTH}) (\\d{4}) ${TIME} GMT$`)
const RFC850 = new RegExp(`^(?:${DAY_L}), (\\d{2})-(${MONTH})-(\\d{2}) ${TIME} GMT$`)
const ASCTIME = new RegExp(`^(?:${DAY}) (${MONTH}) (\\d{2}| \\d) ${TIME} (\\d{4})$`)

function utc (year: number, month: string, day: number, h: number, m: number, s: number): number {
  const mon = MONTHS.indexOf(month)
  if (h > 23 || m > 59 || s > 60 || day < 1) return NaN
  const t = Date.UTC(year, mon, day, h, m, s === 60 ? 59 : s)
  // Rejects 31 Feb and the like (Date.UTC would roll them over).
  if (new Date(t).getUTCDate() !== day) return NaN
  return t
}

/**
 * RFC 9110 §5.6.7 HTTP-date in any of its three formats, as a time in ms; NaN
 * for anything else (`... UTC`, no comma, double spaces, dashes in an
 * IMF-fixdate, a one-digit hour), which RFC 9111 §5.3 says to read as "in
 * the past".
 */
export function parseHttpDate (value: string, now: number = Date.now()): number {
  let m = IMF_FIXDATE.exec(value)
  if (m) return utc(Number(m[3]), m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  m = RFC850.exec(value)
  if (m) {
    // §5.6.7: a two-digit year more than 50 years in the future is in the past century.
    const yy = Number(m[3])
    const thisYear = new Date(now).getUTCFullYear()
    let year = thisYear - (thisYear % 100) + yy
    if (year > thisYear + 50) year -= 100
    return utc(year, m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  }
  m = ASCTIME.exec(value)
  if (m) return utc(Number(m[6]), m[1], Number(m[2].trim()), Number(m[3]), Number(m[4]), Number(m[5]))
  return NaN
}

/** The Unix epoch as an IMF-fixdate: "already expired" for any response. */
export const EXPIRED = 'Thu, 01 Jan 1970 00:00:00 GMT'

// ---- RFC 8941 structured-field dictionaries (RFC 9213 CDN-Cache-Control) ----

type Bare = number | string | boolean | { token: string }

/** A strict RFC 8941 §4.2 parser for dictionaries; null when the field is invalid (and must then be ignored). */
export function parseSfDictionary (input: string): Map<string, Bare | Bare[]> | null {
  const s = input.replace(/^ +| +$/g, '')
  let i = 0
  const out = new Map<string, Bare | Bare[]>()
  const KEY_START = /[a-z*]/
  const KEY_CHAR = /[a-z0-9_\-.*]/
  const key = (): string | null => {
    if (i >= s.length || !KEY_START.test(s[i])) return null
    const start = i
    while (i < s.length && KEY_CHAR.test(s[i])) i++
    return s.slice(start, i)
  }
  const bare = (): Bare | null => {
    const c = s[i]
    if (c === '-' || (c >= '0' && c <= '9')) {
      const m = /^-?(\d{1,15})(\.\d{1,3})?/.exec(s.slice(i))
      if (!m) return null
      if (m[2] !== undefined && m[1].length > 12) return null
      i += m[0].length
      if (s[i] === '.' || (s[i] >= '0' && s[i] <= '9')) return null
      return Number(m[0])
    }
    if (c === '"') {
      let v = ''
      i++
      while (i < s.length) {
        const ch = s[i++]
        if (ch === '\\') {
          const n = s[i++]
          if (n !== '"' && n !== '\\') return null
          v += n
        } else if (ch === '"') {
          return v
        } else {
          const code = ch.charCodeAt(0)
          if (code < 0x20 || code > 0x7e) return null
          v += ch
        }
      }
      return null
    }
    if (c === '?') {
      if (s[i + 1] === '0' || s[i + 1] === '1') { i += 2; return s[i - 1] === '1' }
      return null
    }
    if (c === ':') {
      const end = s.indexOf(':', i + 1)
      if (end === -1 || !/^[A-Za-z0-9+/=]*$/.test(s.slice(i + 1, end))) return null
      const v = s.slice(i + 1, end)
      i = end + 1
      return v
    }
    if (c !== undefined && /[A-Za-z*]/.test(c)) {
      const start = i
      while (i < s.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/.test(s[i])) i++
      return { token: s.slice(start, i) }
    }
    return null
  }
  const params = (): boolean => {
    while (s[i] === ';') {
      i++
      while (s[i] === ' ') i++
      if (key() === null) return false
      if (s[i] === '=') { i++; if (bare() === null) return false }
    }
    return true
  }
  const item = (): Bare | null => {
    const v = bare()
    if (v === null || !params()) return null
    return v
  }
  if (s === '') return out
  for (;;) {
    const k = key()
    if (k === null) return null
    let value: Bare | Bare[] = true
    if (s[i] === '=') {
      i++
      if (s[i] === '(') {
        i++
        const list: Bare[] = []
        for (;;) {
          while (s[i] === ' ') i++
          if (s[i] === ')') { i++; break }
          const v = item()
          if (v === null) return null
          list.push(v)
          if (s[i] !== ' ' && s[i] !== ')') return null
        }
        if (!params()) return null
        value = list
      } else {
        const v = item()
        if (v === null) return null
        value = v
      }
    } else if (!params()) {
      return null
    }
    out.set(k, value) // RFC 8941 §4.2.2: a later duplicate overwrites
    while (s[i] === ' ' || s[i] === '\t') i++
    if (i >= s.length) return out
    if (s[i] !== ',') return null
    i++
    while (s[i] === ' ' || s[i] === '\t') i++
    if (i >= s.length) return null // trailing comma
  }
}

/**
 * RFC 9213 §2.1/§2.2: CDN-Cache-Control as Cache-Control text, or undefined
 * when the field is invalid (then it is ignored: "process as if it were not
 * present"). Members of an unexpected type are dropped one by one.
 */
export function targetedCacheControl (value: string): string | undefined {
  const dict = parseSfDictionary(value)
  if (dict === null) return undefined
  const parts: string[] = []
  for (const [name, v] of dict) {
    if (DELTA_DIRECTIVES.has(name)) {
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0) parts.push(`${name}=${v}`)
      continue
    }
    if (v === true) parts.push(name)
    else if (typeof v === 'string') parts.push(`${name}="${v}"`)
  }
  return parts.join(', ')
}
