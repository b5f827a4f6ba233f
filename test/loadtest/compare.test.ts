// compare: real runs written by the CLI (--out), compared by the CLI.
// A real difference (an origin twenty times slower) is flagged; two runs of the
// same target at the same time are not; the page shows both runs' curves.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { main } from '../../loadtest/cli.js'
import type { Comparison } from '../../loadtest/compare.js'
import { compareScope } from '../../loadtest/compare.js'

async function origin (delayMs: number): Promise<{ url: string, close: () => void }> {
  const server = createServer((req, res) => { setTimeout(() => res.end('a page of the origin'), delayMs) })
  server.keepAliveTimeout = 60_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/page`, close: () => { server.closeAllConnections(); server.close() } }
}

async function cli (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const out = new PassThrough()
  const err = new PassThrough()
  let stdout = ''
  let stderr = ''
  out.on('data', (d: Buffer) => { stdout += d })
  err.on('data', (d: Buffer) => { stderr += d })
  const code = await main(args, { stdout: out, stderr: err })
  return { code, stdout, stderr }
}

t.test('compare flags a real difference, not two runs of the same target, and draws both', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'flashcrowd-compare-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // light loads (about 100, 5 and 2 × 20 req/s), paced by the origins' timers: the figures
  // then hardly depend on how busy the machine is, and the test process's
  // own event loop (the origins, four collectors) keeps up
  const [fast, slow, steady] = await Promise.all([origin(10), origin(200), origin(20)])
  t.teardown(() => { fast.close(); slow.close(); steady.close() })
  const out = (name: string): string => join(dir, name)
  // all four at once: the two runs of the same target see the same machine
  const runs = await Promise.all([
    cli(['-c', '1', '-d', '7', '-n', '-j', '--out', out('fast'), fast.url]),
    cli(['-c', '1', '-d', '7', '-n', '-j', '--out', out('slow'), slow.url]),
    cli(['-R', '20', '-c', '2', '-d', '7', '-n', '-j', '--out', out('same-1'), steady.url]),
    cli(['-R', '20', '-c', '2', '-d', '7', '-n', '-j', '--out', out('same-2'), steady.url])
  ])
  for (const r of runs) t.equal(r.code, 0, r.stderr)

  t.test('a real difference is flagged', async t => {
    const r = await cli(['compare', '--json', join(out('fast'), 'summary.json'), join(out('slow'), 'summary.json')])
    t.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as Comparison
    const row = (endpoint: string, metric: string) => c.rows.find(x => x.endpoint === endpoint && x.metric === metric)!
    for (const scope of ['*', '/page']) {
      t.match(row(scope, 'rps'), { beyondNoise: true, verdict: 'worse' }, `${scope}: throughput fell ${JSON.stringify(row(scope, 'rps'))}`)
      t.match(row(scope, 'p50'), { beyondNoise: true, verdict: 'worse' }, `${scope}: p50 rose ${JSON.stringify(row(scope, 'p50'))}`)
      t.ok(row(scope, 'rps').change! < -0.5, `${scope}: by more than half (${row(scope, 'rps').change})`)
      t.ok(row(scope, 'p50').test!.p < 0.01)
    }
    const text = await cli(['compare', join(out('fast'), 'summary.json'), join(out('slow'), 'summary.json')])
    t.match(text.stdout, /all requests\s+req\/s .* WORSE, beyond noise/)
    t.match(text.stdout, /note: the runs differ: url/, 'two origins: the note says so')
    t.match(text.stdout, /\d+ change\(s\) beyond the runs' noise \(Mann–Whitney U test/)
  })

  t.test('two runs of the same target are not flagged', async t => {
    const a = join(out('same-1'), 'summary.json')
    const b = join(out('same-2'), 'summary.json')
    const r = await cli(['compare', '--json', a, b])
    t.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as Comparison
    t.equal(c.rows.length, 6, 'all requests and the one endpoint, three metrics each')
    t.same(c.rows.filter(x => x.beyondNoise).map(x => `${x.endpoint} ${x.metric} ${x.change} p=${x.test?.p}`), [], 'nothing beyond noise')
    t.ok(c.rows.every(x => x.test !== null), 'every row was tested')
    t.same(c.differences, [])
  })

  t.test('the page has both runs\' curves', async t => {
    const html = await readFile(join(out('slow'), 'compare.html'), 'utf8')
    t.match(html, join(out('fast'), 'summary.json'))
    t.match(html, join(out('slow'), 'summary.json'))
    const plots = html.match(/<svg class="plot"[\s\S]*?<\/svg>/g) ?? []
    t.equal(plots.length, 6, 'throughput, p50 and p99 for all requests and for /page')
    for (const p of plots) {
      t.match(p, /data-series="a" d="M[\d.]+,[\d.]+ L/, 'run a drawn')
      t.match(p, /data-series="b" d="M[\d.]+,[\d.]+ L/, 'run b drawn')
    }
    t.match(html, /worse, beyond noise/)
  })

  t.test('an older summary without per-second endpoint values: changes shown, noise estimated for all requests only', async t => {
    const old = JSON.parse(await readFile(join(out('same-2'), 'summary.json'), 'utf8'))
    for (const e of old.endpoints) delete e.seconds
    for (const e of old.timeline) delete e.bytes
    await writeFile(out('old.json'), JSON.stringify(old))
    const r = await cli(['compare', '--json', '--html', out('old.html'), join(out('same-1'), 'summary.json'), out('old.json')])
    t.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as Comparison
    t.ok(c.rows.filter(x => x.endpoint === '*').every(x => x.test !== null))
    t.ok(c.rows.filter(x => x.endpoint === '/page').every(x => x.test === null && x.change !== null && /older version/.test(x.note ?? '')))
    t.match(r.stderr, `wrote ${out('old.html')}`)
  })
})

t.test('compare: usage and unreadable files', async t => {
  const two = await cli(['compare', 'only-one.json'])
  t.equal(two.code, 2)
  t.match(two.stderr, /compare takes two summary.json files/)
  t.match(two.stderr, /usage: npm run loadtest -- compare/)
  const alpha = await cli(['compare', 'a.json', 'b.json', '--alpha', '2'])
  t.equal(alpha.code, 2)
  const missing = await cli(['compare', '/nonexistent/a.json', '/nonexistent/b.json'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /cannot read \/nonexistent\/a.json/)
})

t.test('compareScope: a significant change below --min-change is not flagged; a run without the endpoint is not tested', async t => {
  const scope = (rps: number[]) => ({ rps: rps.reduce((a, b) => a + b) / rps.length, p50: 1, p99: 2, requests: 100, seconds: { rps, p50: rps.map(() => 1), p99: rps.map(() => 2) } })
  const a = scope([100, 101, 99, 100, 100.5, 101.5, 99.5, 98])
  const b = scope([102, 103, 104, 102.5, 103.5, 104.5, 105, 102.7])
  const small = compareScope('*', 'rps', a, b, { alpha: 0.01, minChange: 0.05 })
  t.ok(small.test!.p < 0.01, 'significant')
  t.equal(small.beyondNoise, false)
  t.match(small.note, /below --min-change 5%/)
  const flagged = compareScope('*', 'rps', a, b, { alpha: 0.01, minChange: 0.01 })
  t.match(flagged, { beyondNoise: true, verdict: 'better' }, 'more throughput is better')
  t.match(compareScope('*', 'p50', a, undefined, { alpha: 0.01, minChange: 0.05 }), { test: null, verdict: 'not measured', note: 'only in run a' })
})
