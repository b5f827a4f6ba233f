// The end-of-run table printed to the terminal.
import type { Summary } from './report-json.js'
import type { Stats } from './collect.js'
import { fmtBytes, fmtInt, fmtMs, fmtPct, fmtRps, targetRange, textTable } from './format.js'
import { formatThresholdValue, type ThresholdMetric } from './thresholds.js'

function statusList (non2xx: Record<string, number>): string {
  const parts = Object.entries(non2xx).sort(([a], [b]) => Number(a) - Number(b)).map(([c, n]) => `${c} ×${fmtInt(n)}`)
  return parts.length > 0 ? parts.join(' · ') : 'none'
}

function errorsCell (s: Stats): string {
  return s.errors === 0 ? '0' : `${fmtInt(s.errors)} (${fmtPct(s.errorRate, 2)})`
}

function metricOf (s: Summary, expr: string): ThresholdMetric {
  return (s.thresholds.find(t => t.expr === expr)?.metric ?? 'requests') as ThresholdMetric
}

export function renderTable (s: Summary): string {
  const t = s.totals
  const out: string[] = []
  const unit = s.model === 'open' ? 'req/s' : 'conn'
  out.push(`flashcrowd loadtest · ${s.scenario.name} → ${s.url}`)
  out.push(`${s.model} model · ${s.duration.toFixed(1)} s · ${s.pages} sitemap pages · seed ${s.seed}${s.aborted ? ' · ABORTED' : ''}`)
  out.push('')
  out.push(textTable([
    ['latency (ms)', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean'],
    ['all requests', fmtMs(t.latency.p50), fmtMs(t.latency.p90), fmtMs(t.latency.p99), fmtMs(t.latency.p99_9), fmtMs(t.latency.max), fmtMs(t.latency.mean)]
  ], ['l', 'r', 'r', 'r', 'r', 'r', 'r']))
  out.push('')
  out.push(`requests  ${fmtInt(t.requests)} (${fmtInt(t.reads)} reads, ${fmtInt(t.writes)} writes) · ${fmtRps(t.rps)} req/s · ${fmtBytes(t.bytes)} read`)
  out.push(`errors    ${errorsCell(t)}${t.transportErrors > 0 ? ` · ${fmtInt(t.transportErrors)} transport (${fmtInt(t.timeouts)} timeouts)` : ''}`)
  out.push(`non-2xx   ${statusList(t.non2xx)}`)
  if (t.arrivals) {
    const a = t.arrivals
    out.push(`arrivals  ${fmtInt(a.intended)} intended · ${fmtInt(a.sent)} sent · late ${fmtInt(a.late)} (${fmtPct(a.lateRatio, 2)}; ${fmtInt(a.lagged)} by the generator's own delay) · dropped ${fmtInt(a.dropped)} (${fmtPct(a.droppedRatio, 2)}) · latencies from each request's intended time`)
  }
  // Every request of a load test comes from one address: the backend's per-client write limit answers 429.
  if ((t.non2xx['429'] ?? 0) > 0) out.push('          429 = the backend\'s per-client write limit: start the tier with BACKEND_RATE_LIMIT_MAX=0 for load tests')
  const c = t.cache
  out.push(`cache     hit ratio ${fmtPct(c.hitRatio)} (HIT ${fmtInt(c.hit)} · STALE ${fmtInt(c.stale)} · MISS ${fmtInt(c.miss)} · PASS ${fmtInt(c.pass)}${c.none > 0 ? ` · no header ${fmtInt(c.none)}` : ''}${c.collapsed > 0 ? ` · collapsed ${fmtInt(c.collapsed)}` : ''})`)
  out.push(`origin    ${t.originPerRequest === null ? '–' : t.originPerRequest.toFixed(3)} origin requests per page (${fmtInt(t.originRequests)} reached the frontends)`)
  out.push('')
  out.push(textTable([
    ['stage', 'time (s)', `target (${unit})`, 'req', 'req/s', 'p50', 'p90', 'p99', 'max', 'errors', 'hit'],
    ...s.stages.map(st => [
      st.name,
      `${st.start.toFixed(1)}–${st.end.toFixed(1)}`,
      targetRange(st, s.model),
      fmtInt(st.stats.requests), fmtRps(st.stats.rps),
      fmtMs(st.stats.latency.p50), fmtMs(st.stats.latency.p90), fmtMs(st.stats.latency.p99), fmtMs(st.stats.latency.max),
      errorsCell(st.stats), fmtPct(st.stats.cache.hitRatio)
    ])
  ], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']))
  out.push('')
  out.push(textTable([
    ['endpoint', 'req', 'share', 'req/s', 'p50', 'p90', 'p99', 'max', 'errors', 'non-2xx', 'hit'],
    ...s.endpoints.map(e => [
      e.endpoint, fmtInt(e.stats.requests), fmtPct(e.share), fmtRps(e.stats.rps),
      fmtMs(e.stats.latency.p50), fmtMs(e.stats.latency.p90), fmtMs(e.stats.latency.p99), fmtMs(e.stats.latency.max),
      errorsCell(e.stats), Object.keys(e.stats.non2xx).length ? statusList(e.stats.non2xx) : '–', fmtPct(e.stats.cache.hitRatio)
    ])
  ], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'r']))
  const distributed = s.agents.some(a => a.id !== 'local')
  if (distributed) {
    out.push('')
    out.push(textTable([
      ['agent', 'host', 'threads', 'share', 'req', 'errors', 'lost'],
      ...s.agents.map(a => [
        a.id, a.host, String(a.workers), fmtPct(a.share), fmtInt(a.requests), a.errors === 0 ? '0' : fmtInt(a.errors),
        a.lost ? `at ${a.lost.at.toFixed(1)} s: ${fmtPct(a.lost.missedShare)} of the planned load not sent${a.lost.missedRequests !== null ? ` (≈${fmtInt(a.lost.missedRequests)} req)` : ''}` : '–'
      ])
    ], ['l', 'l', 'r', 'r', 'r', 'r', 'l']))
  } else {
    out.push('')
    out.push(`generator ${s.workers} thread(s) on ${s.agents[0]?.host ?? 'this machine'}`)
  }
  if (s.abortedBy) {
    out.push('')
    out.push(`stopped   at ${s.abortedBy.at} s: abort threshold ${s.abortedBy.expr} failed (actual ${formatThresholdValue(metricOf(s, s.abortedBy.expr), s.abortedBy.actual)}), every generator stopped`)
  }
  if (s.thresholds.length > 0) {
    out.push('')
    out.push('thresholds')
    for (const th of s.thresholds) {
      out.push(`  ${th.pass ? '✓ pass' : '✗ FAIL'}  ${th.expr.padEnd(28)} actual ${formatThresholdValue(th.metric as ThresholdMetric, th.actual)}${th.note ? ` (${th.note})` : ''}`)
    }
  }
  if (s.knee) {
    for (const [role, k] of [['through the tier', s.knee.site], ['straight at a frontend', s.knee.frontend], ['straight at a backend (writes)', s.knee.backend]] as const) {
      if (!k) continue
      out.push('')
      out.push(`knee ${role}: ${k.url} (${k.thresholds.join(', ')}, and ≥ ${Math.round(k.minAchieved * 100)}% of each target delivered)`)
      out.push(textTable([
        ['target req/s', 'achieved', 'req', 'p50', 'p99', 'errors', 'late', 'step'],
        ...k.steps.map(x => [fmtInt(x.rate), fmtRps(x.achieved), fmtInt(x.requests), fmtMs(x.p50), fmtMs(x.p99), fmtPct(x.errorRate, 2), fmtPct(x.late, 1), x.pass ? '✓ held' : `✗ ${x.failed.join('; ')}`])
      ], ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'], '  '))
      out.push(k.lastPassingRate === null
        ? '  no step held: start lower (--rate)'
        : `  last passing rate ${fmtInt(k.lastPassingRate)} req/s${k.brokeAt ? `, broke at ${fmtInt(k.brokeAt.rate)} req/s${k.brokeAt.by === 'generator' ? ' (the generator\'s limit, not the target\'s: a lower bound)' : ''}` : ' (nothing broke up to the maximum: a lower bound)'}`)
    }
  }
  if (s.capacity) {
    const p = s.capacity
    out.push('')
    out.push(`capacity plan for ${fmtInt(p.users)} concurrent users`)
    out.push(textTable([
      ['role', 'instances', 'needed req/s', 'per node req/s', 'basis'],
      ...(['cache', 'frontend', 'backend'] as const).map(r => [
        r, p[r].instances === null ? '?' : String(p[r].instances), fmtRps(p[r].neededRps), p[r].perNodeRps === null ? '–' : fmtRps(p[r].perNodeRps), p[r].basis
      ])
    ], ['l', 'r', 'r', 'r', 'l'], '  '))
    out.push('  model:')
    for (const m of p.model) out.push(`    ${m}`)
    out.push('  assumptions:')
    for (const a of p.assumptions) out.push(`    - ${a}`)
  }
  out.push('')
  if (s.knee) out.push(s.pass ? `result: knee found (${fmtInt(s.knee.site.lastPassingRate ?? 0)} req/s through the tier)` : 'result: no knee measured (the first step broke)')
  else out.push(s.pass ? 'result: PASS' : `result: FAIL (${s.thresholds.filter(x => !x.pass).map(x => x.expr).join(', ')})`)
  return out.join('\n') + '\n'
}
