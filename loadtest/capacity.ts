// --plan-users N: how many cache, frontend and backend instances N concurrent
// users need, from what this run measured. The model is deliberately simple
// and printed with its assumptions, so an engineer can check it rather than
// trust it.
import type { KneeResult } from './knee.js'
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

export interface KneePlanOptions extends Omit<CapacityOptions, 'frontendRps' | 'backendRps'> {
  /** the search through the tier (--url) */
  site: KneeResult
  /** straight at one frontend (--frontend-url) */
  frontend?: KneeResult | null
  /** straight at one backend's write API (--backend-url) */
  backend?: KneeResult | null
}

function kneeBasis (k: KneeResult, what: string): string {
  const broke = k.brokeAt === null
    ? `; nothing broke up to ${k.steps.at(-1)?.rate ?? '?'} req/s, so this is a lower bound (raise --max-rate)`
    : k.brokeAt.by === 'generator'
      ? `; at ${k.brokeAt.rate} req/s the load generator could not keep up, so this is a lower bound (more --workers or agents)`
      : `; ${k.brokeAt.rate} req/s broke: ${k.brokeAt.reasons.join('; ')}`
  return `knee ${what}: ${k.lastPassingRate} req/s held (${k.thresholds.join(', ')})${broke}`
}

/**
 * The plan from measured knees: each role's per-node capacity is the last
 * rate that held when the search pushed that role (or the tier in front of
 * it) past its limit, not what a run that never saturated anything happened
 * to reach.
 */
export function planFromKnees (o: KneePlanOptions): CapacityPlan {
  const R = o.users / o.thinkTime
  const site = o.site
  const K = site.lastPassingRate
  const behindCache = site.hitRatio !== null
  const originShare = site.originShare ?? 1
  const writeShare = site.writeShare !== null && site.writeShare > 0 ? site.writeShare : o.scenarioWriteShare
  const none = (why: string): { perNode: null, basis: string } => ({ perNode: null, basis: why })
  const noKnee = `the first step (${site.steps[0]?.rate ?? '?'} req/s) already broke: start the search lower (--rate)`

  const cacheCap = K === null
    ? none(noKnee)
    : behindCache && o.tier.cache > 0
      ? { perNode: K / o.tier.cache, basis: `${kneeBasis(site, `through ${o.tier.cache} cache node(s)`)}; if a role behind the caches broke first, their own knee (below) is the tighter limit and the cache count errs high` }
      : none('not measured: no response carried X-Cache/Cache-Status; search through the cache to size it')

  let feCap: { perNode: number | null, basis: string }
  if (o.frontend?.lastPassingRate) feCap = { perNode: o.frontend.lastPassingRate, basis: kneeBasis(o.frontend, `straight at one frontend (${o.frontend.url})`) }
  else if (o.frontend) feCap = none(`the search straight at the frontend (${o.frontend.url}) broke at its first step: start it lower`)
  else if (K !== null && !behindCache) feCap = { perNode: K / o.tier.frontend, basis: kneeBasis(site, `straight at ${o.tier.frontend} frontend(s)`) }
  else if (K !== null) feCap = { perNode: (K * originShare) / o.tier.frontend, basis: `lower bound: at the knee through the cache, ${n0(K * originShare)} origin req/s reached ${o.tier.frontend} frontend(s); add --frontend-url for the frontend's own knee` }
  else feCap = none(noKnee)

  let beCap: { perNode: number | null, basis: string }
  if (o.backend?.lastPassingRate) beCap = { perNode: o.backend.lastPassingRate, basis: kneeBasis(o.backend, `straight at one backend's write API (${o.backend.url}), writes/s`) }
  else if (o.backend) beCap = none(`the search straight at the backend (${o.backend.url}) broke at its first step: start it lower`)
  else if (K !== null && writeShare > 0) beCap = { perNode: (K * writeShare) / o.tier.backend, basis: `lower bound: at the knee through the tier, ${n0(K * writeShare)} writes/s reached ${o.tier.backend} backend(s); add --backend-url for the backend's own knee` }
  else beCap = none(writeShare === 0 ? 'no writes in this mix: one backend (add one for redundancy)' : noKnee)

  const role = (needed: number, cap: { perNode: number | null, basis: string }, zeroIsOne = false): RoleCount => ({
    neededRps: r2(needed),
    perNodeRps: cap.perNode === null ? null : r2(cap.perNode),
    instances: zeroIsOne && needed === 0 ? 1 : count(needed, cap.perNode, o.headroom),
    basis: cap.basis
  })
  return {
    users: o.users,
    thinkTime: o.thinkTime,
    headroom: o.headroom,
    tier: o.tier,
    requestRate: r2(R),
    hitRatio: site.hitRatio,
    originShare: r2(originShare),
    writeShare: Math.round(writeShare * 10000) / 10000,
    cache: role(R, cacheCap),
    frontend: role(R * originShare, feCap, true),
    backend: role(R * writeShare, beCap, true),
    model: [
      `request rate R = users / think time = ${o.users} / ${o.thinkTime} s = ${r2(R)} req/s`,
      'per-node capacity of a role = the last rate that held over a whole step of the knee search (--knee thresholds, and at least the target rate delivered)',
      'caches    = ceil(R / (knee through the tier / caches tested × headroom))',
      `frontends = ceil(R × origin share / (frontend knee × headroom)); origin share = ${r2(originShare)}, measured at the last passing step`,
      `backends  = ceil(R × write share / (backend knee × headroom)); write share = ${(writeShare * 100).toFixed(2)}%`,
      `headroom  = ${o.headroom}: instances run at most at ${Math.round(o.headroom * 100)}% of their knee`
    ],
    assumptions: [
      `each concurrent user sends one request (page view or form post) every ${o.thinkTime} s, in this scenario's mix`,
      'throughput grows linearly with instances behind an even load balancer, each instance on a machine like the one tested',
      'the hit ratio and write share at scale equal those measured at the last passing step (caches warm: run `npm run warm` first)',
      'a knee found through the whole tier is the limit of whichever role broke first: the per-role searches (--frontend-url, --backend-url) separate them',
      `the tested tier had ${o.tier.cache} cache, ${o.tier.frontend} frontend, ${o.tier.backend} backend instance(s) (--tier)`,
      'the generators must not be the bottleneck: a step that could not deliver its rate counts as broken, so check the generators\' CPU (or add --workers, agents)',
      'Postgres and Redis are not sized here'
    ]
  }
}
