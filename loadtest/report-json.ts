// summary.json: the machine-readable result of a run. The schema below is
// the contract (tests validate every summary against it); bump SCHEMA_ID on
// an incompatible change.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { Collector } from './collect.js'
import type { Stats } from './group.js'
import { plannedRequests, shareOf, type LoadModel, type PlannedStage } from './stages.js'
import type { ThresholdResult } from './thresholds.js'
import type { Scenario } from './scenarios.js'
import type { CapacityPlan } from './capacity.js'

export const SCHEMA_ID = 'flashcrowd-loadtest/summary@2'

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
  latency: Type.Object({ min: Ms, mean: Ms, p50: Ms, p90: Ms, p95: Ms, p99: Ms, p99_9: Ms, max: Ms }, { description: 'milliseconds; in the open model counted from each request\'s intended send time' }),
  arrivals: Nullable(Type.Object({
    intended: Count,
    sent: Count,
    late: Count,
    lagged: Count,
    dropped: Count,
    lateRatio: Type.Number({ minimum: 0, maximum: 1 }),
    droppedRatio: Type.Number({ minimum: 0, maximum: 1 }),
    laggedRatio: Type.Number({ minimum: 0, maximum: 1 })
  }, { description: 'open model: arrivals that came due, were sent, sent over 10 ms late (lagged: late with a connection free, the generator\'s own delay), or dropped (no connection within the timeout); null in the closed model' }))
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
  stats: StatsSchema,
  seconds: Type.Optional(Type.Object({
    requests: Type.Array(Count),
    p50: Type.Array(Ms),
    p99: Type.Array(Ms)
  }, { description: 'the endpoint\'s part of each timeline entry, column by column: index i belongs to timeline[i] (absent in summaries written before it was added)' }))
})

export const SecondSchema = Type.Object({
  t: Count,
  span: Type.Number({ exclusiveMinimum: 0, description: 'seconds this entry covers: 1, more on runs over an hour (the timeline keeps at most 3600 entries), less for the last' }),
  stage: Type.String(),
  connections: Count,
  rate: Nullable(Type.Integer({ minimum: 1 })),
  requests: Count,
  intended: Nullable(Count),
  sent: Nullable(Count),
  late: Nullable(Count),
  dropped: Nullable(Count),
  errors: Count,
  errorRate: Type.Number({ minimum: 0, maximum: 1 }),
  rps: Type.Number({ minimum: 0 }),
  bytes: Type.Optional(Type.Integer({ minimum: 0, description: 'response bytes read in this entry (absent in summaries written before it was added)' })),
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

export const AgentSummarySchema = Type.Object({
  id: Type.String({ description: "'local' for a run on this machine, else the agent's id" }),
  host: Type.String(),
  workers: Type.Integer({ minimum: 1, description: 'generator threads' }),
  share: Type.Number({ minimum: 0, maximum: 1, description: 'share of the planned load it was given' }),
  requests: Count,
  errors: Count,
  transportErrors: Count,
  lost: Nullable(Type.Object({
    at: Type.Number({ minimum: 0, description: 'seconds since the start when it stopped reporting' }),
    reason: Type.String(),
    missedShare: Type.Number({ minimum: 0, maximum: 1, description: 'share of the whole run\'s planned load it did not send' }),
    missedRequests: Nullable(Count),
    missedBasis: Type.String()
  }))
})

export const KneeResultSchema = Type.Object({
  url: Type.String(),
  thresholds: Type.Array(Type.String()),
  minAchieved: Type.Number({ minimum: 0, maximum: 1 }),
  steps: Type.Array(Type.Object({
    stage: Type.String(),
    rate: Type.Number({ minimum: 0, description: 'target req/s' }),
    achieved: Type.Number({ minimum: 0 }),
    requests: Count,
    p50: Ms,
    p99: Ms,
    errorRate: Type.Number({ minimum: 0, maximum: 1 }),
    late: Type.Number({ minimum: 0, maximum: 1, description: 'share of the arrivals sent over 10 ms late' }),
    dropped: Type.Number({ minimum: 0, maximum: 1, description: 'share of the arrivals never sent' }),
    pass: Type.Boolean(),
    failed: Type.Array(Type.String()),
    limitedBy: Nullable(Type.Union([Type.Literal('target'), Type.Literal('generator')]))
  })),
  lastPassingRate: Nullable(Type.Number({ minimum: 0 })),
  brokeAt: Nullable(Type.Object({ rate: Type.Number(), reasons: Type.Array(Type.String()), by: Type.Union([Type.Literal('target'), Type.Literal('generator')], { description: 'generator: the load generator could not keep to its clock; the knee is a lower bound of the target' }) })),
  hitRatio: Ratio,
  originShare: Ratio,
  writeShare: Ratio
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
  aborted: Type.Boolean({ description: 'the run stopped before its end (interrupted, or an abort threshold failed)' }),
  abortedBy: Nullable(Type.Object({ expr: Type.String(), at: Type.Number(), actual: Nullable(Type.Number()) }, { description: 'the abort threshold (--abort-on) that stopped every generator' })),
  workers: Type.Integer({ minimum: 1, description: 'generator threads over all machines' }),
  agents: Type.Array(AgentSummarySchema, { description: 'each machine that generated load; their requests add up to totals.requests' }),
  totals: StatsSchema,
  stages: Type.Array(StageSummarySchema),
  endpoints: Type.Array(EndpointSummarySchema),
  timeline: Type.Array(SecondSchema),
  thresholds: Type.Array(ThresholdResultSchema),
  capacity: Nullable(CapacitySchema),
  knee: Nullable(Type.Object({
    site: KneeResultSchema,
    frontend: Nullable(KneeResultSchema),
    backend: Nullable(KneeResultSchema)
  }, { description: 'a knee search (--knee): the curve and the last passing rate, per role searched' })),
  pass: Type.Boolean()
}, { $id: SCHEMA_ID })

export type Summary = Static<typeof SummarySchema>
export type StageSummary = Static<typeof StageSummarySchema>
export type EndpointSummary = Static<typeof EndpointSummarySchema>
export type SecondSummary = Static<typeof SecondSchema>
export type AgentSummary = Static<typeof AgentSummarySchema>

export interface SummaryInput {
  scenario: Scenario
  url: string
  model: LoadModel
  seed: number
  startedAt: Date
  finishedAt: Date
  pages: number
  aborted: boolean
  abortedBy?: Summary['abortedBy']
  plan: readonly PlannedStage[]
  collector: Collector
  /** agent id → generator threads on it */
  workers: ReadonlyMap<string, number>
}

/** The machines that generated load, from the collector's sources (one per thread). */
export function agentSummaries (c: Collector, plan: readonly PlannedStage[], model: LoadModel, workers: ReadonlyMap<string, number>): AgentSummary[] {
  const byAgent = new Map<string, AgentSummary>()
  for (const s of c.sources.values()) {
    let a = byAgent.get(s.agent)
    if (!a) {
      a = { id: s.agent, host: s.host, workers: workers.get(s.agent) ?? 0, share: 0, requests: 0, errors: 0, transportErrors: 0, lost: null }
      byAgent.set(s.agent, a)
    }
    a.share += s.share
    a.requests += s.requests
    a.errors += s.errors
    a.transportErrors += s.transportErrors
    if (s.lostAt !== null) {
      const missedShare = shareOf(plan, s.slices, s.lostAt)
      // closed model: what it would have sent is what it was sending
      const missedRequests = model === 'open' ? plannedRequests(plan, s.slices, s.lostAt) : null
      if (!a.lost) a.lost = { at: r3(s.lostAt), reason: s.lostReason ?? 'lost', missedShare: 0, missedRequests: model === 'open' ? 0 : null, missedBasis: '' }
      a.lost.at = Math.min(a.lost.at, r3(s.lostAt))
      a.lost.missedShare += missedShare
      if (missedRequests !== null && a.lost.missedRequests !== null) a.lost.missedRequests += missedRequests
    }
  }
  const planned = plan.reduce((end, st) => Math.max(end, st.start + st.duration), 0)
  for (const a of byAgent.values()) {
    a.share = r6(a.share)
    a.workers = Math.max(1, a.workers || [...c.sources.values()].filter(s => s.agent === a.id).length)
    if (a.lost) {
      a.lost.missedShare = r6(Math.min(1, a.lost.missedShare))
      if (a.lost.missedRequests === null && a.lost.at > 0) {
        a.lost.missedRequests = Math.round((a.requests / a.lost.at) * Math.max(0, planned - a.lost.at))
        a.lost.missedBasis = `estimate: its own rate before it was lost (${Math.round(a.requests / a.lost.at)} req/s) over the ${r3(Math.max(0, planned - a.lost.at))} s it missed (closed model)`
      } else if (a.lost.missedRequests === null) {
        a.lost.missedBasis = 'lost before it reported anything: no rate to estimate from (closed model)'
      } else {
        a.lost.missedBasis = 'planned: its slice of the target rate over the rest of the run (open model)'
      }
    }
  }
  return [...byAgent.values()].sort((x, y) => x.id.localeCompare(y.id, 'en', { numeric: true }))
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
    .map(([endpoint, g]) => {
      const col = c.endpointSeconds.get(endpoint)
      return {
        endpoint,
        share: totals.requests > 0 ? r3(g.requests / totals.requests) : 0,
        stats: g.stats(duration),
        seconds: { requests: col?.requests.slice() ?? [], p50: col?.p50.slice() ?? [], p99: col?.p99.slice() ?? [] }
      }
    })
    .sort((a, b) => b.stats.requests - a.stats.requests || a.endpoint.localeCompare(b.endpoint))
  const timeline: SecondSummary[] = c.timeline.map(e => ({ ...e }))
  const agents = agentSummaries(c, i.plan, i.model, i.workers)
  return {
    schema: SCHEMA_ID,
    scenario: {
      name: i.scenario.name,
      description: i.scenario.description,
      zipf: i.scenario.zipf,
      // a fixed request's headers and body stay out of the report (an Authorization header is a secret)
      mix: i.scenario.mix.map(m => m.action === 'request' ? { action: m.action, weight: m.weight, path: m.path, method: m.method } : { ...m })
    },
    url: i.url,
    model: i.model,
    seed: i.seed,
    startedAt: i.startedAt.toISOString(),
    finishedAt: i.finishedAt.toISOString(),
    duration: r3(duration),
    pages: i.pages,
    aborted: i.aborted,
    abortedBy: i.abortedBy ?? null,
    workers: agents.reduce((n, a) => n + a.workers, 0) || 1,
    agents,
    totals,
    stages,
    endpoints,
    timeline,
    thresholds: [],
    capacity: null,
    knee: null,
    pass: true
  }
}

export function emptyStats (): Stats {
  return {
    requests: 0, duration: 0, rps: 0, reads: 0, writes: 0, errors: 0, errorRate: 0, transportErrors: 0, timeouts: 0, bytes: 0,
    status: {}, non2xx: {},
    cache: { hit: 0, stale: 0, miss: 0, pass: 0, none: 0, collapsed: 0, hitRatio: null },
    originRequests: 0, originPerRequest: null,
    latency: { min: null, mean: null, p50: null, p90: null, p95: null, p99: null, p99_9: null, max: null },
    arrivals: null
  }
}

export function attachResults (s: Summary, thresholds: ThresholdResult[], capacity: CapacityPlan | null): Summary {
  return { ...s, thresholds, capacity, pass: thresholds.every(t => t.pass) }
}

function r3 (x: number): number { return Math.round(x * 1000) / 1000 }
function r6 (x: number): number { return Math.round(x * 1e6) / 1e6 }

export async function writeSummaryJson (dir: string, s: Summary): Promise<string> {
  const file = join(dir, 'summary.json')
  await writeFile(file, JSON.stringify(s, null, 2) + '\n')
  return file
}
