/**
 * common/bus-position.ts and where each transport tells a subscriber it
 * starts (SubscribeOptions.onStart): the two halves of "has this process
 * applied every invalidation up to X" (issue 11, finding 3). The Redis part
 * runs against the real Redis at REDIS_URL.
 */
import t from 'tap'
import { EventEmitter } from 'node:events'
import { Redis } from 'ioredis'
import { BusPosition, atOrBefore, compareBusIds, parseBusId } from '../../common/bus-position.js'
import { IpcBus, MemoryBus, RedisStreamBus, relayBus } from '../../common/bus.js'

const until = async (check: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  return check()
}

t.test('ids of both transports compare in their stream order', async (t) => {
  t.same(parseBusId('1700000000000-3'), [1700000000000n, 3n])
  t.same(parseBusId('42'), [42n, 0n])
  for (const bad of ['', 'gap-17', '1-2-3', '-1', ' 1', '1.5', undefined, 7]) t.equal(parseBusId(bad), undefined, `${String(bad)} is no id`)
  t.equal(compareBusIds('1700000000000-3', '1700000000000-12'), -1, 'sequence numbers compare as numbers, not text')
  t.equal(compareBusIds('1700000000001-0', '1700000000000-99'), 1)
  t.equal(compareBusIds('9', '10'), -1)
  t.equal(compareBusIds('5', '5-0'), 0)
  t.equal(compareBusIds('5', 'gap-1'), undefined)
  t.ok(atOrBefore('5', '5'))
  t.notOk(atOrBefore('6', '5'))
  t.notOk(atOrBefore('5', undefined))
})

t.test('a position only moves forward and releases waiters once reached', async (t) => {
  const p = new BusPosition()
  t.equal(p.current, undefined)
  t.notOk(p.reached('1'), 'nothing is reached before the start is known')
  t.ok(p.reached('junk'), 'a malformed id asks for nothing')
  const early = p.waitFor('5', 10_000)
  const late = p.waitFor('9', 10_000)
  p.advance('3')
  p.advance('gap-99') // a transport's synthetic notice is no position
  t.equal(p.current, '3')
  p.advance('6')
  t.equal(await early, true, 'released by a later id')
  p.advance('4')
  t.equal(p.current, '6', 'never backwards')
  const started = Date.now()
  t.equal(await p.waitFor('100', 30), false, 'bounded')
  t.ok(Date.now() - started < 5000)
  t.equal(await p.waitFor('2', 0), true, 'already reached')
  p.close()
  t.equal(await late, false, 'close releases everybody')
})

t.test('MemoryBus: a subscriber starts at the newest id delivered', async (t) => {
  const bus = new MemoryBus()
  const starts: string[] = []
  bus.subscribe(() => {}, { onStart: (id) => starts.push(id) })
  const id = await bus.publish({ kind: 'keys', keys: ['home'] })
  bus.subscribe(() => {}, { onStart: (s) => starts.push(s) })
  t.same(starts, ['0', id])
  await bus.close()
})

t.test('relayBus + IpcBus: a child that joins late learns where the tree stands', async (t) => {
  const root = new MemoryBus()
  const relay = relayBus(root)
  t.teardown(() => relay.close())
  const pair = () => {
    const childEnd = new EventEmitter() as EventEmitter & { send: (m: unknown, a?: unknown, b?: unknown, cb?: (e: Error | null) => void) => boolean, connected: boolean }
    const parentEnd = new EventEmitter() as EventEmitter & { send: (m: unknown) => boolean, connected: boolean }
    childEnd.connected = parentEnd.connected = true
    childEnd.send = (m, _a, _b, cb) => { setImmediate(() => parentEnd.emit('message', m)); cb?.(null); return true }
    parentEnd.send = (m) => { setImmediate(() => childEnd.emit('message', m)); return true }
    return { childEnd, parentEnd }
  }
  await root.publish({ kind: 'keys', keys: ['a'] })
  const last = await root.publish({ kind: 'keys', keys: ['b'] })
  const one = pair()
  relay.attach(one.parentEnd as never)
  const child = new IpcBus(one.childEnd as never)
  t.teardown(() => child.close())
  const position = new BusPosition()
  const got: string[] = []
  child.subscribe((m) => { got.push(m.id); position.advance(m.id) }, { onStart: (id) => position.advance(id) })
  t.ok(await until(() => position.current !== undefined), 'the start position arrived')
  t.equal(position.current, last, 'it starts at the newest event before it joined')
  const next = await root.publish({ kind: 'keys', keys: ['c'] })
  t.ok(await until(() => position.current === next))
  t.same(got, [next], 'and receives what follows')
  // A second subscriber in the same child starts where the child is now.
  let second: string | undefined
  child.subscribe(() => {}, { onStart: (id) => { second = id } })
  t.equal(second, next)
})

const redisUrl = process.env.REDIS_URL
t.test('RedisStreamBus: a subscriber starts at the stream\'s last id', { skip: redisUrl ? false : 'REDIS_URL not set' }, async (t) => {
  const stream = `flashcrowd:test:position:${process.pid}:${Date.now()}`
  const bus = new RedisStreamBus({ url: redisUrl!, stream, blockMs: 200 })
  const admin = new Redis(redisUrl!)
  t.teardown(async () => { await bus.close(); await admin.del(stream); admin.disconnect() })
  // Written as the outbox does, on a connection that queues until it is up.
  const add = async (key: string) => await admin.xadd(stream, '*', 'e', JSON.stringify({ kind: 'keys', keys: [key] }), 'at', String(Date.now())) as string
  const last = await add('x')
  const position = new BusPosition()
  bus.subscribe((m) => position.advance(m.id), { onStart: (id) => position.advance(id) })
  t.ok(await until(() => position.current !== undefined))
  t.equal(position.current, last)
  const next = await add('y')
  t.ok(await until(() => position.current === next), 'and follows the stream')
  t.equal(compareBusIds(last, next), -1)
})
