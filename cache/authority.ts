/**
 * The authority a request names (Host, or the authority of an absolute-form
 * target), validated and normalised once, so the cache key and the Host the
 * origin sees are the same string.
 *
 * The primary key is host + target (vary.ts). A Host field the cache took as
 * it came could carry a path (`Host: site/cacheable`), and `site/cacheable` +
 * `/victim` is the key of `/cacheable/victim`: one anonymous request would
 * replace any page with the origin's answer for another. So the field must
 * match the RFC 3986 §3.2.2/§3.2.3 host and port grammar that RFC 9110 §7.2
 * refers to, or the request is a 400 (RFC 9112 §3.2: "a server MUST respond
 * with a 400 ... to any request message that ... contains a Host header
 * field with an invalid field value").
 */
import net from 'node:net'

/** RFC 3986 §2.3 unreserved, §2.2 sub-delims; `%` starts a pct-encoded triplet (checked below). */
const REG_NAME = /^(?:[a-z0-9\-._~!$&'()*+,;=]|%[0-9a-f]{2})*$/
const PORT = /^[0-9]*$/

/**
 * The normalised form of a Host value, or null when it is not a valid
 * `uri-host [ ":" port ]`. Normalisation (RFC 3986 §6.2.2.1, §6.2.3; RFC 9110
 * §4.2.3): lower case; one trailing dot of a domain name dropped (the same
 * name, fully qualified); the scheme's default port and an empty port dropped.
 * The empty string (no authority: HTTP/1.0 without Host) stays empty.
 */
export function normalizeAuthority (value: string, defaultPort = 80): string | null {
  // Nearly every request of a site names the same authority: the last answer is kept.
  if (value === last.value && defaultPort === last.defaultPort) return last.result
  const result = normalize(value, defaultPort)
  last.value = value
  last.defaultPort = defaultPort
  last.result = result
  return result
}

const last: { value: string, defaultPort: number, result: string | null } = { value: '', defaultPort: 80, result: '' }

function normalize (value: string, defaultPort: number): string | null {
  if (value === '') return ''
  const v = value.toLowerCase()
  let host: string
  let port: string
  if (v.charCodeAt(0) === 91 /* [ */) {
    // IP-literal: only IPv6 here (IPvFuture names nothing an origin serves).
    const close = v.indexOf(']')
    if (close === -1) return null
    const inner = v.slice(1, close)
    if (!net.isIPv6(inner) || inner.includes('%')) return null
    host = v.slice(0, close + 1)
    const rest = v.slice(close + 1)
    if (rest === '') port = ''
    else if (rest.charCodeAt(0) === 58 /* : */) port = rest.slice(1)
    else return null
  } else {
    const colon = v.lastIndexOf(':')
    host = colon === -1 ? v : v.slice(0, colon)
    port = colon === -1 ? '' : v.slice(colon + 1)
    if (host === '' || !REG_NAME.test(host)) return null
    // A second colon outside brackets is not host:port.
    if (host.includes(':')) return null
    if (host.endsWith('.')) host = host.slice(0, -1)
    if (host === '' || host.endsWith('.')) return null
  }
  if (!PORT.test(port)) return null
  if (port !== '') {
    const n = Number(port)
    if (n > 65535) return null
    if (n === defaultPort) return host
    return `${host}:${n}`
  }
  return host
}
