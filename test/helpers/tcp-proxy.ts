/**
 * A TCP proxy on port 0 in front of a real server, which a test can cut,
 * freeze and restore: "Postgres (or Redis) is down" or "hangs" as every client
 * sees it, without touching the shared server.
 */
import net from 'node:net'

export interface TcpProxy {
  port: number
  url: (base: string) => string
  /** Refuse new connections and reset open ones. */
  cut: () => Promise<void>
  /** Keep every connection open but stop moving bytes: a server that hangs. */
  freeze: () => void
  /** After freeze(): move bytes again on the same connections. */
  thaw: () => void
  /** After cut(): accept connections again. */
  restore: () => Promise<void>
  /**
   * Sends new connections to another server and resets the open ones, as a
   * router (HAProxy with `on-marked-down shutdown-sessions`) does when the
   * leader changes.
   */
  retarget: (port: number, host?: string) => void
  close: () => Promise<void>
}

interface Pair { client: net.Socket, upstream: net.Socket }

export async function startTcpProxy (targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let target = { port: targetPort, host: targetHost }
  const pairs = new Set<Pair>()
  let port = 0
  let frozen = false
  const flow = (pair: Pair) => {
    pair.client.pipe(pair.upstream)
    pair.upstream.pipe(pair.client)
    pair.client.resume(); pair.upstream.resume()
  }
  const handler = (client: net.Socket) => {
    const pair: Pair = { client, upstream: net.connect(target.port, target.host) }
    pairs.add(pair)
    const done = () => { client.destroy(); pair.upstream.end(); pairs.delete(pair) }
    client.on('error', done); pair.upstream.on('error', done); client.on('close', done); pair.upstream.on('close', done)
    if (frozen) { client.pause(); return } // accepted, not answered until thawed
    flow(pair)
  }
  let server = net.createServer(handler)
  const listen = (p: number) => new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(p, '127.0.0.1', () => { port = (server.address() as net.AddressInfo).port; resolve() })
  })
  // The application side sees its connections reset; the server side gets a
  // clean close (as when a network path dies between them).
  const stop = () => new Promise<void>((resolve) => {
    for (const { client, upstream } of pairs) { client.destroy(); upstream.end() }
    pairs.clear()
    server.close(() => resolve())
  })
  await listen(0)
  return {
    get port () { return port },
    url (base) { const u = new URL(base); u.hostname = '127.0.0.1'; u.port = String(port); return u.toString() },
    cut: stop,
    freeze () {
      frozen = true
      for (const { client, upstream } of pairs) { client.unpipe(); upstream.unpipe(); client.pause(); upstream.pause() }
    },
    thaw () {
      frozen = false
      for (const pair of pairs) flow(pair)
    },
    async restore () { server = net.createServer(handler); await listen(port) },
    retarget (nextPort, nextHost = '127.0.0.1') {
      target = { port: nextPort, host: nextHost }
      for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy() }
      pairs.clear()
    },
    close: stop
  }
}
