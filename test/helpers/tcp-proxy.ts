/**
 * A TCP proxy on port 0 in front of a real server, which a test can cut and
 * restore: "Postgres is down" as every client sees it (connections refused,
 * open ones reset) without stopping the shared server.
 */
import net from 'node:net'

export interface TcpProxy {
  port: number
  url: (base: string) => string
  /** Refuse new connections and reset open ones. */
  cut: () => Promise<void>
  restore: () => Promise<void>
  close: () => Promise<void>
}

export async function startTcpProxy (targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const clients = new Set<net.Socket>()
  const upstreams = new Set<net.Socket>()
  let port = 0
  const handler = (client: net.Socket) => {
    const upstream = net.connect(targetPort, targetHost)
    clients.add(client); upstreams.add(upstream)
    client.pipe(upstream); upstream.pipe(client)
    const done = () => { client.destroy(); upstream.end(); clients.delete(client); upstreams.delete(upstream) }
    client.on('error', done); upstream.on('error', done); client.on('close', done); upstream.on('close', done)
  }
  let server = net.createServer(handler)
  const listen = (p: number) => new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(p, '127.0.0.1', () => { port = (server.address() as net.AddressInfo).port; resolve() })
  })
  // The application side sees its connections reset; the server side gets a
  // clean close (as when a network path dies between them).
  const stop = () => new Promise<void>((resolve) => {
    for (const s of clients) s.destroy()
    for (const s of upstreams) s.end()
    clients.clear(); upstreams.clear()
    server.close(() => resolve())
  })
  await listen(0)
  return {
    get port () { return port },
    url (base) { const u = new URL(base); u.hostname = '127.0.0.1'; u.port = String(port); return u.toString() },
    cut: stop,
    async restore () { server = net.createServer(handler); await listen(port) },
    close: stop
  }
}
