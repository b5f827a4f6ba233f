/**
 * The provider's sending quota, as plain arithmetic over the one `mail_rate`
 * row every mailer shares (each claim locks it, so the quota holds for all
 * mailers together):
 *
 * - per second: sends are spaced 1/rate apart (`next_slot_at` is the next
 *   free slot), so no window of one second, sliding or aligned, ever holds
 *   more than `perSecond` of them; a claim takes at most the slots of the
 *   coming second;
 * - per day: sends are counted in hourly buckets (the current hour and the 24
 *   before it, newest first); their sum covers every send of the last 24
 *   hours (and up to one hour more: the quota errs on the safe side).
 */
export const HOUR_MS = 3_600_000
export const BUCKETS = 25

export interface QuotaState {
  nextSlotAt: number
  hourStart: number
  hourCounts: number[]
}

export interface QuotaLimits {
  /** 0: no limit. May be fractional (0.5: one every two seconds). */
  perSecond: number
  /** 0: no limit. */
  perDay: number
}

export interface Grant {
  /** Sends allowed now (at most `want`). */
  granted: number
  /** Send i of this grant goes at `start + i * intervalMs`. */
  start: number
  intervalMs: number
  /** With nothing granted: how long until the quota allows one send. */
  waitMs: number
  /** The buckets as of now (shifted), to store with the grant's sends. */
  hourStart: number
  hourCounts: number[]
}

/** The buckets moved on to `now`'s hour: hours that passed add empty buckets at the front. */
export function shiftBuckets (state: Pick<QuotaState, 'hourStart' | 'hourCounts'>, now: number): { hourStart: number, hourCounts: number[] } {
  const hour = Math.floor(now / HOUR_MS)
  const was = Math.floor(state.hourStart / HOUR_MS)
  const counts = Array.from({ length: BUCKETS }, (_, i) => Number(state.hourCounts[i] ?? 0))
  const shift = hour - was
  // A clock that went back (another mailer's clock ahead of ours) keeps the buckets as they are.
  if (shift <= 0) return { hourStart: state.hourStart, hourCounts: counts }
  const shifted = shift >= BUCKETS ? new Array<number>(BUCKETS).fill(0) : [...new Array<number>(shift).fill(0), ...counts.slice(0, BUCKETS - shift)]
  return { hourStart: hour * HOUR_MS, hourCounts: shifted }
}

export function grant (state: QuotaState, limits: QuotaLimits, now: number, want: number): Grant {
  const { hourStart, hourCounts } = shiftBuckets(state, now)
  const intervalMs = limits.perSecond > 0 ? 1000 / limits.perSecond : 0
  const start = intervalMs > 0 ? Math.max(now, state.nextSlotAt) : now
  let granted = want
  let waitMs = 0
  if (intervalMs > 0) {
    // Slots from `start` that begin within the coming second.
    const slots = Math.max(0, Math.ceil((now + 1000 - start) / intervalMs))
    if (slots === 0) waitMs = Math.max(1, Math.ceil(start - 1000 - now) + 1)
    granted = Math.min(granted, slots)
  }
  if (limits.perDay > 0) {
    const used = hourCounts.reduce((a, b) => a + b, 0)
    const left = Math.max(0, limits.perDay - used)
    if (left === 0) {
      // The oldest non-empty bucket leaves the window when its hour is 25 hours old.
      let oldest = BUCKETS - 1
      while (oldest > 0 && hourCounts[oldest] === 0) oldest--
      waitMs = Math.max(waitMs, hourStart + (BUCKETS - oldest) * HOUR_MS - now)
    }
    granted = Math.min(granted, left)
  }
  granted = Math.max(0, granted)
  return { granted, start, intervalMs, waitMs: granted > 0 ? 0 : waitMs, hourStart, hourCounts }
}

/** The row after `sent` sends of a grant were claimed. */
export function consume (g: Grant, sent: number): QuotaState {
  const hourCounts = [...g.hourCounts]
  hourCounts[0] += sent
  return { nextSlotAt: g.start + sent * g.intervalMs, hourStart: g.hourStart, hourCounts }
}
