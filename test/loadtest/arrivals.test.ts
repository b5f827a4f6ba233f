// The open model's clock, and what it measures against a target that
// stalls: --rate must report the tail an independent open-model probe sees
// (one request per tick, on as many connections as it needs, each timed
// from when it was meant to leave), with few connections and with many.
import t from 'tap'
import { Worker } from 'node:worker_threads'
import { ArrivalClock, arrivalSteps, slicePhase } from '../../loadtest/arrivals.js'
import { parseCommand } from '../../loadtest/cli.js'
import { runLoadTest } from '../../loadtest/run.js'
import { planSchedule } from '../../loadtest/stages.js'
import { startFakeSite } from './fake-site.js'

function drain (c: ArrivalClock): Array<[number, number]> {
  const out: Array<[number, number]> = []
  if (c.done) return out
  do out.push([Math.round(c.at * 1e6) / 1e6, c.stage]); while (c.advance())
  return out
}

t.test('even arrivals: rate × duration per step, on the common clock; slices interleave', async t => {
  const plan = planSchedule([{ name: 'a', duration: 1, to: 4 }, { name: 'b', duration: 0.5, to: 8 }], { duration: 1.5, model: 'open', target: 8, pool: 3, step: 1 })
  t.same(drain(new ArrivalClock(arrivalSteps(plan, []))), [[0, 0], [0.25, 0], [0.5, 0], [0.75, 0], [1, 1], [1.125, 1], [1.25, 1], [1.375, 1]])
  // two threads, each half the rate, shifted by half their gap: together the same even stream
  const both = [0, 1].flatMap(i => {
    const slices = [{ index: i, count: 2 }]
    return drain(new ArrivalClock(arrivalSteps(plan, slices), { phase: slicePhase(slices) }))
  }).sort((x, y) => x[0] - y[0])
  t.same(both, [[0, 0], [0.25, 0], [0.5, 0], [0.75, 0], [1, 1], [1.125, 1], [1.25, 1], [1.375, 1]])
  t.equal(slicePhase([{ index: 1, count: 2 }, { index: 2, count: 3 }]), 5 / 6, 'agent 1 of 2, thread 2 of 3')
  t.same(arrivalSteps(plan, [{ index: 0, count: 2 }]).map(s => s.maxConnections), [2, 1], 'the cap is split between slices too (the remainder takes turns)')
  t.ok(new ArrivalClock([]).done, 'no steps, no arrivals')
})

t.test('Poisson arrivals: seeded, about rate × duration, gaps of every length', async t => {
  const steps = [{ start: 0, duration: 20, rate: 100, maxConnections: 10, stage: 0 }]
  const a = drain(new ArrivalClock(steps, { process: 'poisson', seed: 3 }))
  const b = drain(new ArrivalClock(steps, { process: 'poisson', seed: 3 }))
  t.same(a, b, 'the same seed, the same arrivals')
  t.ok(Math.abs(a.length - 2000) < 150, `${a.length} arrivals for 2000 expected`)
  const gaps = a.slice(1).map((x, i) => x[0] - a[i][0])
  const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length
  const cv = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length) / mean
  t.ok(cv > 0.85 && cv < 1.15, `exponential gaps: coefficient of variation ${cv.toFixed(2)} (1 for Poisson, 0 when even)`)
})

/**
 * The reference: one request per tick of its own clock, each on a free
 * keep-alive connection or a new one (as many as it needs, no cap), latency
 * from the intended send time to the end of the answer. Written apart from
 * the tool on purpose (plain sockets, its own framing of the site's
 * answers, its own timer), in a thread of its own so the site's event loop
 * does not hold its clock.
 */
const PROBE = `
const { connect } = require('node:net')
const { parentPort, workerData: { host, port, path, rate, seconds } } = require('node:worker_threads')
const head = 'GET ' + path + ' HTTP/1.1\\r\\nHost: ' + host + ':' + port + '\\r\\n\\r\\n'
const latencies = []
const idle = []
const n = Math.round(rate * seconds)
let t0 = 0
let next = 0
const done = (c) => {
  latencies.push(performance.now() - c.intended)
  if (latencies.length === n) { for (const s of idle.concat(c)) s.sock.destroy(); parentPort.postMessage(latencies) } else idle.push(c)
}
const open = () => {
  const c = { sock: connect({ host, port }), buf: '', intended: 0 }
  c.sock.setEncoding('latin1')
  c.sock.on('data', (d) => {
    c.buf += d
    const end = c.buf.indexOf('\\r\\n\\r\\n')
    if (end < 0) return
    const length = /content-length: *(\\d+)/i.exec(c.buf.slice(0, end))
    // Content-Length, or chunked up to its last chunk
    if (length ? c.buf.length < end + 4 + Number(length[1]) : !c.buf.endsWith('\\r\\n0\\r\\n\\r\\n')) return
    c.buf = ''
    done(c)
  })
  return c
}
const tick = () => {
  const now = performance.now()
  while (next < n && t0 + (next * 1000) / rate <= now) {
    const c = idle.pop() || open()
    c.intended = t0 + (next * 1000) / rate
    next++
    c.sock.write(head)
  }
  if (next < n) setTimeout(tick, Math.max(0, t0 + (next * 1000) / rate - performance.now()))
}
parentPort.once('message', () => { t0 = performance.now(); tick() })
parentPort.postMessage('ready')
`

/** Starts the probe's thread; `go()` starts its clock and resolves to its latencies, sorted. */
async function startProbe (url: string, rate: number, seconds: number): Promise<{ go: () => Promise<number[]> }> {
  const u = new URL(url)
  const w = new Worker(PROBE, { eval: true, workerData: { host: u.hostname, port: Number(u.port), path: u.pathname, rate, seconds } })
  await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
  return {
    go: async () => {
      try {
        const latencies = new Promise<number[]>((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
        w.postMessage('go')
        return (await latencies).sort((a, b) => a - b)
      } finally {
        await w.terminate()
      }
    }
  }
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]

t.test('against a target that stalls, --rate reports the p90, p99 and max an open-model probe measures, at its default connections and at 1,200', async t => {
  // 1.6 s without an answer every 4 s: 40% of the arrivals wait 0–1600 ms
  // (p90 ≈ 1200, p99 ≈ 1560, max ≈ 1600). Each measurement lasts one whole
  // period, so it sees the same share of stall wherever it starts. The probe
  // (its thread started beforehand) starts its clock at the tool's first
  // request and measures beside it, over the same window, through the same
  // stall of the same site: what a busy test machine adds weighs on both alike.
  const RATE = 100
  const SECONDS = 4
  const site = await startFakeSite({ stall: { everyMs: 4000, forMs: 1600 } })
  t.teardown(() => site.close())
  const pagesServed = (): number => [...site.gets.values()].reduce((a, b) => a + b, 0)

  for (const extra of [[], ['--max-connections', '1200']]) {
    const cmd = await parseCommand(['browse', '--url', site.url, '--rate', String(RATE), '--duration', String(SECONDS), '--workers', '1', '--quiet', ...extra], { stdout: process.stdout, stderr: process.stderr })
    if (cmd.kind !== 'run') throw new Error('expected a run')
    const label = extra.length ? '1,200 connections' : `default connections (${cmd.opts.pool})`
    const probe = await startProbe(new URL('/', site.url).href, RATE, SECONDS)
    const before = pagesServed()
    const run = runLoadTest({ ...cmd.opts, progress: null, log: () => {} })
    while (pagesServed() === before) await new Promise(resolve => setTimeout(resolve, 1))
    const ref = await probe.go()
    const { summary: s } = await run
    const want = { p90: pct(ref, 90), p99: pct(ref, 99), max: ref.at(-1)! }
    t.ok(want.p90 > 1000 && want.p99 > 1400, `the probe sees the stall: ${JSON.stringify(want)}`)
    const got = { p90: s.totals.latency.p90!, p99: s.totals.latency.p99!, max: s.totals.latency.max! }
    for (const k of ['p90', 'p99', 'max'] as const) {
      t.ok(Math.abs(got[k] - want[k]) <= want[k] * 0.1, `${label}: ${k} ${got[k]} ms within 10% of the probe's ${want[k].toFixed(1)} ms`)
    }
    const a = s.totals.arrivals!
    t.equal(a.intended, RATE * SECONDS, `${label}: every arrival came due`)
    t.equal(a.sent + a.dropped, a.intended)
    t.equal(s.totals.requests, a.sent, 'and every one sent was answered')
    // (an arrival this thread saw only after its second was reported counts in the next)
    const inTimeline = s.timeline.reduce((sum, e) => sum + (e.intended ?? 0), 0)
    t.ok(s.timeline.length >= SECONDS && inTimeline >= a.intended * 0.98, `the timeline shows the intended arrivals of each second: ${s.timeline.map(e => e.intended).join(' ')}`)
  }
})
