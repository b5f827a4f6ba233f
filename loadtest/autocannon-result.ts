// A run's outcome as autocannon's result object (its `--json` output, v8)
// and its tables. The field set, order and types are autocannon's, so a
// script that parses autocannon's JSON reads ours; the figures are ours:
// - latency: every response's time from request sent to response complete,
//   from the run's HDR histogram (microseconds, shown in ms with three
//   decimals where autocannon truncates to whole ms); in the open model
//   (-R) corrected for coordinated omission, as autocannon does;
// - requests, throughput: one sample per second of the run's timeline
//   (responses, response bytes), in an HDR histogram built as autocannon
//   builds its own, so their percentiles round alike;
// - errors are transport errors (refused, reset, timed out), as autocannon's.
// The tables are autocannon's own printResult, fed this object.
import * as hdr from 'hdr-histogram-js'
import type { AutocannonView } from './autocannon-args.js'
import type { RunOutcome } from './run.js'

/** autocannon's percentiles, in its key form (p2_5 = 2.5 %). */
export const PERCENTILES = [0.001, 0.01, 0.1, 1, 2.5, 10, 25, 50, 75, 90, 97.5, 99, 99.9, 99.99, 99.999] as const

export type PercentileKey = 'p0_001' | 'p0_01' | 'p0_1' | 'p1' | 'p2_5' | 'p10' | 'p25' | 'p50' | 'p75' | 'p90' | 'p97_5' | 'p99' | 'p99_9' | 'p99_99' | 'p99_999'

export type HistogramStats = { average: number, mean: number, stddev: number, min: number, max: number } & Record<PercentileKey, number>

export interface AutocannonResult {
  title?: string
  url: string
  connections: number
  sampleInt: number
  pipelining: number
  workers: number
  duration: number
  samples: number
  start: string
  finish: string
  errors: number
  timeouts: number
  mismatches: number
  non2xx: number
  resets: number
  '1xx': number
  '2xx': number
  '3xx': number
  '4xx': number
  '5xx': number
  statusCodeStats: Record<string, { count: number }>
  latency: HistogramStats & { totalCount: number }
  requests: HistogramStats & { total: number, sent: number }
  throughput: HistogramStats & { total: number }
}

function key (p: number): PercentileKey {
  return `p${p}`.replace('.', '_') as PercentileKey
}

/** autocannon's figures of a histogram (hdr-histogram-percentiles-obj): mean and stddev rounded up to 1/100, min the lowest non-zero value. */
function histStats (h: hdr.Histogram, scale: number, digits: number): HistogramStats {
  const r = (v: number): number => digits < 0 ? v / scale : Math.round((v / scale) * 10 ** digits) / 10 ** digits
  const empty = h.totalCount === 0
  const mean = empty ? 0 : Math.ceil((h.mean / scale) * 100) / 100
  const out = {
    average: mean,
    mean,
    stddev: empty ? 0 : Math.ceil((h.stdDeviation / scale) * 100) / 100,
    min: empty || h.minNonZeroValue >= Number.MAX_SAFE_INTEGER ? 0 : r(h.minNonZeroValue),
    max: r(h.maxValue)
  } as HistogramStats
  for (const p of PERCENTILES) out[key(p)] = r(h.getValueAtPercentile(p))
  return out
}

/** As autocannon builds its per-second histograms (lib/histUtil.js). */
function sampleHistogram (highest: number): hdr.Histogram {
  return hdr.build({ bitBucketSize: 64, autoResize: true, lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: 3 })
}

export function autocannonResult (outcome: RunOutcome, view: AutocannonView): AutocannonResult {
  const { summary, collector } = outcome
  const total = collector.total
  const requests = sampleHistogram(1_000_000)
  const throughput = sampleHistogram(100_000_000_000)
  for (const e of summary.timeline) {
    // one sample a second; the buckets of a run over an hour are wider
    const per = e.span > 1 ? 1 / e.span : 1
    requests.recordValue(Math.round(e.requests * per))
    throughput.recordValue(Math.round((e.bytes ?? 0) * per))
  }
  const byClass = [0, 0, 0, 0, 0]
  const statusCodeStats: Record<string, { count: number }> = {}
  for (const [code, n] of Object.entries(total.status)) {
    const c = Math.floor(Number(code) / 100) - 1
    if (c >= 0 && c < 5) byClass[c] += n
    statusCodeStats[code] = { count: n }
  }
  const answered = total.requests
  // a timed closed-model run stops with one request in flight on each connection, which autocannon counts as sent
  const inFlight = view.amount === undefined && summary.model === 'closed' && !summary.aborted ? view.connections : 0
  const latency = histStats(total.hist, 1000, 3)
  const req = histStats(requests, 1, -1)
  const thr = histStats(throughput, 1, -1)
  return {
    ...(view.title === undefined ? {} : { title: view.title }),
    url: view.url,
    connections: view.connections,
    sampleInt: 1000,
    pipelining: 1,
    workers: view.workers,
    duration: Math.round(summary.duration * 100) / 100,
    samples: summary.timeline.length,
    start: summary.startedAt,
    finish: summary.finishedAt,
    errors: total.transportErrors,
    timeouts: total.timeouts,
    mismatches: 0,
    non2xx: byClass[0] + byClass[2] + byClass[3] + byClass[4],
    resets: 0,
    '1xx': byClass[0],
    '2xx': byClass[1],
    '3xx': byClass[2],
    '4xx': byClass[3],
    '5xx': byClass[4],
    statusCodeStats,
    latency: { ...latency, totalCount: total.hist.totalCount },
    requests: { ...withTotal(req, answered), sent: answered + total.transportErrors + inFlight },
    throughput: withTotal(thr, total.bytes)
  }
}

/** autocannon's key order: total after max, before the percentiles. */
function withTotal (s: HistogramStats, total: number): HistogramStats & { total: number } {
  const { average, mean, stddev, min, max, ...pcts } = s
  return { average, mean, stddev, min, max, total, ...pcts } as HistogramStats & { total: number }
}

/** autocannon's tables and closing lines, from autocannon's own printResult. */
export async function autocannonTables (r: AutocannonResult, o: { outputStream: NodeJS.WritableStream, latencyTable: boolean, statusCodes: boolean }): Promise<string> {
  const { default: autocannon } = await import('autocannon')
  const asTheirs = { ...r, start: new Date(r.start), finish: new Date(r.finish), socketPath: undefined, title: r.title } as unknown as Parameters<typeof autocannon.printResult>[0]
  return autocannon.printResult(asTheirs, { outputStream: o.outputStream, renderLatencyTable: o.latencyTable, renderStatusCodes: o.statusCodes } as Parameters<typeof autocannon.printResult>[1])
}
