/**
 * node's HTTP parser does not know the BAN method, so a BAN reaches app.ts as
 * a parse error carrying its raw bytes; this reads that head, strictly.
 */

const TOKEN_CHARS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** RFC 9110 §5.6.3 OWS: spaces and tabs. */
function isOws (code: number): boolean { return code === 32 || code === 9 }

export type RawHead = { ok: true, target: string, headers: Record<string, string> } | { ok: false, status: 400, message: string }

/**
 * Parses the head of a raw BAN request (node's parser does not know the
 * method, so app.ts gets the bytes). Strict RFC 9112 §2.2/§5: CRLF only, no
 * obs-fold, token names, one line per field; the caller authenticates
 * before anything else (the Ban-Url expression) is looked at.
 *
 * Every step is one linear scan (indexOf, a single anchored character class,
 * manual trimming): this runs before authentication, so a backtracking regex
 * here (like `[^\r\n]*?[ \t]*$`, quadratic on a long run of spaces) would
 * let anyone burn CPU with one header line.
 */
export function parseRawBanHead (text: string, maxBytes: number): RawHead {
  const bad = (message = 'malformed request\n'): RawHead => ({ ok: false, status: 400, message })
  const end = text.indexOf('\r\n\r\n')
  if (end === -1 || end > maxBytes) return bad()
  const lines = text.slice(0, end).split('\r\n')
  const first = lines[0]
  // request-line = method SP request-target SP HTTP-version (RFC 9112 §3); origin-form only.
  const sp = first.indexOf(' ', 4)
  if (!first.startsWith('BAN /') || sp === -1) return bad()
  const target = first.slice(4, sp)
  const version = first.slice(sp + 1)
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return bad()
  for (let i = 0; i < target.length; i++) if (target.charCodeAt(i) <= 32 || target.charCodeAt(i) === 127) return bad()
  // No prototype: a field named `constructor` or `__proto__` is just a field.
  const headers: Record<string, string> = Object.create(null)
  for (let l = 1; l < lines.length; l++) {
    const line = lines[l]
    // A bare CR or LF inside a line is a framing attack, not a separator (RFC 9112 §2.2).
    if (line.includes('\n') || line.includes('\r')) return bad()
    const colon = line.indexOf(':')
    if (colon <= 0) return bad()
    const rawName = line.slice(0, colon)
    // Also rejects obs-fold (a line starting with SP/HTAB, RFC 9112 §5.2) and space before the colon (§5.1).
    if (!TOKEN_CHARS.test(rawName)) return bad()
    let a = colon + 1
    let b = line.length
    while (a < b && isOws(line.charCodeAt(a))) a++
    while (b > a && isOws(line.charCodeAt(b - 1))) b--
    const name = rawName.toLowerCase()
    if (name in headers) return bad(`duplicate ${name}\n`)
    headers[name] = line.slice(a, b)
  }
  return { ok: true, target, headers }
}
