import t from 'tap'
import { BUCKETS, HOUR_MS, consume, grant, shiftBuckets, type QuotaState } from '../../mailer/quota.js'

const fresh = (): QuotaState => ({ nextSlotAt: 0, hourStart: 0, hourCounts: new Array(BUCKETS).fill(0) })

t.test('per second: the slots of the coming second, 1/rate apart, never more', async (t) => {
  const now = 1_000_000_123
  let state = fresh()
  const g = grant(state, { perSecond: 4, perDay: 0 }, now, 50)
  t.match(g, { granted: 4, start: now, intervalMs: 250, waitMs: 0 })
  state = consume(g, 4)
  t.equal(state.nextSlotAt, now + 1000)
  const none = grant(state, { perSecond: 4, perDay: 0 }, now, 50)
  t.equal(none.granted, 0, 'the coming second is taken')
  t.equal(none.waitMs, 1, 'until the next slot enters the coming second')
  const later = grant(state, { perSecond: 4, perDay: 0 }, now + 300, 50)
  t.match(later, { granted: 2, start: now + 1000 }, 'slots at +1000 and +1250 lie within [now + 300, + 1 s)')
  const half = grant(fresh(), { perSecond: 0.5, perDay: 0 }, now, 50)
  t.match(half, { granted: 1, intervalMs: 2000 }, 'fractional rates: one every two seconds')
  t.match(grant(fresh(), { perSecond: 0, perDay: 0 }, now, 50), { granted: 50, intervalMs: 0 }, '0: no limit')
  t.equal(grant(fresh(), { perSecond: 100, perDay: 0 }, now, 7).granted, 7, 'never more than wanted')
})

t.test('per day: every send of the last 24 hours counts; the wait ends when the oldest leaves', async (t) => {
  const day0 = 500 * HOUR_MS
  let state = fresh()
  const g1 = grant(state, { perSecond: 0, perDay: 10 }, day0 + 10 * 60_000, 6)
  t.equal(g1.granted, 6)
  state = consume(g1, 6)
  const g2 = grant(state, { perSecond: 0, perDay: 10 }, day0 + 5 * HOUR_MS, 6)
  t.equal(g2.granted, 4, 'four left')
  state = consume(g2, 4)
  const g3 = grant(state, { perSecond: 0, perDay: 10 }, day0 + 23 * HOUR_MS + 59 * 60_000, 6)
  t.equal(g3.granted, 0, 'a day has not passed since the first six')
  t.equal(day0 + 23 * HOUR_MS + 59 * 60_000 + g3.waitMs, day0 + 25 * HOUR_MS, 'they leave the window 25 hourly buckets later (erring on the safe side)')
  const g4 = grant(state, { perSecond: 0, perDay: 10 }, day0 + 25 * HOUR_MS, 10)
  t.equal(g4.granted, 6, 'the first six left the window')
  const g5 = grant(state, { perSecond: 0, perDay: 10 }, day0 + 40 * HOUR_MS, 10)
  t.equal(g5.granted, 10, 'and later all of them')
})

t.test('buckets shift by whole hours; a clock that went back keeps them', async (t) => {
  const counts = Array.from({ length: BUCKETS }, (_, i) => i + 1)
  const moved = shiftBuckets({ hourStart: 10 * HOUR_MS, hourCounts: counts }, 12 * HOUR_MS + 5)
  t.equal(moved.hourStart, 12 * HOUR_MS)
  t.same(moved.hourCounts.slice(0, 4), [0, 0, 1, 2])
  t.equal(moved.hourCounts.length, BUCKETS)
  t.same(shiftBuckets({ hourStart: 10 * HOUR_MS, hourCounts: counts }, 9 * HOUR_MS).hourCounts, counts)
  t.same(shiftBuckets({ hourStart: 0, hourCounts: counts }, 100 * HOUR_MS).hourCounts, new Array(BUCKETS).fill(0))
})
