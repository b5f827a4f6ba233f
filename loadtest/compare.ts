// npm run loadtest -- compare a/summary.json b/summary.json
// Per endpoint (and for all requests): throughput, p50 and p99 of run a and
// run b, the change, and whether it is beyond the runs' own noise. The noise
// is each run's second-to-second spread: the per-second values of the
// timeline (all requests) and of each endpoint's `seconds` columns go through
// the Mann–Whitney U test (noise.ts). A change is flagged when the test
// rejects "the same distribution" at --alpha AND the change of the whole-run
// figure is at least --min-change: a long run makes a 0.5 % drift
// significant, and nobody should act on it. The page of both runs' curves is compare-html.ts.
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { Value } from '@sinclair/typebox/value'
import { renderCompareHtml } from './compare-html.js'
import { fmtMs, fmtPct, fmtRps, textTable } from './format.js'
import { mannWhitney } from './noise.js'
import { SCHEMA_ID, SummarySchema, type Summary } from './report-json.js'

export const COMPARE_USAGE = `usage: npm run loadtest -- compare <a/summary.json> <b/summary.json> [options]
  the change from run a to run b, per endpoint and for all requests, in throughput (req/s), p50 and p99,
  and whether it is beyond the runs' own noise (Mann–Whitney U test on their per-second values)

  --html <file>         the page of both runs' curves (default: compare.html beside b's summary)
  --json                the comparison as JSON on stdout instead of the table
  --alpha <p>           significance level of the test (default 0.01)
  --min-change <pct>    smallest change of the whole-run figure to flag, in % (default 5)
`

export class CompareUsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'CompareUsageError'
  }
}

export interface CompareOptions {
  alpha: number
  /** fraction, 0.05 = 5 % */
  minChange: number
}

export interface CompareCommand extends CompareOptions {
  kind: 'compare'
  a: string
  b: string
  html: string
  json: boolean
}

export function parseCompareCommand (argv: string[]): CompareCommand {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      html: { type: 'string' },
      json: { type: 'boolean' },
      alpha: { type: 'string' },
      'min-change': { type: 'string' }
    }
  })
  if (positionals.length !== 2) throw new CompareUsageError(`compare takes two summary.json files, got ${positionals.length}`)
  const alpha = values.alpha === undefined ? 0.01 : Number(values.alpha)
  if (!(alpha > 0 && alpha < 1)) throw new CompareUsageError(`--alpha must be between 0 and 1, got "${values.alpha}"`)
  const minChange = values['min-change'] === undefined ? 5 : Number(values['min-change'].replace(/%$/, ''))
  if (!(minChange >= 0)) throw new CompareUsageError(`--min-change must be a percentage >= 0, got "${values['min-change']}"`)
  const [a, b] = positionals
  return { kind: 'compare', a, b, html: values.html ?? join(dirname(b), 'compare.html'), json: values.json === true, alpha, minChange: minChange / 100 }
}

export async function loadSummary (file: string): Promise<Summary> {
  let doc: unknown
  try {
    doc = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`)
  }
  const schema = (doc as { schema?: unknown } | null)?.schema
  if (schema !== SCHEMA_ID) throw new Error(`${file} is not a loadtest summary (${SCHEMA_ID}), its schema is ${JSON.stringify(schema)}`)
  if (!Value.Check(SummarySchema, doc)) {
    const problems = [...Value.Errors(SummarySchema, doc)].slice(0, 5).map(e => `${e.path || '/'}: ${e.message}`)
    throw new Error(`${file} does not match ${SCHEMA_ID}:\n  ${problems.join('\n  ')}`)
  }
  return doc
}

export type Metric = 'rps' | 'p50' | 'p99'

/** One scope's values second by second (null: no response that second). */
export interface Seconds {
  rps: number[]
  p50: Array<number | null>
  p99: Array<number | null>
}

export interface Scope {
  /** the whole-run figures */
  rps: number
  p50: number | null
  p99: number | null
  requests: number
  /** null: the summary has no per-second values for it (written before they were kept) */
  seconds: Seconds | null
}

/** Every scope of a run: '*' (all requests) and each endpoint. */
export function scopesOf (s: Summary): Map<string, Scope> {
  const span = s.timeline.map(e => e.span)
  const out = new Map<string, Scope>()
  out.set('*', {
    rps: s.totals.rps,
    p50: s.totals.latency.p50,
    p99: s.totals.latency.p99,
    requests: s.totals.requests,
    seconds: { rps: s.timeline.map(e => e.rps), p50: s.timeline.map(e => e.p50), p99: s.timeline.map(e => e.p99) }
  })
  for (const e of s.endpoints) {
    const c = e.seconds
    const aligned = c !== undefined && c.requests.length === span.length
    out.set(e.endpoint, {
      rps: e.stats.rps,
      p50: e.stats.latency.p50,
      p99: e.stats.latency.p99,
      requests: e.stats.requests,
      seconds: aligned ? { rps: c.requests.map((n, i) => n / span[i]), p50: c.p50, p99: c.p99 } : null
    })
  }
  return out
}

export type Verdict = 'better' | 'worse' | 'within noise' | 'not measured'

export interface Row {
  endpoint: string
  metric: Metric
  a: number | null
  b: number | null
  /** (b − a) / a of the whole-run figures; null when either is missing or a is 0 */
  change: number | null
  /** the rank test on per-second values; null when it could not run (a run without the endpoint, fewer than 2 seconds) */
  test: { u: number, p: number, nA: number, nB: number, exact: boolean } | null
  /** the test rejected the same distribution at alpha and |change| ≥ min-change */
  beyondNoise: boolean
  verdict: Verdict
  note: string | null
}

export interface Comparison extends CompareOptions {
  method: string
  a: RunInfo
  b: RunInfo
  /** what differs between the two runs' set-ups (scenario, model, duration …) */
  differences: string[]
  rows: Row[]
}

export interface RunInfo { file: string, url: string, scenario: string, model: string, startedAt: string, duration: number }

const METHOD = 'Mann–Whitney U test on per-second values (two-sided); flagged when p < alpha and |change| ≥ min-change'

function values (xs: ReadonlyArray<number | null>): number[] {
  return xs.filter((x): x is number => x !== null && Number.isFinite(x))
}

export function compareScope (endpoint: string, metric: Metric, a: Scope | undefined, b: Scope | undefined, o: CompareOptions): Row {
  const va = a?.[metric] ?? null
  const vb = b?.[metric] ?? null
  const change = va !== null && vb !== null && va > 0 ? (vb - va) / va : null
  const row: Row = { endpoint, metric, a: va, b: vb, change, test: null, beyondNoise: false, verdict: 'not measured', note: null }
  if (!a || !b) {
    row.note = `only in run ${a ? 'a' : 'b'}`
    return row
  }
  if (!a.seconds || !b.seconds) {
    row.note = 'no per-second values in a summary (written by an older version): change shown, noise not estimated'
    return row
  }
  const sa = values(a.seconds[metric])
  const sb = values(b.seconds[metric])
  if (sa.length < 2 || sb.length < 2) {
    row.note = 'fewer than 2 seconds with responses in a run: noise not estimated'
    return row
  }
  const w = mannWhitney(sa, sb)
  row.test = { u: w.u, p: w.p, nA: w.nA, nB: w.nB, exact: w.exact }
  const significant = w.p < o.alpha
  row.beyondNoise = significant && change !== null && Math.abs(change) >= o.minChange
  // more throughput is better; more latency is worse
  const up = (vb ?? 0) > (va ?? 0)
  row.verdict = row.beyondNoise ? ((metric === 'rps') === up ? 'better' : 'worse') : 'within noise'
  if (!row.beyondNoise && significant && change !== null) row.note = `significant, but below --min-change ${fmtPct(o.minChange, 0)}`
  return row
}

function runInfo (file: string, s: Summary): RunInfo {
  return { file, url: s.url, scenario: s.scenario.name, model: s.model, startedAt: s.startedAt, duration: s.duration }
}

export function compareSummaries (a: Summary, b: Summary, o: CompareOptions & { fileA?: string, fileB?: string }): Comparison {
  const sa = scopesOf(a)
  const sb = scopesOf(b)
  // all requests first, then endpoints by their requests in either run
  const endpoints = [...new Set([...sa.keys(), ...sb.keys()])].filter(e => e !== '*')
    .sort((x, y) => Math.max(sb.get(y)?.requests ?? 0, sa.get(y)?.requests ?? 0) - Math.max(sb.get(x)?.requests ?? 0, sa.get(x)?.requests ?? 0) || x.localeCompare(y))
  const rows: Row[] = []
  for (const e of ['*', ...endpoints]) {
    for (const m of ['rps', 'p50', 'p99'] as const) rows.push(compareScope(e, m, sa.get(e), sb.get(e), o))
  }
  const differences: string[] = []
  if (a.scenario.name !== b.scenario.name) differences.push(`scenario ${a.scenario.name} vs ${b.scenario.name}`)
  if (a.model !== b.model) differences.push(`${a.model} vs ${b.model} model`)
  if (a.url !== b.url) differences.push(`url ${a.url} vs ${b.url}`)
  // The same scenario name over other requests: a one-line run (autocannon's
  // habit) keeps its path in the mix, not in the url, which is the origin.
  const requests = (s: Summary): string => s.scenario.mix.map(m => ['method' in m ? m.method : undefined, m.path ?? m.action, `×${m.weight}`].filter(Boolean).join(' ')).join(', ')
  if (a.scenario.name === b.scenario.name && requests(a) !== requests(b)) differences.push(`requests ${requests(a)} vs ${requests(b)}`)
  if (Math.abs(a.duration - b.duration) > Math.max(1, 0.1 * a.duration)) differences.push(`duration ${a.duration} s vs ${b.duration} s`)
  const plan = (s: Summary): string => JSON.stringify(s.stages.map(st => [st.name, st.planned.duration, st.planned.from, st.planned.to]))
  if (plan(a) !== plan(b)) differences.push('stages differ (names, lengths or targets): per-second values then mix different loads')
  return { method: METHOD, alpha: o.alpha, minChange: o.minChange, a: runInfo(o.fileA ?? 'a', a), b: runInfo(o.fileB ?? 'b', b), differences, rows }
}

function fmtValue (m: Metric, v: number | null): string {
  return v === null ? '–' : m === 'rps' ? fmtRps(v) : fmtMs(v)
}

function fmtP (p: number): string {
  return p < 0.0001 ? '<0.0001' : p.toFixed(4)
}

export function renderComparison (c: Comparison): string {
  const out: string[] = []
  out.push(`a  ${c.a.file}: ${c.a.scenario} → ${c.a.url} · ${c.a.model} model · ${c.a.duration.toFixed(1)} s · ${c.a.startedAt}`)
  out.push(`b  ${c.b.file}: ${c.b.scenario} → ${c.b.url} · ${c.b.model} model · ${c.b.duration.toFixed(1)} s · ${c.b.startedAt}`)
  for (const d of c.differences) out.push(`note: the runs differ: ${d}`)
  out.push('')
  const label = { rps: 'req/s', p50: 'p50 ms', p99: 'p99 ms' } as const
  out.push(textTable([
    ['endpoint', 'metric', 'a', 'b', 'change', 'p', 'verdict'],
    ...c.rows.map((r, i) => [
      i > 0 && c.rows[i - 1].endpoint === r.endpoint ? '' : r.endpoint === '*' ? 'all requests' : r.endpoint,
      label[r.metric],
      fmtValue(r.metric, r.a),
      fmtValue(r.metric, r.b),
      r.change === null ? '–' : `${r.change >= 0 ? '+' : ''}${(r.change * 100).toFixed(1)}%`,
      r.test ? fmtP(r.test.p) : '–',
      (r.beyondNoise ? `${r.verdict.toUpperCase()}, beyond noise` : r.verdict) + (r.note ? ` (${r.note})` : '')
    ])
  ], ['l', 'l', 'r', 'r', 'r', 'r', 'l']))
  out.push('')
  const flagged = c.rows.filter(r => r.beyondNoise)
  out.push(flagged.length === 0
    ? `no change beyond the runs' noise (${c.method}; alpha ${c.alpha}, min-change ${fmtPct(c.minChange, 0)})`
    : `${flagged.length} change(s) beyond the runs' noise (${c.method}; alpha ${c.alpha}, min-change ${fmtPct(c.minChange, 0)})`)
  return out.join('\n') + '\n'
}

export async function runCompare (cmd: CompareCommand, io: { stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream }): Promise<number> {
  let a: Summary
  let b: Summary
  try {
    [a, b] = await Promise.all([loadSummary(cmd.a), loadSummary(cmd.b)])
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  const c = compareSummaries(a, b, { alpha: cmd.alpha, minChange: cmd.minChange, fileA: cmd.a, fileB: cmd.b })
  io.stdout.write(cmd.json ? JSON.stringify(c, null, 2) + '\n' : renderComparison(c))
  await writeFile(cmd.html, renderCompareHtml(c, a, b))
  io.stderr.write(`wrote ${cmd.html}\n`)
  return 0
}
