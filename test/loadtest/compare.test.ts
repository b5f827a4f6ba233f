// compare: two runs of the same target, written by the CLI (--out) at the
// same time, are not flagged, and the page draws both. A real difference
// is made to measure: summaries whose per-second values come from known
// distributions (seeded, stalls included) — on a machine shared with other
// jobs a real slow-down of the origin can be drowned by the machine's own
// stalls, which is what the test is for, not a result to assert.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCliHere as cli } from './cli-process.js'
import type { Comparison } from '../../loadtest/compare.js'
import { compareScope, compareSummaries } from '../../loadtest/compare.js'
import { createRng } from '../../loadtest/random.js'
import type { Summary } from '../../loadtest/report-json.js'

async function origin (delayMs: number): Promise<{ url: string, close: () => void }> {
  const server = createServer((req, res) => { setTimeout(() => res.end('a page of the origin'), delayMs) })
  server.keepAliveTimeout = 60_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/page`, close: () => { server.closeAllConnections(); server.close() } }
}


/**
 * A summary like `template` whose every second is drawn anew: throughput
 * around `rps`, p50 and p99 around theirs, ±10 % (uniform), one second in
 * five a stall (a third of the throughput, five times the latency).
 */
function drawn (template: Summary, seed: number, o: { seconds: number, rps: number, p50: number, p99: number }): Summary {
  const rng = createRng(seed)
  const jitter = (): number => 0.9 + 0.2 * rng()
  const rows = Array.from({ length: o.seconds }, () => {
    const stall = rng() < 0.2
    return { rps: Math.round(o.rps * jitter() * (stall ? 1 / 3 : 1)), p50: o.p50 * jitter() * (stall ? 5 : 1), p99: o.p99 * jitter() * (stall ? 5 : 1) }
  })
  const s = structuredClone(template)
  s.timeline = rows.map((r, t) => ({ ...template.timeline[0], t, span: 1, requests: r.rps, rps: r.rps, p50: r.p50, p99: r.p99 }))
  s.duration = o.seconds
  const requests = rows.reduce((n, r) => n + r.rps, 0)
  const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const stats = { ...template.totals, requests, duration: o.seconds, rps: requests / o.seconds, latency: { ...template.totals.latency, p50: median(rows.map(r => r.p50)), p99: Math.max(...rows.map(r => r.p99)) } }
  s.totals = stats
  s.endpoints = [{ endpoint: '/page', share: 1, stats, seconds: { requests: rows.map(r => r.rps), p50: rows.map(r => r.p50), p99: rows.map(r => r.p99) } }]
  return s
}

t.test('compare: two runs of the same target are not flagged, a real difference is, and the page draws both', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'flashcrowd-compare-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const steady = await origin(20)
  t.teardown(() => steady.close())
  const out = (name: string): string => join(dir, name)
  // both at once, at a light load paced by the origin's timer: they see the same machine
  const runs = await Promise.all([
    cli(['-R', '20', '-c', '2', '-d', '7', '-n', '-j', '--out', out('same-1'), steady.url]),
    cli(['-R', '20', '-c', '2', '-d', '7', '-n', '-j', '--out', out('same-2'), steady.url])
  ])
  for (const r of runs) t.equal(r.code, 0, r.stderr)

  t.test('two runs of the same target are not flagged', async t => {
    const a = join(out('same-1'), 'summary.json')
    const b = join(out('same-2'), 'summary.json')
    const r = await cli(['compare', '--json', a, b])
    t.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as Comparison
    t.equal(c.rows.length, 6, 'all requests and the one endpoint, three metrics each')
    t.same(c.rows.filter(x => x.beyondNoise).map(x => `${x.endpoint} ${x.metric} ${x.change} p=${x.test?.p}`), [], 'nothing beyond noise')
    t.ok(c.rows.every(x => x.test !== null && x.test.nA >= 6 && x.test.nB >= 6), 'every row was tested on the runs\' seconds')
    t.same(c.differences, [])
    const text = await cli(['compare', a, b])
    t.match(text.stdout, /no change beyond the runs' noise \(Mann–Whitney U test/)
  })

  t.test('the page has both runs\' curves', async t => {
    const html = await readFile(join(out('same-2'), 'compare.html'), 'utf8')
    t.match(html, join(out('same-1'), 'summary.json'))
    t.match(html, join(out('same-2'), 'summary.json'))
    const plots = html.match(/<svg class="plot"[\s\S]*?<\/svg>/g) ?? []
    t.equal(plots.length, 6, 'throughput, p50 and p99 for all requests and for /page')
    for (const p of plots) {
      t.match(p, /data-series="a" d="M[\d.]+,[\d.]+ L/, 'run a drawn')
      t.match(p, /data-series="b" d="M[\d.]+,[\d.]+ L/, 'run b drawn')
    }
  })

  t.test('a real difference is flagged, the same distribution drawn again is not', async t => {
    const template = JSON.parse(await readFile(join(out('same-1'), 'summary.json'), 'utf8')) as Summary
    const base = { seconds: 10, rps: 300, p50: 20, p99: 40 }
    await writeFile(out('before.json'), JSON.stringify(drawn(template, 1, base)))
    await writeFile(out('again.json'), JSON.stringify(drawn(template, 2, base)))
    // 30 % less throughput, latencies 50 % higher: within the stalls' spread, not within the seconds' jitter
    await writeFile(out('after.json'), JSON.stringify(drawn(template, 3, { seconds: 10, rps: 210, p50: 30, p99: 60 })))
    const r = await cli(['compare', '--json', '--html', out('after.html'), out('before.json'), out('after.json')])
    t.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as Comparison
    const row = (endpoint: string, metric: string) => c.rows.find(x => x.endpoint === endpoint && x.metric === metric)!
    for (const scope of ['*', '/page']) {
      t.match(row(scope, 'rps'), { beyondNoise: true, verdict: 'worse' }, `${scope}: throughput fell ${JSON.stringify(row(scope, 'rps'))}`)
      t.match(row(scope, 'p50'), { beyondNoise: true, verdict: 'worse' }, `${scope}: p50 rose ${JSON.stringify(row(scope, 'p50'))}`)
    }
    const text = await cli(['compare', '--html', out('after.html'), out('before.json'), out('after.json')])
    t.match(text.stdout, /all requests\s+req\/s .* WORSE, beyond noise/)
    t.match(text.stdout, /\d+ change\(s\) beyond the runs' noise \(Mann–Whitney U test/)
    t.match(await readFile(out('after.html'), 'utf8'), /worse, beyond noise/)
    const same = JSON.parse((await cli(['compare', '--json', '--html', out('again.html'), out('before.json'), out('again.json')])).stdout) as Comparison
    t.same(same.rows.filter(x => x.beyondNoise), [], 'the same distribution, other draws: nothing flagged')
  })

  t.test('one-line runs of two paths are told apart (their url is the origin; the path is in the mix)', async t => {
    const a = JSON.parse(await readFile(join(out('same-1'), 'summary.json'), 'utf8')) as Summary
    const b = JSON.parse(JSON.stringify(a)) as Summary
    t.equal(a.scenario.mix.length, 1)
    t.equal(a.scenario.mix[0].path, '/page', 'the path the run was given')
    b.scenario.mix[0].path = '/news'
    const c = compareSummaries(a, b, { alpha: 0.01, minChange: 0.05 })
    t.match(c.differences, [/^requests .*\/page.* vs .*\/news/])
    t.same(compareSummaries(a, a, { alpha: 0.01, minChange: 0.05 }).differences, [], 'the same run: nothing noted')
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
