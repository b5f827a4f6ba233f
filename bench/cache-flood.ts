/**
 * Flood check (issue 23): a cache node with its default settings, run as its
 * own processes (cache/server.ts) so only its memory is measured, against
 * what its clients and origin can do to it:
 * - herd: 300 clients on one key whose origin takes 8 s to answer (upstream
 *   timeout 2 s, coalesce timeout 3 s): how many fetches the origin sees;
 * - slow readers: 80 clients that stop reading a 64 MiB answer passed
 *   through (sent with and without Content-Length), while 20 fresh misses
 *   are timed: the node's growth (RSS summed over its processes) and the
 *   slowest miss;
 * - bodies: 300 concurrent 1 MiB POST bodies: the node's growth.
 * Run alone with `npx tsx bench/cache-flood.ts` (CACHE_WORKERS as for the
 * node; default: the node's own default).
 */
import http from 'node:http'
import net from 'node:net'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { freePort } from '../common/free-port.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const BIG = 64 * 1024 * 1024
const mb = (n: number) => (n / 1048576).toFixed(1)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function tree (pid: number): number[] {
  let children: number[] = []
  try { children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) } catch { /* gone */ }
  return [pid, ...children.flatMap(tree)]
}
function rss (pid: number): number {
  let n = 0
  for (const p of tree(pid)) {
    try { n += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) * 1024 } catch { /* gone */ }
  }
  return n
}

const chunk = Buffer.alloc(64 * 1024, 120)
let originRequests: Record<string, number> = {}

async function startOrigin (): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/-/health') { res.end('ok'); return }
    const path = req.url!.replace(/\/\d+$/, '/n')
    originRequests[path] = (originRequests[path] ?? 0) + 1
    if (req.url!.startsWith('/slow')) {
      const t = setTimeout(() => { res.setHeader('cache-control', 'public, max-age=60'); res.end('late') }, 8000)
      res.on('close', () => clearTimeout(t))
      return
    }
    if (req.url!.startsWith('/big')) {
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=60' }
      if (req.url!.includes('length')) headers['content-length'] = BIG
      res.writeHead(200, headers)
      let sent = 0
      const more = (): void => {
        while (sent < BIG) {
          sent += chunk.length
          if (!res.write(chunk)) { res.once('drain', more); return }
        }
        res.end()
      }
      more()
      return
    }
    if (req.method === 'POST') { req.resume(); req.on('end', () => res.end('posted')); return }
    res.setHeader('cache-control', 'public, max-age=60')
    res.end('fresh ' + req.url)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}

/** A raw client: writes `text`, resolves with the status line's code once a head arrived (0 if the connection closed first). */
function rawStatus (port: number, text: string | Buffer, read = true): { status: Promise<number>, socket: net.Socket, closed: Promise<unknown> } {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise((resolve) => socket.once('close', resolve))
  const status = new Promise<number>((resolve) => {
    let head = ''
    socket.once('connect', () => socket.write(text))
    socket.on('data', (d: Buffer) => {
      if (head.length < 64) head += d.toString('latin1')
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head)
      if (m) { resolve(Number(m[1])); if (!read) socket.pause() }
    })
    socket.on('close', () => resolve(0))
  })
  return { status, socket, closed }
}

/** Slowest TCP connect seen by timedGet (a full accept queue shows here, not in the cache's answer). */
let slowestConnect = 0
async function timedGet (port: number, path: string): Promise<number> {
  const started = performance.now()
  const { status, closed, socket } = rawStatus(port, `GET ${path} HTTP/1.1\r\nHost: flood.test\r\nConnection: close\r\n\r\n`)
  socket.once('connect', () => { slowestConnect = Math.max(slowestConnect, performance.now() - started) })
  if (await status === 0) throw new Error(`no answer for ${path}`)
  await closed
  return performance.now() - started
}

async function main (): Promise<void> {
  const origin = await startOrigin()
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    UPSTREAMS: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
    LOG_LEVEL: 'error',
    REDIS_URL: '',
    CACHE_UPSTREAM_TIMEOUT_MS: '2000',
    CACHE_COALESCE_TIMEOUT_MS: '3000'
  }
  const cache = spawn(process.execPath, ['--import', 'tsx', `${root}cache/server.ts`], { env, stdio: ['ignore', 'inherit', 'inherit'] })
  try {
    for (let i = 0; ; i++) {
      try { await timedGet(port, '/-/health'); break } catch { if (i > 300) throw new Error('cache did not start'); await sleep(200) }
    }
    for (let i = 0; i < 50; i++) await timedGet(port, `/warm/${i}`)
    await sleep(500)

    // herd
    originRequests = {}
    const herd = Array.from({ length: 300 }, () => rawStatus(port, 'GET /slow HTTP/1.1\r\nHost: flood.test\r\n\r\n'))
    const statuses = await Promise.all(herd.map((h) => h.status))
    for (const h of herd) h.socket.destroy()
    const byStatus: Record<number, number> = {}
    for (const s of statuses) byStatus[s] = (byStatus[s] ?? 0) + 1
    console.log(`herd: 300 clients on one key, origin 8 s, upstream timeout 2 s: origin fetches ${originRequests['/slow'] ?? 0}; answers ${JSON.stringify(byStatus)}`)
    await sleep(1000)

    // slow readers
    for (const form of ['length', 'chunked']) {
      originRequests = {}
      const before = rss(cache.pid!)
      let peak = before
      const readers = Array.from({ length: 80 }, (_, i) => rawStatus(port, `GET /big-${form}/${i % 4} HTTP/1.1\r\nHost: flood.test\r\n\r\n`, false))
      for (const r of readers) r.socket.pause()
      const watch = setInterval(() => { peak = Math.max(peak, rss(cache.pid!)) }, 100)
      await sleep(3000)
      const times: number[] = []
      slowestConnect = 0
      for (let i = 0; i < 20; i++) times.push(await timedGet(port, `/fresh-${form}/${i}`))
      await sleep(2000)
      clearInterval(watch)
      peak = Math.max(peak, rss(cache.pid!))
      console.log(`slow readers (${form}): 80 clients stop reading a 64 MiB pass-through answer: node RSS ${mb(before)} → peak ${mb(peak)} MiB (growth ${mb(peak - before)} MiB); 20 fresh misses meanwhile: slowest ${Math.round(Math.max(...times))} ms (of which connecting at most ${Math.round(slowestConnect)} ms), median ${Math.round(times.sort((a, b) => a - b)[10])} ms; origin fetches of the big answers ${originRequests[`/big-${form}/n`] ?? 0}`)
      for (const r of readers) r.socket.destroy()
      await sleep(2000)
    }

    // request bodies
    {
      const body = Buffer.alloc(1024 * 1024, 97)
      const before = rss(cache.pid!)
      let peak = before
      const watch = setInterval(() => { peak = Math.max(peak, rss(cache.pid!)) }, 50)
      const posts = Array.from({ length: 300 }, (_, i) => rawStatus(port, Buffer.concat([Buffer.from(`POST /form/${i} HTTP/1.1\r\nHost: flood.test\r\nContent-Length: ${body.length}\r\n\r\n`), body])))
      const statuses = await Promise.all(posts.map((p) => p.status))
      await sleep(500)
      clearInterval(watch)
      peak = Math.max(peak, rss(cache.pid!))
      for (const p of posts) p.socket.destroy()
      const byStatus: Record<number, number> = {}
      for (const s of statuses) byStatus[s] = (byStatus[s] ?? 0) + 1
      console.log(`bodies: 300 concurrent 1 MiB POSTs: answers ${JSON.stringify(byStatus)}; node RSS ${mb(before)} → peak ${mb(peak)} MiB (growth ${mb(peak - before)} MiB)`)
    }
  } finally {
    if (cache.exitCode === null) {
      cache.kill('SIGTERM')
      await new Promise((resolve) => cache.once('exit', resolve))
    }
    origin.closeAllConnections()
    origin.close()
  }
}

main().catch((err: Error) => { console.error(err.stack); process.exit(1) })
