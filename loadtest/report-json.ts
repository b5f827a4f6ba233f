// summary.json: the machine-readable result of a run. The schema below is
// the contract (tests validate every summary against it); bump SCHEMA_ID on
// an incompatible change.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { Collector, Stats } from './collect.js'
import type { LoadModel, PlannedStage } from './stages.js'
import type { ThresholdResult } from './thresholds.js'
import type { Scenario } from './scenarios.js'
import type { CapacityPlan } from './capacity.js'

export const SCHEMA_ID = 'flashcrowd-loadtest/summary@1'

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()])
const Count = Type.Integer({ minimum: 0 })
const Ms = Nullable(Type.Number({ minimum: 0 }))
const Ratio = Nullable(Type.Number({ minimum: 0, maximum: 1 }))

export const StatsSchema = Type.Object({
  requests: Count,
  duration: Type.Number({ minimum: 0, description: 'seconds' }),
  rps: Type.Number({ minimum: 0 }),
  reads: Count,
  writes: Count,
  errors: Count,
  errorRate: Type.Number({ minimum: 0, maximum: 1 }),
  transportErrors: Count,
  timeouts: Count,
  bytes: Count,
  status: Type.Record(Type.String({ pattern: '^\\d{3}$' }), Count),
  non2xx: Type.Record(Type.String({ pattern: '^\\d{3}$' }), Count),
  cache: Type.Object({
    hit: Count, stale: Count, miss: Count, pass: Count, none: Count, collapsed: Count, hitRatio: Ratio
  }),
  originRequests: Count,
  originPerRequest: Ratio,
  latency: Type.Object({ min: Ms, mean: Ms, p50: Ms, p90: Ms, p95: Ms, p99: Ms, p99_9: Ms, max: Ms }, { description: 'milliseconds' })
})

const StepSchema = Type.Object({
  index: Count,
  start: Type.Number({ minimum: 0 }),
  duration: Type.Number({ exclusiveMinimum: 0 }),
  connections: Type.Integer({ minimum: 1 }),
  rate: Nullable(Type.Integer({ minimum: 1 }))
})

export const StageSummarySchema = Type.Object({
  name: Type.String(),
  index: Count,
  planned: Type.Object({ start: Type.Number(), duration: Type.Number(), from: Type.Number(), to: Type.Number(), unit: Type.Union([Type.Literal('connections'), Type.Literal('req/s')]) }),
  start: Type.Number({ description: 'actual start, seconds since the run began' }),
  end: Type.Number(),
  steps: Type.Array(StepSchema),
  stats: StatsSchema
})

export const EndpointSummarySchema = Type.Object({
  endpoint: Type.String(),
  share: Type.Number({ minimum: 0, maximum: 1 }),
  stats: StatsSchema
})

export const SecondSchema = Type.Object({
  t: Count,
  stage: Type.String(),
  connections: Count,
  rate: Nullable(Type.Integer({ minimum: 1 })),
  requests: Count,
  errors: Count,
  rps: Type.Number({ minimum: 0 }),
  p50: Ms,
  p90: Ms,
  p99: Ms,
  max: Ms,
  hitRatio: Ratio
})

export const ThresholdResultSchema = Type.Object({
  expr: Type.String(),
  metric: Type.String(),
  scope: Type.Union([Type.Literal('total'), Type.Literal('stage'), Type.Literal('endpoint')]),
  name: Nullable(Type.String()),
  op: Type.Union([Type.Literal('<'), Type.Literal('<='), Type.Literal('>'), Type.Literal('>=')]),
  limit: Type.Number(),
  actual: Nullable(Type.Number()),
  pass: Type.Boolean(),
  note: Nullable(Type.String())
})

const RoleCount = Type.Object({
  instances: Nullable(Type.Integer({ minimum: 1 })),
  perNodeRps: Nullable(Type.Number({ minimum: 0 })),
  neededRps: Type.Number({ minimum: 0 }),
  basis: Type.String()
})

export const CapacitySchema = Type.Object({
  users: Type.Integer({ minimum: 1 }),
  thinkTime: Type.Number({ exclusiveMinimum: 0 }),
  headroom: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
  tier: Type.Object({ cache: Type.Integer({ minimum: 0 }), frontend: Type.Integer({ minimum: 1 }), backend: Type.Integer({ minimum: 1 }) }),
  requestRate: Type.Number({ minimum: 0 }),
  hitRatio: Ratio,
  originShare: Type.Number({ minimum: 0, maximum: 1 }),
  writeShare: Type.Number({ minimum: 0, maximum: 1 }),
  cache: RoleCount,
  frontend: RoleCount,
  backend: RoleCount,
  model: Type.Array(Type.String()),
  assumptions: Type.Array(Type.String())
})

export const SummarySchema = Type.Object({
  schema: Type.Literal(SCHEMA_ID),
  scenario: Type.Object({
    name: Type.String(),
    description: Type.String(),
    zipf: Type.Number(),
    mix: Type.Array(Type.Object({ action: Type.String(), weight: Type.Number(), path: Type.Optional(Type.String()) }))
  }),
  url: Type.String(),
  model: Type.Union([Type.Literal('closed'), Type.Literal('open')]),
  seed: Type.Integer(),
  startedAt: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T', description: 'ISO 8601' }),
  finishedAt: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T', description: 'ISO 8601' }),
  duration: Type.Number({ minimum: 0 }),
  pages: Type.Integer({ minimum: 0, description: 'pages read from the sitemap' }),
  aborted: Type.Boolean(),
  totals: StatsSchema,
  stages: Type.Array(StageSummarySchema),
  endpoints: Type.Array(EndpointSummarySchema),
  timeline: Type.Array(SecondSchema),
  thresholds: Type.Array(ThresholdResultSchema),
  capacity: Nullable(CapacitySchema),
  pass: Type.Boolean()
}, { $id: SCHEMA_ID })

export type Summary = Static<typeof SummarySchema>
export type StageSummary = Static<typeof StageSummarySchema>
export type EndpointSummary = Static<typeof EndpointSummarySchema>
export type SecondSummary = Static<typeof SecondSchema>

export interface SummaryInput {
  scenario: Scenario
  url: string
  model: LoadModel
  seed: number
  startedAt: Date
  finishedAt: Date
  pages: number
  aborted: boolean
  plan: readonly PlannedStage[]
  collector: Collector
}

/** Summary without thresholds and capacity (they are computed from it, see run.ts). */
export function buildSummary (i: SummaryInput): Summary {
  const c = i.collector
  const duration = c.duration
  const totals: Stats = c.total.stats(duration)
  const stages: StageSummary[] = i.plan.map(p => {
    const timing = c.stageTimings.find(s => s.index === p.index)
    const start = timing?.start ?? 0
    const end = timing?.end ?? start
    const group = c.stages.get(p.name)
    return {
      name: p.name,
      index: p.index,
      planned: { start: p.start, duration: p.duration, from: p.from, to: p.to, unit: i.model === 'open' ? 'req/s' : 'connections' },
      start: r3(start),
      end: r3(end),
      steps: p.steps.map(s => ({ index: s.index, start: s.start, duration: s.duration, connections: s.connections, rate: s.rate })),
      stats: group ? group.stats(end - start) : emptyStats()
    }
  })
  const endpoints: EndpointSummary[] = [...c.endpoints.entries()]
    .map(([endpoint, g]) => ({ endpoint, share: totals.requests > 0 ? r3(g.requests / totals.requests) : 0, stats: g.stats(duration) }))
    .sort((a, b) => b.stats.requests - a.stats.requests || a.endpoint.localeCompare(b.endpoint))
  // autocannon stops its connections at the end of the last step: a trailing
  // sliver of a second would show a meaningless rate; its samples stay in the totals
  const seconds = c.seconds.length > 1 && duration - c.seconds[c.seconds.length - 1].t < 0.5 ? c.seconds.slice(0, -1) : c.seconds
  const timeline: SecondSummary[] = seconds.map(s => {
    // the last second is usually partial: rate over the part that ran
    const span = Math.min(1, Math.max(0.001, duration - s.t))
    const st = s.group.stats(span)
    return {
      t: s.t, stage: s.stage, connections: s.connections, rate: s.rate,
      requests: st.requests, errors: st.errors, rps: st.rps,
      p50: st.latency.p50, p90: st.latency.p90, p99: st.latency.p99, max: st.latency.max,
      hitRatio: st.cache.hitRatio
    }
  })
  return {
    schema: SCHEMA_ID,
    scenario: { name: i.scenario.name, description: i.scenario.description, zipf: i.scenario.zipf, mix: i.scenario.mix.map(m => ({ ...m })) },
    url: i.url,
    model: i.model,
    seed: i.seed,
    startedAt: i.startedAt.toISOString(),
    finishedAt: i.finishedAt.toISOString(),
    duration: r3(duration),
    pages: i.pages,
    aborted: i.aborted,
    totals,
    stages,
    endpoints,
    timeline,
    thresholds: [],
    capacity: null,
    pass: true
  }
}

export function emptyStats (): Stats {
  return {
    requests: 0, duration: 0, rps: 0, reads: 0, writes: 0, errors: 0, errorRate: 0, transportErrors: 0, timeouts: 0, bytes: 0,
    status: {}, non2xx: {},
    cache: { hit: 0, stale: 0, miss: 0, pass: 0, none: 0, collapsed: 0, hitRatio: null },
    originRequests: 0, originPerRequest: null,
    latency: { min: null, mean: null, p50: null, p90: null, p95: null, p99: null, p99_9: null, max: null }
  }
}

export function attachResults (s: Summary, thresholds: ThresholdResult[], capacity: CapacityPlan | null): Summary {
  return { ...s, thresholds, capacity, pass: thresholds.every(t => t.pass) }
}

function r3 (x: number): number { return Math.round(x * 1000) / 1000 }

export async function writeSummaryJson (dir: string, s: Summary): Promise<string> {
  const file = join(dir, 'summary.json')
  await writeFile(file, JSON.stringify(s, null, 2) + '\n')
  return file
}
