// Live progress on stderr: one line per second while a run goes, and a
// progress bar for warm.
import { Group, type Collector } from './collect.js'
import { fmtMs, fmtPct, fmtRps } from './format.js'

export interface ProgressOptions {
  stream?: NodeJS.WritableStream
  intervalMs?: number
}

/** The line for one second of the run. */
export function progressLine (c: Collector, t: number): string {
  // a second without a single answer has no entry yet: show it as zeros, it matters
  const s = c.seconds[t] ?? { ...c.target, group: new Group() }
  const st = s.group.stats(Math.min(1, Math.max(0.001, c.duration - t)))
  const target = s.rate !== null ? `${s.rate} req/s target` : `${s.connections} conn`
  const attempts = st.requests + st.transportErrors
  return [
    `${String(t + 1).padStart(4)}s`,
    s.stage.padEnd(8),
    target.padStart(16),
    `${fmtRps(st.rps).padStart(7)} req/s`,
    `p99 ${fmtMs(st.latency.p99).padStart(6)} ms`,
    `err ${String(st.errors).padStart(4)}${attempts > 0 && st.errors > 0 ? ` (${fmtPct(st.errorRate, 1)})` : ''}`,
    `hit ${fmtPct(st.cache.hitRatio)}`
  ].join('  ')
}

/** Prints each completed second; returns a function that prints the last partial second and stops. */
export function startProgress (c: Collector, o: ProgressOptions = {}): () => void {
  const out = o.stream ?? process.stderr
  let next = 0
  const flush = (upTo: number): void => {
    for (; next < upTo; next++) {
      out.write(progressLine(c, next) + '\n')
    }
  }
  const timer = setInterval(() => flush(Math.floor(c.elapsed())), o.intervalMs ?? 1000)
  timer.unref()
  return () => {
    clearInterval(timer)
    // the trailing partial second is shown only if it lasted at least half a second
    flush(Math.floor(c.duration + 0.5))
  }
}

/** "[#########---------]  45/120  37%" */
export function progressBar (done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1
  const full = Math.round(frac * width)
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(done).padStart(String(total).length)}/${total} ${Math.round(frac * 100).toString().padStart(3)}%`
}
