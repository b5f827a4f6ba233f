// autocannon's habits: autocannon itself (a dependency) and our CLI against
// the same local server; our --json has exactly autocannon's fields (same
// types, recursively) and figures that add up; our tables are autocannon's.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { runCliHere as oursHere, startCli, stop } from './cli-process.js'

const ROOT = join(import.meta.dirname, '../..')

function autocannon (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/autocannon/autocannon.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d })
    child.stderr.on('data', (d: Buffer) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** As `npm run loadtest` runs it: a process of its own. */
async function ours (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const p = startCli(args, 60_000)
  try {
    const code = await p.exited
    return { code, stdout: p.stdout, stderr: p.stderr }
  } finally {
    stop(p)
  }
}


/** The shape of a JSON value: objects by key (sorted), arrays by their first element, scalars by type. */
function shape (v: unknown): unknown {
  if (v === null) return 'null'
  if (Array.isArray(v)) return [v.length > 0 ? shape(v[0]) : 'empty']
  if (typeof v === 'object') return Object.fromEntries(Object.keys(v as object).sort().map(k => [k, shape((v as Record<string, unknown>)[k])]))
  return typeof v
}

/** The cells of autocannon's table header rows ("│ Stat │ 2.5% │ …"), one list per table. */
function headerRows (text: string): string[][] {
  return text.split('\n').filter(l => /│\s*(Stat|Percentile|Code)\s*│/.test(l)).map(l => l.split('│').map(c => c.trim()).filter(Boolean))
}

const PCT = ['p0_001', 'p0_01', 'p0_1', 'p1', 'p2_5', 'p10', 'p25', 'p50', 'p75', 'p90', 'p97_5', 'p99', 'p99_9', 'p99_99', 'p99_999']

interface Seen { method: string, headers: IncomingMessage['headers'], body: string }

t.test('a one-line run has autocannon\'s result fields, figures and tables', async t => {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => { body += d })
    req.on('end', () => {
      if (req.url === '/missing') {
        seen.push({ method: req.method ?? '', headers: req.headers, body })
        res.statusCode = 404
        res.end('not here')
        return
      }
      // the same bytes every time: bytes read are a multiple of one answer
      res.setHeader('content-type', 'text/plain')
      res.end('hello from the origin')
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  // all at once: the wall time is one process start and two seconds of load
  const [theirJson, ourJson, theirText, ourAmount, ourText] = await Promise.all([
    autocannon(['-c', '4', '-d', '2', '-j', `${base}/ok`]),
    ours(['-c', '4', '-d', '2', '-j', `${base}/ok`]),
    autocannon(['-c', '2', '-a', '40', '--renderStatusCodes', '-l', `${base}/missing`]),
    oursHere(['-c', '2', '-a', '50', '-w', '2', '-m', 'put', '-H', 'x-a=1', '-H', 'X-B: two', '-b', 'payload', '-T', 'amount run', '-j', `${base}/missing`]),
    oursHere(['-c', '2', '-a', '30', '--renderStatusCodes', '-l', `${base}/ok`])
  ])
  t.equal(theirJson.code, 0, theirJson.stderr)
  t.equal(ourJson.code, 0, ourJson.stderr)
  const theirs = JSON.parse(theirJson.stdout) as Record<string, unknown>
  const r = JSON.parse(ourJson.stdout) as Record<string, any>

  t.test('same fields, same types, recursively', async t => {
    t.same(shape(r), shape(theirs))
    t.same(Object.keys(r), Object.keys(theirs), 'in autocannon\'s order')
    t.same(Object.keys(r.latency), Object.keys(theirs.latency as object))
    t.same(Object.keys(r.requests), Object.keys(theirs.requests as object))
    t.same(Object.keys(r.throughput), Object.keys(theirs.throughput as object))
    t.equal(ourJson.stderr, '', '--json prints nothing else')
  })

  t.test('figures that add up', async t => {
    t.equal(r.url, `${base}/ok`)
    t.equal(r.connections, 4)
    t.equal(r.pipelining, 1)
    t.equal(r.workers, 0, 'no -w: 0, as autocannon says')
    t.equal(r.sampleInt, 1000)
    t.ok(r.duration >= 1.9 && r.duration <= 4, `duration ${r.duration} s for -d 2`)
    t.ok(r.samples >= 2 && r.samples <= 3, `${r.samples} one-second samples`)
    t.ok(Date.parse(r.finish) - Date.parse(r.start) >= 1900, 'start and finish are the run\'s')
    const n = r.requests.total as number
    t.ok(n > 100, `${n} requests answered`)
    t.equal(r['2xx'], n)
    t.same(r.statusCodeStats, { 200: { count: n } })
    t.equal(r.non2xx, 0)
    t.equal(r.errors, 0)
    t.equal(r.latency.totalCount, n, 'one latency per response (closed model)')
    t.ok(r.requests.sent >= n && r.requests.sent <= n + 4, `sent ${r.requests.sent}: the answered plus at most one in flight per connection`)
    // every answer is the same bytes, on their client and ours
    const perAnswer = (theirs.throughput as { total: number }).total / (theirs.requests as { total: number }).total
    t.equal(r.throughput.total, n * perAnswer, `${perAnswer} bytes per answer, head and body, as autocannon counts them`)
    for (const [name, h] of [['latency', r.latency], ['requests', r.requests], ['throughput', r.throughput]] as const) {
      const ps = PCT.map(k => h[k] as number)
      t.ok(ps.every((v, i) => i === 0 || v >= ps[i - 1]), `${name} percentiles in order: ${ps.join(' ')}`)
      t.ok(h.min <= ps[0] + 1e-9 || name !== 'latency', `${name} min ${h.min} ≤ p0.001`)
      t.ok(h.max >= h.p99 * 0.999, `${name} max ${h.max} ≥ p99 (within the histogram's precision)`)
      t.ok(h.mean >= h.min && h.mean <= h.max * 1.001, `${name} mean ${h.mean} between min and max`)
      t.equal(h.average, h.mean)
    }
    // the per-second samples add up to the answers counted in them (a trailing sliver of a second is not a sample)
    t.ok(r.requests.mean * r.samples <= n * 1.02 && r.requests.mean * r.samples >= n * 0.7, `req/s samples × ${r.samples} ≈ ${n}`)
  })

  t.test('--amount: exactly that many, with the method, headers and body given', async t => {
    t.equal(ourAmount.code, 0, ourAmount.stderr)
    const a = JSON.parse(ourAmount.stdout) as Record<string, any>
    t.equal(a.title, 'amount run')
    t.equal(a.workers, 2)
    t.equal(a.requests.total, 50)
    t.equal(a.requests.sent, 50)
    t.equal(a['4xx'], 50)
    t.equal(a.non2xx, 50)
    t.same(a.statusCodeStats, { 404: { count: 50 } })
    t.equal(a.latency.totalCount, 50)
    const puts = seen.filter(s => s.method === 'PUT')
    t.equal(puts.length, 50, 'the server saw 50 PUTs')
    t.ok(puts.every(s => s.headers['x-a'] === '1' && s.headers['x-b'] === 'two' && s.body === 'payload' && s.headers['content-length'] === '7'), 'each with both headers and the body')
    t.same(shape({ ...a, statusCodeStats: {} }), shape({ ...theirs, statusCodeStats: {}, title: '' }), 'autocannon\'s fields, and the title given')
  })

  t.test('the tables are autocannon\'s', async t => {
    t.equal(theirText.code, 0)
    t.equal(ourText.code, 0, ourText.stderr)
    const theirHeads = headerRows(theirText.stderr)
    t.same(theirHeads.map(h => h[0]), ['Stat', 'Stat', 'Code', 'Percentile'], 'autocannon printed its four tables')
    t.same(headerRows(ourText.stderr), theirHeads)
    for (const row of ['Latency', 'Req/Sec', 'Bytes/Sec']) t.match(ourText.stderr, new RegExp(`│ ${row.replace('/', '\\/')}\\s+│`), `a ${row} row`)
    t.match(ourText.stderr, /^Running 30 requests test @ http:\/\/127\.0\.0\.1:\d+\/ok\n2 connections\n/, 'autocannon\'s banner')
    t.match(ourText.stderr, /│ 200\s+│ 30\s+│/, 'status codes')
    t.match(ourText.stderr, /\n30 requests in [\d.]+s, [\d.]+ kB read\n/)
    t.match(theirText.stderr, /\n40 requests in [\d.]+s, [\d.]+ kB read\n/, 'the same closing line as autocannon')
    t.equal(ourText.stdout, '', 'as autocannon: the tables go to stderr')
  })
})
