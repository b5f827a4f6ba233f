/**
 * Repeated failures logged once per interval with a count (common/log-aggregate.ts),
 * with fake timers.
 */
import t from 'tap'
import { RepeatedFailureLog, RepeatedFailureLogs, type AggregateLogger, type Timers } from '../../common/log-aggregate.js'

class FakeTimers implements Timers {
  now = 0
  #due: Array<{ at: number, fn: () => void, id: number }> = []
  #next = 1
  setTimeout = (fn: () => void, ms: number) => { const id = this.#next++; this.#due.push({ at: this.now + ms, fn, id }); return id }
  clearTimeout = (handle: unknown) => { this.#due = this.#due.filter((d) => d.id !== handle) }
  tick (ms: number): void {
    const until = this.now + ms
    for (;;) {
      const next = this.#due.filter((d) => d.at <= until).sort((a, b) => a.at - b.at)[0]
      if (!next) break
      this.#due = this.#due.filter((d) => d !== next)
      this.now = next.at
      next.fn()
    }
    this.now = until
  }
}

interface Line { level: string, obj: Record<string, unknown>, msg: string }
function recorder (): { log: AggregateLogger, lines: Line[] } {
  const lines: Line[] = []
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => { lines.push({ level, obj, msg }) }
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } }
}

t.test('1,000 failures in an interval: the first in full, then one line with the count', async (t) => {
  const timers = new FakeTimers()
  const { log, lines } = recorder()
  const failures = new RepeatedFailureLog({ what: 'bus publish failing', log, timers, intervalMs: 10_000 })
  const first = new Error('connect ECONNREFUSED 127.0.0.1:6379')
  failures.failed(first)
  for (let i = 1; i < 1000; i++) { timers.tick(9); failures.failed(new Error(`attempt ${i}`)) }
  t.equal(lines.length, 1, 'one line while it keeps failing')
  t.same(lines[0], { level: 'warn', obj: { err: first }, msg: 'bus publish failing' }, 'the first occurrence, with its error')
  timers.tick(10_000 - 999 * 9)
  t.equal(lines.length, 2, 'two lines for the whole interval')
  t.equal(lines[1].msg, 'bus publish failing: 999 times in the last 10 s')
  t.equal(lines[1].obj.count, 999)
  t.equal(lines[1].obj.lastError, 'attempt 999')
})

t.test('a long outage: one line per interval, each with its own count; then one line when it stops', async (t) => {
  const timers = new FakeTimers()
  const { log, lines } = recorder()
  const failures = new RepeatedFailureLog({ what: 'database unavailable', log, timers, intervalMs: 10_000, level: 'error' })
  for (let second = 0; second < 30; second++) {
    for (let i = 0; i < 1234; i++) failures.failed(new Error('down'))
    timers.tick(1000)
  }
  t.same(lines.map((l) => [l.level, l.msg]), [
    ['error', 'database unavailable'],
    ['error', 'database unavailable: 12,339 times in the last 10 s'],
    ['error', 'database unavailable: 12,340 times in the last 10 s'],
    ['error', 'database unavailable: 12,340 times in the last 10 s']
  ])
  timers.tick(10_000)
  t.same(lines.at(-1), { level: 'info', obj: { failures: 37_020 }, msg: 'database unavailable: no more in the last 10 s (37,020 in all)' })
  timers.tick(60_000)
  t.equal(lines.length, 5, 'quiet afterwards')
  failures.failed(new Error('down again'))
  t.equal(lines.at(-1)?.msg, 'database unavailable', 'a new outage is logged in full again')
})

t.test('flush logs what is counted, at once', async (t) => {
  const timers = new FakeTimers()
  const { log, lines } = recorder()
  const failures = new RepeatedFailureLog({ what: 'bus publish failing', log, timers, intervalMs: 10_000 })
  for (let i = 0; i < 5; i++) failures.failed(new Error('x'))
  timers.tick(2500)
  failures.flush()
  t.same(lines.map((l) => l.msg), ['bus publish failing', 'bus publish failing: 4 times in the last 10 s'])
  timers.tick(60_000)
  t.equal(lines.length, 2, 'no timer left behind')
})

t.test('kinds of failure are counted apart', async (t) => {
  const timers = new FakeTimers()
  const { log, lines } = recorder()
  const logs = new RepeatedFailureLogs({ log, timers, intervalMs: 5000, level: 'error' })
  for (let i = 0; i < 100; i++) { logs.failed('503: database', new Error('db')); logs.failed('503: overloaded', new Error('busy')) }
  timers.tick(5000)
  t.same(lines.map((l) => l.msg).sort(), ['503: database', '503: database: 99 times in the last 5 s', '503: overloaded', '503: overloaded: 99 times in the last 5 s'])
})
