// Thresholds fail a run, like k6's: `p99<250`, `errors<0.1%`, `hit>0.95`,
// `dropped<0.1%` (open model: share of the arrivals never sent), scoped to an endpoint or a stage with `p99{endpoint=/news/:slug}<300` or
// `rps{stage=hold}>1000`.
import type { Stats } from './collect.js'

export type ThresholdMetric =
  | 'p50' | 'p90' | 'p95' | 'p99' | 'p99.9' | 'max' | 'min' | 'avg'
  | 'rps' | 'requests' | 'errors' | 'hit' | 'origin' | 'late' | 'dropped'
export type ThresholdOp = '<' | '<=' | '>' | '>='

export interface Threshold {
  expr: string
  metric: ThresholdMetric
  scope: 'total' | 'stage' | 'endpoint'
  /** stage or endpoint name when scoped */
  name: string | null
  op: ThresholdOp
  /** in the metric's unit: ms for latencies, a fraction for errors/hit/origin */
  limit: number
}

export interface ThresholdResult extends Threshold {
  actual: number | null
  pass: boolean
  /** why it failed without a value, e.g. no samples */
  note: string | null
}

export class ThresholdError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ThresholdError'
  }
}

const LATENCY = new Set(['p50', 'p90', 'p95', 'p99', 'p99.9', 'max', 'min', 'avg'])
const RATIO = new Set(['errors', 'hit', 'origin', 'late', 'dropped'])
const ALIASES: Record<string, ThresholdMetric> = {
  p999: 'p99.9', p99_9: 'p99.9', mean: 'avg', error: 'errors', errorRate: 'errors', hitRatio: 'hit', req: 'requests', count: 'requests'
}
const METRICS = ['p50', 'p90', 'p95', 'p99', 'p99.9', 'max', 'min', 'avg', 'rps', 'requests', 'errors', 'hit', 'origin', 'late', 'dropped']

const RE = /^\s*([A-Za-z][\w.]*)\s*(?:\{\s*(endpoint|stage)\s*=\s*([^}]+?)\s*\})?\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*(%|ms|s)?\s*$/

export function parseThreshold (expr: string): Threshold {
  const m = RE.exec(expr)
  if (!m) {
    throw new ThresholdError(`bad threshold "${expr}": expected METRIC[{endpoint=…|stage=…}] (<|<=|>|>=) VALUE, e.g. p99<250, errors<0.1%, hit>0.95, p99{endpoint=/news/:slug}<300`)
  }
  const [, rawMetric, scopeKey, scopeName, op, num, unit] = m
  const metric = (ALIASES[rawMetric] ?? rawMetric) as ThresholdMetric
  if (!METRICS.includes(metric)) throw new ThresholdError(`bad threshold "${expr}": unknown metric "${rawMetric}" (one of ${METRICS.join(', ')})`)
  let limit = Number(num)
  if (LATENCY.has(metric)) {
    if (unit === '%') throw new ThresholdError(`bad threshold "${expr}": ${metric} is a latency in ms (or s), not a percentage`)
    if (unit === 's') limit *= 1000
  } else if (RATIO.has(metric)) {
    if (unit === 'ms' || unit === 's') throw new ThresholdError(`bad threshold "${expr}": ${metric} is a ratio, write 0.95 or 95%`)
    if (unit === '%') limit /= 100
    else if (limit > 1) throw new ThresholdError(`bad threshold "${expr}": ${metric} is a ratio between 0 and 1; for a percentage add %, e.g. ${metric}${op}${num}%`)
  } else if (unit) {
    throw new ThresholdError(`bad threshold "${expr}": ${metric} takes a plain number`)
  }
  return {
    expr: expr.trim(),
    metric,
    scope: (scopeKey as 'endpoint' | 'stage' | undefined) ?? 'total',
    name: scopeName ?? null,
    op: op as ThresholdOp,
    limit
  }
}

export function metricValue (metric: ThresholdMetric, s: Stats): number | null {
  switch (metric) {
    case 'p50': return s.latency.p50
    case 'p90': return s.latency.p90
    case 'p95': return s.latency.p95
    case 'p99': return s.latency.p99
    case 'p99.9': return s.latency.p99_9
    case 'max': return s.latency.max
    case 'min': return s.latency.min
    case 'avg': return s.latency.mean
    case 'rps': return s.rps
    case 'requests': return s.requests
    case 'errors': return s.requests + s.transportErrors > 0 ? s.errorRate : null
    case 'hit': return s.cache.hitRatio
    case 'origin': return s.originPerRequest
    // closed model: no arrival clock, nothing to be late for
    case 'late': return s.arrivals === null ? null : s.arrivals.lateRatio
    case 'dropped': return s.arrivals === null ? null : s.arrivals.droppedRatio
  }
}

function compare (a: number, op: ThresholdOp, b: number): boolean {
  switch (op) {
    case '<': return a < b
    case '<=': return a <= b
    case '>': return a > b
    case '>=': return a >= b
  }
}

export interface ThresholdScopes {
  total: Stats
  stages: ReadonlyMap<string, Stats>
  endpoints: ReadonlyMap<string, Stats>
}

/** A threshold with nothing to measure (unknown stage, no cache header for `hit`) fails: silence is not a pass. */
export function evaluateThreshold (t: Threshold, scopes: ThresholdScopes): ThresholdResult {
  let stats: Stats | undefined
  if (t.scope === 'total') stats = scopes.total
  else if (t.scope === 'stage') stats = scopes.stages.get(t.name ?? '')
  else stats = scopes.endpoints.get(t.name ?? '')
  if (!stats) {
    const known = [...(t.scope === 'stage' ? scopes.stages : scopes.endpoints).keys()].join(', ')
    return { ...t, actual: null, pass: false, note: `no ${t.scope} "${t.name}" in this run (have: ${known || 'none'})` }
  }
  const actual = metricValue(t.metric, stats)
  if (actual === null) {
    const why = t.metric === 'hit'
      ? 'no response carried X-Cache or Cache-Status'
      : (t.metric === 'late' || t.metric === 'dropped') && stats.arrivals === null ? 'closed model: requests have no intended time (use --rate)' : 'no samples'
    return { ...t, actual: null, pass: false, note: why }
  }
  return { ...t, actual, pass: compare(actual, t.op, t.limit), note: null }
}

export function evaluateThresholds (ts: readonly Threshold[], scopes: ThresholdScopes): ThresholdResult[] {
  return ts.map(t => evaluateThreshold(t, scopes))
}

/** Human form of a value in the threshold's unit. */
export function formatThresholdValue (metric: ThresholdMetric, v: number | null): string {
  if (v === null) return 'n/a'
  if (LATENCY.has(metric)) return `${+v.toFixed(2)} ms`
  if (RATIO.has(metric)) return `${+(v * 100).toFixed(3)}%`
  if (metric === 'rps') return `${+v.toFixed(1)} req/s`
  return String(v)
}
