// report.html: one self-contained page (inline CSS and SVG, no script, no
// external resource) that opens offline, attached to a ticket or mailed
// around after the rehearsal. Plots share the time axis and show the stages
// as bands, so a latency jump lines up with the stage that caused it.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Summary } from './report-json.js'
import type { Stats } from './collect.js'
import { fmtBytes, fmtInt, fmtMs, fmtPct, fmtRps, targetRange } from './format.js'
import { formatThresholdValue, type ThresholdMetric } from './thresholds.js'

export function esc (s: unknown): string {
  return String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c] as string))
}

/** About `count` round tick values covering [min, max]. */
export function niceTicks (min: number, max: number, count = 5): number[] {
  if (!(max > min)) max = min + 1
  const raw = (max - min) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const norm = raw / mag
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag
  const ticks: number[] = []
  const first = Math.ceil(min / step - 1e-9)
  for (let i = first; ; i++) {
    const v = Number((i * step).toPrecision(12))
    ticks.push(v)
    if (v >= max - step * 1e-9) break
  }
  return ticks
}

export interface Series {
  name: string
  color: string
  points: Array<[number, number | null]>
  dash?: string
  width?: number
  axis?: 'left' | 'right'
  /** draws a light area under the line */
  area?: boolean
  step?: boolean
}

export interface Band { start: number, end: number, name: string }

export interface PlotOptions {
  id: string
  title: string
  xMax: number
  /** x tick labels (default: seconds) */
  xFormat?: (v: number) => string
  series: Series[]
  bands: Band[]
  yFormat: (v: number) => string
  yMax?: number
  rightFormat?: (v: number) => string
  rightLabel?: string
  width?: number
  height?: number
  empty?: string
}

const BAND_FILLS = ['#eef2fb', '#f7f1e8', '#eaf6ef', '#f5ecf6', '#f0f0f0']

/** A line plot as an inline SVG element. */
export function linePlot (o: PlotOptions): string {
  const W = o.width ?? 920
  const H = o.height ?? 250
  const m = { l: 58, r: o.series.some(s => s.axis === 'right') ? 58 : 18, t: 34, b: 34 }
  const pw = W - m.l - m.r
  const ph = H - m.t - m.b
  const xMax = Math.max(o.xMax, 1)
  const xs = (x: number): number => m.l + (Math.min(Math.max(x, 0), xMax) / xMax) * pw
  const vals = (axis: 'left' | 'right'): number[] =>
    o.series.filter(s => (s.axis ?? 'left') === axis).flatMap(s => s.points.map(p => p[1]).filter((v): v is number => v !== null && Number.isFinite(v)))
  const leftVals = vals('left')
  const rightVals = vals('right')
  const leftTicks = niceTicks(0, o.yMax ?? (Math.max(...leftVals, 0) * 1.08 || 1))
  const leftMax = leftTicks[leftTicks.length - 1]
  const rightTicks = rightVals.length > 0 ? niceTicks(0, Math.max(...rightVals, 0) * 1.08 || 1) : []
  const rightMax = rightTicks[rightTicks.length - 1] ?? 1
  const ys = (v: number, axis: 'left' | 'right' = 'left'): number => m.t + ph - (Math.max(0, v) / (axis === 'left' ? leftMax : rightMax)) * ph
  const parts: string[] = []
  parts.push(`<svg class="plot" id="${esc(o.id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">`)
  parts.push(`<title>${esc(o.title)}</title>`)
  parts.push(`<text x="${m.l}" y="18" class="ptitle">${esc(o.title)}</text>`)
  // stage bands
  o.bands.forEach((b, i) => {
    const x0 = xs(b.start)
    const x1 = xs(b.end)
    if (x1 - x0 < 0.5) return
    parts.push(`<g class="band"><rect x="${f(x0)}" y="${m.t}" width="${f(x1 - x0)}" height="${ph}" fill="${BAND_FILLS[i % BAND_FILLS.length]}"><title>stage ${esc(b.name)}: ${b.start.toFixed(1)}–${b.end.toFixed(1)} s</title></rect>` +
      (x1 - x0 > 24 ? `<text x="${f((x0 + x1) / 2)}" y="${m.t + 13}" class="bandlabel" text-anchor="middle">${esc(b.name)}</text>` : '') + '</g>')
  })
  // grid and axes
  for (const v of leftTicks) {
    const y = ys(v)
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${f(y)}" y2="${f(y)}" class="grid"/><text x="${m.l - 6}" y="${f(y + 4)}" text-anchor="end" class="tick">${esc(o.yFormat(v))}</text>`)
  }
  for (const v of rightTicks) {
    const y = ys(v, 'right')
    parts.push(`<text x="${m.l + pw + 6}" y="${f(y + 4)}" class="tick">${esc((o.rightFormat ?? String)(v))}</text>`)
  }
  if (o.rightLabel) parts.push(`<text x="${W - 4}" y="${m.t - 8}" text-anchor="end" class="tick">${esc(o.rightLabel)}</text>`)
  for (const v of niceTicks(0, xMax, 10)) {
    if (v > xMax) continue
    const x = xs(v)
    parts.push(`<line x1="${f(x)}" x2="${f(x)}" y1="${m.t + ph}" y2="${m.t + ph + 4}" class="axis"/><text x="${f(x)}" y="${m.t + ph + 17}" text-anchor="middle" class="tick">${esc(o.xFormat ? o.xFormat(v) : `${v}s`)}</text>`)
  }
  parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" class="axis"/><line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" class="axis"/>`)
  // series, clipped to the plot area (the max may exceed a scale set on p99)
  const clipId = `${o.id}-clip`
  parts.push(`<clipPath id="${esc(clipId)}"><rect x="${m.l}" y="${m.t - 3}" width="${pw + 3}" height="${ph + 3}"/></clipPath><g clip-path="url(#${esc(clipId)})">`)
  let drawn = 0
  for (const s of o.series) {
    const axis = s.axis ?? 'left'
    // polyline segments, split where a second has no value
    const segs: Array<Array<[number, number]>> = []
    let cur: Array<[number, number]> = []
    for (const [x, v] of s.points) {
      if (v === null || !Number.isFinite(v)) {
        if (cur.length > 0) segs.push(cur)
        cur = []
        continue
      }
      cur.push([xs(x), ys(v, axis)])
    }
    if (cur.length > 0) segs.push(cur)
    if (segs.length === 0) continue
    drawn++
    const path = (seg: Array<[number, number]>): string => seg.map(([px, py], i) => {
      if (i === 0) return `M${f(px)},${f(py)}`
      return s.step ? `H${f(px)} V${f(py)}` : `L${f(px)},${f(py)}`
    }).join(' ')
    const d = segs.map(path).join(' ')
    if (s.area) {
      for (const seg of segs) {
        if (seg.length < 2) continue
        parts.push(`<path d="${path(seg)} L${f(seg[seg.length - 1][0])},${m.t + ph} L${f(seg[0][0])},${m.t + ph} Z" fill="${s.color}" fill-opacity="0.12" stroke="none"/>`)
      }
    }
    parts.push(`<path class="series" data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}" stroke-linejoin="round"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}><title>${esc(s.name)}</title></path>`)
    // hover tooltips without script, for runs short enough to keep the file small
    if (s.points.length <= 400 && !s.dash) {
      for (const [x, v] of s.points) {
        if (v === null || !Number.isFinite(v)) continue
        parts.push(`<circle cx="${f(xs(x))}" cy="${f(ys(v, axis))}" r="2.2" fill="${s.color}"><title>${esc(s.name)} at ${esc(o.xFormat ? o.xFormat(x) : `${x.toFixed(1)} s`)}: ${esc((axis === 'left' ? o.yFormat : (o.rightFormat ?? String))(v))}</title></circle>`)
      }
    }
  }
  parts.push('</g>')
  if (drawn === 0) {
    parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" class="empty">${esc(o.empty ?? 'no data')}</text>`)
  }
  // legend
  let lx = W - m.r
  const legend: string[] = []
  for (const s of [...o.series].reverse()) {
    const label = s.name + (s.axis === 'right' ? ' (right axis)' : '')
    const w = label.length * 6.4 + 26
    lx -= w
    legend.push(`<g class="legend"><line x1="${f(lx)}" x2="${f(lx + 16)}" y1="14" y2="14" stroke="${s.color}" stroke-width="3"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/><text x="${f(lx + 21)}" y="18" class="tick">${esc(label)}</text></g>`)
  }
  parts.push(...legend)
  parts.push('</svg>')
  return parts.join('')
}

function f (x: number): string {
  return (Math.round(x * 10) / 10).toString()
}

function statsCells (s: Stats): string {
  return [
    fmtInt(s.requests), fmtRps(s.rps),
    fmtMs(s.latency.p50), fmtMs(s.latency.p90), fmtMs(s.latency.p99), fmtMs(s.latency.p99_9), fmtMs(s.latency.max),
    s.errors === 0 ? '0' : `${fmtInt(s.errors)} (${fmtPct(s.errorRate, 2)})`,
    fmtPct(s.cache.hitRatio)
  ].map(c => `<td class="num">${esc(c)}</td>`).join('')
}

const STATS_HEAD = ['req', 'req/s', 'p50', 'p90', 'p99', 'p99.9', 'max', 'errors', 'hit'].map(h => `<th class="num">${h}</th>`).join('')

const CSS = `
:root { color-scheme: light; --fg:#1d2330; --muted:#5d6677; --line:#dde2ea; --ok:#1c7c43; --bad:#b42318; --accent:#2f5bd3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #f6f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 48px; }
header { display: flex; align-items: flex-start; justify-content: space-between; gap: 16px; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 10px; }
.sub { color: var(--muted); }
.badge { font-weight: 700; padding: 6px 14px; border-radius: 999px; color: #fff; white-space: nowrap; }
.badge.pass { background: var(--ok); } .badge.fail { background: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 10px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .d { color: var(--muted); font-size: 12px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; margin-top: 12px; overflow-x: auto; }
svg.plot { display: block; max-width: 100%; height: auto; font-family: inherit; }
.ptitle { font-size: 14px; font-weight: 650; fill: var(--fg); }
.tick { font-size: 11px; fill: var(--muted); }
.bandlabel { font-size: 11px; fill: #6b7280; font-weight: 600; letter-spacing: .04em; }
.grid { stroke: #e9ecf1; } .axis { stroke: #9aa3b2; }
.empty { font-size: 13px; fill: var(--muted); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { padding: 6px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f2f6; font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
.ok { color: var(--ok); font-weight: 700; } .bad { color: var(--bad); font-weight: 700; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background: #eef0f4; padding: 1px 4px; border-radius: 4px; }
ul { margin: 6px 0; padding-left: 20px; } .small { font-size: 12.5px; color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
`

export function renderHtml (s: Summary): string {
  const t = s.totals
  const bands: Band[] = s.stages.filter(st => st.end > st.start).map(st => ({ start: st.start, end: st.end, name: st.name }))
  const xMax = Math.max(s.duration, 1)
  const tl = s.timeline
  const mid = (x: number): number => Math.min(x + 0.5, s.duration)
  const latencyPlot = linePlot({
    id: 'plot-latency',
    title: 'Latency percentiles per second (ms)',
    xMax,
    bands,
    yFormat: v => fmtMs(v),
    series: [
      { name: 'max', color: '#b8bfcc', dash: '3 3', width: 1.5, points: tl.map(p => [mid(p.t), p.max]) },
      { name: 'p99', color: '#d9480f', points: tl.map(p => [mid(p.t), p.p99]) },
      { name: 'p90', color: '#e8a33d', points: tl.map(p => [mid(p.t), p.p90]) },
      { name: 'p50', color: '#2f5bd3', points: tl.map(p => [mid(p.t), p.p50]) }
    ].map(x => x as Series),
    // the max can dwarf the percentiles; scale on p99 and let the max clip
    yMax: Math.max(...tl.map(p => p.p99 ?? 0), 0.01) * 1.15
  })
  const rpsSeries: Series[] = [
    { name: 'req/s', color: '#2f5bd3', area: true, points: tl.map(p => [mid(p.t), p.rps]) },
    { name: 'errors/s', color: '#b42318', points: tl.map(p => [mid(p.t), p.errors]) }
  ]
  if (s.model === 'open') {
    // answered against what the clock asked for and what left: a gap between intended and sent is the generator (late, dropped)
    rpsSeries[0].name = 'answered/s'
    rpsSeries.push({ name: 'intended/s', color: '#6b7280', dash: '6 4', width: 1.5, points: tl.map(p => [mid(p.t), p.intended === null ? null : p.intended / p.span]) })
    rpsSeries.push({ name: 'sent/s', color: '#c2780c', width: 1.5, points: tl.map(p => [mid(p.t), p.sent === null ? null : p.sent / p.span]) })
    rpsSeries.push({ name: 'late or dropped/s', color: '#7a3ccf', width: 1.5, points: tl.map(p => [mid(p.t), p.late === null ? null : (p.late + (p.dropped ?? 0)) / p.span]) })
  } else {
    rpsSeries.push({ name: 'connections', color: '#6b7280', dash: '6 4', step: true, width: 1.5, axis: 'right', points: targetPoints(s, st => st.connections) })
  }
  const rpsPlot = linePlot({ id: 'plot-rps', title: 'Throughput per second', xMax, bands, yFormat: v => fmtRps(v), rightFormat: v => String(v), rightLabel: s.model === 'closed' ? 'connections' : undefined, series: rpsSeries })
  const hitPlot = linePlot({
    id: 'plot-hit',
    title: 'Cache hit ratio per second (HIT + STALE over reads with a cache header)',
    xMax,
    bands,
    yMax: 1,
    yFormat: v => `${Math.round(v * 100)}%`,
    empty: 'no X-Cache / Cache-Status headers: this run did not go through the cache',
    series: [{ name: 'hit ratio', color: '#1c7c43', area: true, points: tl.map(p => [mid(p.t), p.hitRatio]) }]
  })
  const peak = tl.reduce((m, p) => Math.max(m, p.rps), 0)
  const cards: Array<[string, string, string]> = [
    ['requests', fmtInt(t.requests), `${fmtInt(t.reads)} reads · ${fmtInt(t.writes)} writes`],
    ['throughput', `${fmtRps(t.rps)}/s`, `peak second ${fmtRps(peak)}/s`],
    ['p50', `${fmtMs(t.latency.p50)} ms`, `p90 ${fmtMs(t.latency.p90)} ms`],
    ['p99', `${fmtMs(t.latency.p99)} ms`, `p99.9 ${fmtMs(t.latency.p99_9)} · max ${fmtMs(t.latency.max)}`],
    ['errors', fmtPct(t.errorRate, 2), `${fmtInt(t.errors)} (${fmtInt(t.transportErrors)} transport)`],
    ['hit ratio', fmtPct(t.cache.hitRatio), `HIT ${fmtInt(t.cache.hit)} · MISS ${fmtInt(t.cache.miss)}`],
    ['origin / page', t.originPerRequest === null ? '–' : t.originPerRequest.toFixed(3), `${fmtInt(t.originRequests)} reached the frontends`]
  ]
  if (t.arrivals) cards.push(['late · dropped', `${fmtPct(t.arrivals.lateRatio, 2)} · ${fmtPct(t.arrivals.droppedRatio, 2)}`, `of ${fmtInt(t.arrivals.intended)} arrivals; ${fmtInt(t.arrivals.lagged)} late by the generator`])
  const statusRows = Object.entries(t.status).sort(([a], [b]) => Number(a) - Number(b))
    .map(([code, n]) => `<tr><td>${esc(code)}</td><td class="num">${fmtInt(n)}</td><td class="num">${fmtPct(t.requests ? n / t.requests : 0)}</td></tr>`).join('')
  const unit = s.model === 'open' ? 'req/s' : 'connections'
  return htmlPage(`flashcrowd loadtest · ${s.scenario.name} · ${s.startedAt}`, `<header>
  <div>
    <h1>Load test: ${esc(s.scenario.name)}</h1>
    <div class="sub">${esc(s.url)} · ${esc(s.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))} · ${s.duration.toFixed(1)} s · ${esc(s.model)} model · ${fmtInt(s.pages)} sitemap pages · seed ${s.seed}${s.aborted ? ' · <b>aborted</b>' : ''}</div>
    <div class="sub">${esc(s.scenario.description)}</div>
  </div>
  <div class="badge ${s.pass ? 'pass' : 'fail'}">${s.pass ? 'PASS' : 'FAIL'}</div>
</header>
<section class="cards">${cards.map(([k, v, d]) => `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div><div class="d">${esc(d)}</div></div>`).join('')}</section>
<h2>Over time</h2>
<div class="panel">${latencyPlot}</div>
<div class="panel">${rpsPlot}</div>
<div class="panel">${hitPlot}</div>
${s.thresholds.length > 0
    ? `<h2>Thresholds</h2><table><thead><tr><th></th><th>threshold</th><th class="num">actual</th><th>note</th></tr></thead><tbody>${s.thresholds.map(th =>
      `<tr><td class="${th.pass ? 'ok' : 'bad'}">${th.pass ? '✓ pass' : '✗ fail'}</td><td><code>${esc(th.expr)}</code></td><td class="num">${esc(formatThresholdValue(th.metric as ThresholdMetric, th.actual))}</td><td class="small">${esc(th.note ?? '')}</td></tr>`).join('')}</tbody></table>`
    : ''}
<h2>Stages</h2>
<table><thead><tr><th>stage</th><th class="num">time</th><th class="num">target (${unit})</th>${STATS_HEAD}</tr></thead><tbody>
${s.stages.map(st => `<tr><td>${esc(st.name)}</td><td class="num">${st.start.toFixed(1)}–${st.end.toFixed(1)} s</td><td class="num">${targetRange(st, s.model)}</td>${statsCells(st.stats)}</tr>`).join('\n')}
<tr><td><b>all</b></td><td class="num">0–${s.duration.toFixed(1)} s</td><td></td>${statsCells(t)}</tr>
</tbody></table>
<h2>Endpoints</h2>
<table><thead><tr><th>endpoint</th><th class="num">share</th>${STATS_HEAD}<th>non-2xx</th></tr></thead><tbody>
${s.endpoints.map(e => `<tr><td><code>${esc(e.endpoint)}</code></td><td class="num">${fmtPct(e.share)}</td>${statsCells(e.stats)}<td class="small">${esc(Object.entries(e.stats.non2xx).map(([c, n]) => `${c} ×${n}`).join(', ') || '–')}</td></tr>`).join('\n')}
</tbody></table>
<h2>Status codes</h2>
<table style="max-width:360px"><thead><tr><th>status</th><th class="num">responses</th><th class="num">share</th></tr></thead><tbody>${statusRows || '<tr><td colspan="3">no responses</td></tr>'}
${t.transportErrors > 0 ? `<tr><td>transport errors</td><td class="num">${fmtInt(t.transportErrors)}</td><td class="num">${fmtInt(t.timeouts)} timeouts</td></tr>` : ''}</tbody></table>
<p class="small">Cache: HIT ${fmtInt(t.cache.hit)} · STALE ${fmtInt(t.cache.stale)} · MISS ${fmtInt(t.cache.miss)} · PASS ${fmtInt(t.cache.pass)} · no header ${fmtInt(t.cache.none)} · collapsed ${fmtInt(t.cache.collapsed)} · ${esc(fmtBytes(t.bytes))} read.</p>
${kneeHtml(s)}
${agentsHtml(s)}
${s.capacity ? capacityHtml(s) : ''}
<footer>
  Mix: ${s.scenario.mix.map(m => `${esc(m.action)}${m.path ? ' ' + esc(m.path) : ''} ×${m.weight}`).join(', ')} · Zipf s=${s.scenario.zipf}.
  Latency is from request sent to response complete, per response${s.model === 'open' ? ', corrected for coordinated omission (open model)' : ''}. Errors are transport errors and responses with status ≥ 400.
  Generated by <code>npm run loadtest</code> (flashcrowd), ${esc(s.finishedAt)}.
</footer>`)
}

/** A self-contained page: the report's style sheet, `body` in its <main>. */
export function htmlPage (title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`
}

function targetPoints (s: Summary, pick: (st: { connections: number, rate: number | null }) => number): Array<[number, number | null]> {
  const pts: Array<[number, number | null]> = []
  for (const st of s.stages) {
    if (!(st.end > st.start)) continue
    // steps ran back to back; place them on the actual stage span
    const scale = st.planned.duration > 0 ? (st.end - st.start) / st.planned.duration : 1
    for (const step of st.steps) {
      const x = st.start + (step.start - st.planned.start) * scale
      pts.push([x, pick(step)])
    }
    const lastStep = st.steps[st.steps.length - 1]
    if (lastStep) pts.push([st.end, pick(lastStep)])
  }
  return pts
}

function kneeHtml (s: Summary): string {
  if (!s.knee) return ''
  const parts: string[] = ['<h2>Knee</h2>']
  const roles = [['through the tier', 'site', s.knee.site], ['straight at a frontend', 'frontend', s.knee.frontend], ['straight at a backend (writes)', 'backend', s.knee.backend]] as const
  for (const [label, id, k] of roles) {
    if (!k) continue
    const xMax = Math.max(...k.steps.map(x => x.rate), 1) * 1.05
    const pass = k.lastPassingRate
    const plot = linePlot({
      id: `plot-knee-${id}`,
      title: `Knee ${label}: achieved rate and p99 by target rate`,
      xMax,
      xFormat: v => `${fmtRps(v)}/s`,
      bands: pass === null ? [] : [{ start: 0, end: pass, name: `held up to ${fmtRps(pass)} req/s` }],
      yFormat: v => fmtRps(v),
      rightFormat: v => `${fmtMs(v)} ms`,
      rightLabel: 'p99 (ms)',
      series: [
        { name: 'target', color: '#6b7280', dash: '6 4', width: 1.5, points: k.steps.map(x => [x.rate, x.rate]) },
        { name: 'achieved req/s', color: '#2f5bd3', points: k.steps.map(x => [x.rate, x.achieved]) },
        { name: 'p99', color: '#d9480f', axis: 'right', points: k.steps.map(x => [x.rate, x.p99]) }
      ]
    })
    parts.push(`<p><b>${esc(label)}</b>: <code>${esc(k.url)}</code> · ${k.thresholds.map(x => `<code>${esc(x)}</code>`).join(' ')} over each step, and at least ${Math.round(k.minAchieved * 100)}% of the target delivered. ${pass === null ? '<b class="bad">No step held: start lower.</b>' : `Last passing rate <b>${fmtInt(pass)} req/s</b>${k.brokeAt ? `; ${fmtInt(k.brokeAt.rate)} req/s broke: ${esc(k.brokeAt.reasons.join('; '))}` : ' (nothing broke up to the maximum: a lower bound)'}.`}</p>`)
    parts.push(`<div class="panel">${plot}</div>`)
    parts.push(`<table><thead><tr><th class="num">target req/s</th><th class="num">achieved</th><th class="num">req</th><th class="num">p50</th><th class="num">p99</th><th class="num">errors</th><th>step</th></tr></thead><tbody>${k.steps.map(x => `<tr><td class="num">${fmtInt(x.rate)}</td><td class="num">${fmtRps(x.achieved)}</td><td class="num">${fmtInt(x.requests)}</td><td class="num">${fmtMs(x.p50)}</td><td class="num">${fmtMs(x.p99)}</td><td class="num">${fmtPct(x.errorRate, 2)}</td><td class="${x.pass ? 'ok' : 'bad'}">${x.pass ? '✓ held' : `✗ ${esc(x.failed.join('; '))}`}</td></tr>`).join('')}</tbody></table>`)
  }
  return parts.join('\n')
}

function agentsHtml (s: Summary): string {
  const stopped = s.abortedBy ? `<p><b>Stopped at ${s.abortedBy.at} s</b>: the abort threshold <code>${esc(s.abortedBy.expr)}</code> failed over the merged stream; every generator was stopped.</p>` : ''
  if (!s.agents.some(a => a.id !== 'local')) {
    return `${stopped}<p class="small">Load generated by ${s.workers} thread(s) on ${esc(s.agents[0]?.host ?? 'this machine')}.</p>`
  }
  const total = s.agents.reduce((n, a) => n + a.requests, 0)
  return `${stopped}<h2>Agents</h2>
<p class="small">Each agent ran its share of every step from one common start; the figures above are their merged stream (histograms added, not averaged). Their requests add up to the total.</p>
<table><thead><tr><th>agent</th><th>host</th><th class="num">threads</th><th class="num">share of the plan</th><th class="num">req</th><th class="num">errors</th><th class="num">transport</th><th>lost</th></tr></thead><tbody>
${s.agents.map(a => `<tr><td>${esc(a.id)}</td><td>${esc(a.host)}</td><td class="num">${a.workers}</td><td class="num">${fmtPct(a.share)}</td><td class="num">${fmtInt(a.requests)}</td><td class="num">${fmtInt(a.errors)}</td><td class="num">${fmtInt(a.transportErrors)}</td><td class="${a.lost ? 'bad' : ''}">${a.lost ? esc(`at ${a.lost.at.toFixed(1)} s (${a.lost.reason}): ${fmtPct(a.lost.missedShare)} of the run's planned load not sent${a.lost.missedRequests !== null ? `, ≈${fmtInt(a.lost.missedRequests)} requests — ${a.lost.missedBasis}` : ''}`) : '–'}</td></tr>`).join('\n')}
<tr><td><b>all</b></td><td></td><td class="num">${s.workers}</td><td></td><td class="num">${fmtInt(total)}</td><td class="num">${fmtInt(s.agents.reduce((n, a) => n + a.errors, 0))}</td><td></td><td></td></tr>
</tbody></table>`
}

function capacityHtml (s: Summary): string {
  const p = s.capacity
  if (!p) return ''
  return `<h2>Capacity plan for ${fmtInt(p.users)} concurrent users</h2>
<table><thead><tr><th>role</th><th class="num">instances</th><th class="num">needed req/s</th><th class="num">per node req/s</th><th>basis</th></tr></thead><tbody>
${(['cache', 'frontend', 'backend'] as const).map(r => `<tr><td>${r}</td><td class="num"><b>${p[r].instances ?? '?'}</b></td><td class="num">${fmtRps(p[r].neededRps)}</td><td class="num">${p[r].perNodeRps === null ? '–' : fmtRps(p[r].perNodeRps)}</td><td class="small">${esc(p[r].basis)}</td></tr>`).join('\n')}
</tbody></table>
<p class="small"><b>Model.</b></p><ul class="small">${p.model.map(m => `<li>${esc(m)}</li>`).join('')}</ul>
<p class="small"><b>Assumptions.</b></p><ul class="small">${p.assumptions.map(a => `<li>${esc(a)}</li>`).join('')}</ul>`
}

export async function writeHtmlReport (dir: string, s: Summary): Promise<string> {
  const file = join(dir, 'report.html')
  await writeFile(file, renderHtml(s))
  return file
}
