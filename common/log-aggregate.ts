/**
 * One log line per interval for a failure that repeats, instead of one per
 * occurrence: while the bus or the database is down, every write and every
 * request fails the same way, and a line (or an error stack) for each of
 * thousands buries everything else and costs the CPU the outage leaves.
 *
 * The first occurrence of an episode is logged in full (with its error and
 * stack); later ones are only counted, and each interval that saw any ends
 * with one line: "bus publish failing: 1,234 times in the last 10 s" (with the
 * last error's message). An interval without any ends the episode with one
 * line saying so; the next failure starts a new one, logged in full again.
 */

export type LogMethod = (obj: Record<string, unknown>, msg: string) => void

export interface AggregateLogger {
  info: LogMethod
  warn: LogMethod
  error: LogMethod
}

/** The timer functions used (a test passes fake ones). */
export interface Timers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const handle = setTimeout(fn, ms)
    // A count waiting to be logged must not keep a closing process alive.
    handle.unref()
    return handle
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}

export interface RepeatedFailureOptions {
  /** What fails, as the line starts: "bus publish failing". */
  what: string
  log: AggregateLogger
  /** Level of the first occurrence and of the counts (the end of an episode is info). */
  level?: 'warn' | 'error'
  intervalMs?: number
  timers?: Timers
}

function messageOf (err: unknown): string | undefined {
  if (err instanceof Error) return err.message
  return err === undefined ? undefined : String(err)
}

export class RepeatedFailureLog {
  readonly #what: string
  readonly #log: AggregateLogger
  readonly #level: 'warn' | 'error'
  readonly #intervalMs: number
  readonly #timers: Timers
  #timer: unknown
  /** Occurrences since the last line. */
  #pending = 0
  /** Occurrences in this episode. */
  #total = 0
  #lastMessage: string | undefined

  constructor (options: RepeatedFailureOptions) {
    this.#what = options.what
    this.#log = options.log
    this.#level = options.level ?? 'warn'
    this.#intervalMs = options.intervalMs ?? 10_000
    this.#timers = options.timers ?? realTimers
  }

  /** Records one failure: logged in full if it starts an episode, counted otherwise. */
  failed (err?: unknown, extra: Record<string, unknown> = {}): void {
    this.#total++
    if (this.#timer === undefined) {
      this.#log[this.#level]({ ...extra, err }, this.#what)
      this.#arm()
      return
    }
    this.#pending++
    this.#lastMessage = messageOf(err)
  }

  /** Logs what is still counted (e.g. when the process closes) and ends the episode. */
  flush (): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending > 0) this.#logCount()
    this.#total = 0
  }

  #arm (): void {
    this.#timer = this.#timers.setTimeout(() => this.#tick(), this.#intervalMs)
  }

  #tick (): void {
    this.#timer = undefined
    if (this.#pending === 0) {
      this.#log.info({ failures: this.#total }, `${this.#what}: no more in the last ${this.#seconds()} s (${this.#total.toLocaleString('en-US')} in all)`)
      this.#total = 0
      return
    }
    this.#logCount()
    this.#arm()
  }

  #logCount (): void {
    this.#log[this.#level]({ count: this.#pending, lastError: this.#lastMessage }, `${this.#what}: ${this.#pending.toLocaleString('en-US')} times in the last ${this.#seconds()} s`)
    this.#pending = 0
  }

  #seconds (): string {
    return String(Math.round(this.#intervalMs / 100) / 10)
  }
}

/** One RepeatedFailureLog per kind of failure (e.g. per error code), made on first use. */
export class RepeatedFailureLogs {
  readonly #logs = new Map<string, RepeatedFailureLog>()
  readonly #options: Omit<RepeatedFailureOptions, 'what'>
  constructor (options: Omit<RepeatedFailureOptions, 'what'>) { this.#options = options }

  failed (what: string, err?: unknown, extra?: Record<string, unknown>): void {
    let log = this.#logs.get(what)
    if (!log) {
      log = new RepeatedFailureLog({ ...this.#options, what })
      this.#logs.set(what, log)
    }
    log.failed(err, extra)
  }

  flush (): void { for (const log of this.#logs.values()) log.flush() }
}
