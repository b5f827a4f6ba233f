// Live progress on stderr: one line per second of the merged stream (every
// worker and every agent together), printed as soon as each source has
// reported that second; and a progress bar for warm.
import type { TimelineEntry } from './collect.js'
import { fmtMs, fmtPct, fmtRps } from './format.js'

/** The line for one timeline entry (one second, or one bucket of a very long run). */
export function progressLine (e: TimelineEntry): string {
  const target = e.rate !== null ? `${e.rate} req/s target` : `${e.connections} conn`
  return [
    `${String(Math.round(e.t + e.span)).padStart(4)}s`,
    e.stage.padEnd(8),
    target.padStart(16),
    `${fmtRps(e.rps).padStart(7)} req/s`,
    ...(e.late !== null && (e.late > 0 || (e.dropped ?? 0) > 0) ? [`late ${e.late}${e.dropped ? ` dropped ${e.dropped}` : ''}`] : []),
    `p99 ${fmtMs(e.p99).padStart(6)} ms`,
    `err ${String(e.errors).padStart(4)}${e.errors > 0 ? ` (${fmtPct(e.errorRate, 1)})` : ''}`,
    `hit ${fmtPct(e.hitRatio)}`
  ].join('  ')
}

/** "[#########---------]  45/120  37%" */
export function progressBar (done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1
  const full = Math.round(frac * width)
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(done).padStart(String(total).length)}/${total} ${Math.round(frac * 100).toString().padStart(3)}%`
}
