/**
 * The cluster's front door when HAProxy is not installed: a TCP round-robin
 * balancer with active health checks (`GET /-/health` every second, out after
 * two failures, back after one success) and a retry of the connect on the
 * next healthy node. Connection-level only; HAProxy is the production choice.
 *
 * Env: BALANCER_HOST, BALANCER_PORT, BALANCER_TARGETS (comma-separated host:port).
 */
import net from 'node:net'
import { gracefulShutdown } from '../common/shutdown.js'

const host = process.env.BALANCER_HOST ?? '127.0.0.1'
const port = Number(process.env.BALANCER_PORT)
const targets = (process.env.BALANCER_TARGETS ?? '').split(',').map((t) => t.trim()).filter(Boolean).map((t) => {
  const [h, p] = t.split(':')
  return { host: h, port: Number(p), healthy: true, failures: 0 }
})
if (!Number.isInteger(port) || targets.length === 0) {
  console.error('tcp-balancer: BALANCER_PORT and BALANCER_TARGETS are required')
  process.exit(2)
}

let next = 0
function pick (exclude: Set<number>): number | undefined {
  for (let i = 0; i < targets.length; i++) {
    const idx = (next + i) % targets.length
    if (targets[idx].healthy && !exclude.has(idx)) { next = idx + 1; return idx }
  }
  return undefined
}

const server = net.createServer((client) => {
  client.pause()
  const tried = new Set<number>()
  const attempt = () => {
    const idx = pick(tried)
    if (idx === undefined) { client.destroy(); return }
    tried.add(idx)
    const target = targets[idx]
    const upstream = net.connect(target.port, target.host)
    upstream.once('connect', () => {
      upstream.removeAllListeners('error')
      upstream.on('error', () => client.destroy())
      client.on('error', () => upstream.destroy())
      client.pipe(upstream); upstream.pipe(client)
      client.resume()
    })
    upstream.once('error', () => { target.failures++; if (target.failures >= 2) target.healthy = false; attempt() })
  }
  attempt()
})

setInterval(() => {
  for (const target of targets) {
    fetch(`http://${target.host}:${target.port}/-/health`, { signal: AbortSignal.timeout(900) })
      .then((res) => { if (res.status === 200) { target.healthy = true; target.failures = 0 } else throw new Error(String(res.status)) })
      .catch(() => { target.failures++; if (target.failures >= 2) target.healthy = false })
  }
}, 1000).unref()

server.listen(port, host, () => console.log(JSON.stringify({ level: 30, msg: `balancing ${host}:${port} over ${targets.map((t) => `${t.host}:${t.port}`).join(', ')}` })))
const log = (level: number) => (obj: Record<string, unknown>, msg: string) => console.log(JSON.stringify({ level, ...obj, err: obj.err instanceof Error ? obj.err.message : undefined, msg }))
// Open connections are piped until their clients leave: the close waits for them, at most 5 s.
gracefulShutdown({ delayMs: 5000, log: { info: log(30), error: log(50) } }, () => new Promise<void>((resolve) => server.close(() => resolve())))
