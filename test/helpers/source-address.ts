/**
 * HTTP requests from a chosen loopback source address (the socket's local
 * address), so one machine can play several visitors: 127.0.0.2 and
 * 127.0.0.3 are two clients, 127.0.0.1 is the tier's own hops.
 */
import http from 'node:http'

export interface SourcedAnswer { status: number, headers: http.IncomingHttpHeaders, body: string }

export function requestFrom (source: string, url: string, init: { method?: string, headers?: http.OutgoingHttpHeaders, body?: string } = {}): Promise<SourcedAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: init.method ?? 'GET', headers: init.headers, localAddress: source, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url} in 30 s`)))
    req.on('error', reject)
    req.end(init.body)
  })
}
