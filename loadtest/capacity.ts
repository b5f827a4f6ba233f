// --plan-users N: how many cache, frontend and backend instances N concurrent
// users need, from what this run measured. The model is deliberately simple
// and printed with its assumptions, so an engineer can check it rather than
// trust it.
import type { Summary } from './report-json.js'

export interface Tier { cache: number, frontend: number, backend: number }

export interface CapacityOptions {
  users: number
  /** seconds between two requests of one user */
  thinkTime: number
  /** run instances at most at this share of measured capacity */
  headroom: number
  /** instances in the tier that was tested */
  tier: Tier
  /** per-frontend req/s measured elsewhere (a run straight at one frontend) */
  frontendRps?: number
  /** per-backend writes/s measured elsewhere */
  backendRps?: number
  /** the scenario's write share, used when the run made no writes */
  scenarioWriteShare: number
}

export interface RoleCount {
  instances: number | null
  perNodeRps: number | null
  neededRps: number
  basis: string
}

export interface CapacityPlan {
  users: number
  thinkTime: number
  headroom: number
  tier: Tier
  requestRate: number
  hitRatio: number | null
  originShare: number
  writeShare: number
  cache: RoleCount
  frontend: RoleCount
  backend: RoleCount
  model: string[]
  assumptions: string[]
}

const r2 = (x: number): number => Math.round(x * 100) / 100
const n0 = (x: number): string => Math.round(x).toLocaleString('en-US')

function count (needed: number, perNode: number | null, headroom: number): number | null {
  if (perNode === null || !(perNode > 0)) return null
  return Math.max(1, Math.ceil(needed / (perNode * headroom)))
}

/** Parses "cache=1,frontend=2,backend=1". */
export function parseTier (spec: string): Tier {
  const tier: Tier = { cache: 1, frontend: 1, backend: 1 }
  for (const part of spec.split(',').map(s => s.trim()).filter(Boolean)) {
    const m = /^(cache|frontend|backend)=(\d+)$/.exec(part)
    if (!m) throw new Error(`bad --tier "${spec}": expected e.g. cache=1,frontend=2,backend=1`)
    tier[m[1] as keyof Tier] = Number(m[2])
  }
  if (tier.frontend < 1 || tier.backend < 1) throw new Error(`bad --tier "${spec}": frontend and backend must be >= 1`)
  return tier
}

export function planCapacity (s: Summary, o: CapacityOptions): CapacityPlan {
  // The busiest stage that stayed healthy (≤ 1 % errors) stands for what the tier can do.
  const candidates = s.stages.filter(st => st.stats.requests > 0)
  const healthy = candidates.filter(st => st.stats.errorRate <= 0.01)
  const pool = healthy.length > 0 ? healthy : candidates
  const peak = pool.reduce<typeof pool[number] | undefined>((best, st) => (!best || st.stats.rps > best.stats.rps ? st : best), undefined)
  const peakRps = peak?.stats.rps ?? s.totals.rps
  const peakDur = peak && peak.stats.duration > 0 ? peak.stats.duration : Math.max(s.duration, 0.001)
  const peakOriginRps = (peak?.stats.originRequests ?? s.totals.originRequests) / peakDur
  const peakWriteRps = (peak?.stats.writes ?? s.totals.writes) / peakDur

  const hitRatio = s.totals.cache.hitRatio
  const behindCache = hitRatio !== null
  const originShare = s.totals.originPerRequest ?? 1
  const writeShare = s.totals.requests > 0 && s.totals.writes > 0 ? s.totals.writes / s.totals.requests : o.scenarioWriteShare
  const R = o.users / o.thinkTime

  const cachePerNode = behindCache && o.tier.cache > 0 ? peakRps / o.tier.cache : null
  const cache: RoleCount = {
    neededRps: r2(R),
    perNodeRps: cachePerNode === null ? null : r2(cachePerNode),
    instances: count(R, cachePerNode, o.headroom),
    basis: behindCache
      ? `measured: ${n0(peakRps)} req/s through ${o.tier.cache} cache node(s) in stage "${peak?.name ?? 'all'}" (a lower bound unless the cache was saturated)`
      : 'not measured: no response carried X-Cache/Cache-Status; run against the cache to size it'
  }

  const frontendNeeded = R * originShare
  let frontendPerNode: number | null
  let frontendBasis: string
  if (o.frontendRps !== undefined) {
    frontendPerNode = o.frontendRps
    frontendBasis = `given: --frontend-rps ${o.frontendRps}`
  } else if (!behindCache) {
    frontendPerNode = peakRps / o.tier.frontend
    frontendBasis = `measured straight at the frontends: ${n0(peakRps)} req/s over ${o.tier.frontend} frontend(s)`
  } else {
    frontendPerNode = peakOriginRps > 0 ? peakOriginRps / o.tier.frontend : null
    frontendBasis = frontendPerNode === null
      ? 'not measured: the cache answered everything; run straight at a frontend and pass --frontend-rps'
      : `lower bound: ${n0(peakOriginRps)} origin req/s reached ${o.tier.frontend} frontend(s) behind the cache; run straight at a frontend and pass --frontend-rps for a real figure`
  }
  const frontend: RoleCount = {
    neededRps: r2(frontendNeeded),
    perNodeRps: frontendPerNode === null ? null : r2(frontendPerNode),
    instances: frontendNeeded === 0 ? 1 : count(frontendNeeded, frontendPerNode, o.headroom),
    basis: frontendBasis
  }

  const backendNeeded = R * writeShare
  let backendPerNode: number | null
  let backendBasis: string
  if (o.backendRps !== undefined) {
    backendPerNode = o.backendRps
    backendBasis = `given: --backend-rps ${o.backendRps}`
  } else if (peakWriteRps > 0) {
    backendPerNode = peakWriteRps / o.tier.backend
    backendBasis = `lower bound: ${n0(peakWriteRps)} writes/s over ${o.tier.backend} backend(s) (writes were a share of the load, the backend was likely not saturated)`
  } else {
    backendPerNode = null
    backendBasis = writeShare === 0 ? 'no writes in this mix: one backend (add one for redundancy)' : 'not measured: this run made no writes; run mixed or signup-rush, or pass --backend-rps'
  }
  const backend: RoleCount = {
    neededRps: r2(backendNeeded),
    perNodeRps: backendPerNode === null ? null : r2(backendPerNode),
    instances: backendNeeded === 0 ? 1 : count(backendNeeded, backendPerNode, o.headroom),
    basis: backendBasis
  }

  return {
    users: o.users,
    thinkTime: o.thinkTime,
    headroom: o.headroom,
    tier: o.tier,
    requestRate: r2(R),
    hitRatio,
    originShare: r2(originShare),
    writeShare: Math.round(writeShare * 10000) / 10000,
    cache,
    frontend,
    backend,
    model: [
      `request rate R = users / think time = ${o.users} / ${o.thinkTime} s = ${r2(R)} req/s`,
      `caches    = ceil(R / (cache req/s per node × headroom))`,
      `frontends = ceil(R × origin share / (frontend req/s per node × headroom)); origin share = ${r2(originShare)} (misses, passes and writes per request${behindCache ? `, hit ratio ${(hitRatio * 100).toFixed(1)}%` : ', no cache in front'})`,
      `backends  = ceil(R × write share / (backend writes/s per node × headroom)); write share = ${(writeShare * 100).toFixed(2)}%`,
      `headroom  = ${o.headroom}: instances run at most at ${Math.round(o.headroom * 100)}% of measured capacity`
    ],
    assumptions: [
      `each concurrent user sends one request (page view or form post) every ${o.thinkTime} s, in this scenario's mix`,
      'throughput grows linearly with instances behind an even load balancer, each instance on a machine like the one tested',
      'the hit ratio at scale equals the measured one (same pages, caches warm: run `npm run warm` first); a cold start or a purge storm sends more to the frontends',
      'per-node figures are the busiest healthy stage (≤ 1% errors) of this run: a lower bound of capacity unless the run saturated the tier, so counts err on the high side',
      `the tested tier had ${o.tier.cache} cache, ${o.tier.frontend} frontend, ${o.tier.backend} backend instance(s) (--tier)`,
      'on one machine the load generator competes with the tier for CPU: figures from a separate load machine are more accurate',
      'Postgres and Redis are not sized here'
    ]
  }
}
