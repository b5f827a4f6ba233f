/** Ports the OS says are free right now (for child processes that need to be told their port). */
import net from 'node:net'

export async function freePorts (count: number, host = '127.0.0.1'): Promise<number[]> {
  // Held open together so the OS cannot hand out the same port twice.
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, host, () => resolve(server))
  })))
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  return ports
}

export async function freePort (host = '127.0.0.1'): Promise<number> {
  return (await freePorts(1, host))[0]
}

/**
 * The first of `ports` something already listens on (on `host`), checked by
 * binding it for a moment: a start-up can then refuse at once, naming the port,
 * instead of starting half a tier whose last role cannot listen.
 */
export async function portsInUse (ports: number[], host = '127.0.0.1'): Promise<number[]> {
  const taken: number[] = []
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer()
      server.once('error', () => resolve(false))
      server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)))
    })
    if (!free) taken.push(port)
  }
  return taken
}
