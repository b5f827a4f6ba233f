/**
 * One origin fetch per key per node, whatever the number of workers: before a
 * worker's request leads a fetch for the cache, it asks the node's primary
 * for the key (over the cluster IPC channel). The primary grants it to one
 * worker at a time; the others are told when the fetch is over and look in
 * the shared store again (shared-store.ts), where the object now is — the
 * waiting list of coalesce.ts, extended across processes.
 *
 * A fetch whose answer could not be stored leaves a hit-for-miss marker here
 * too, so every worker then fetches such a key directly instead of queueing.
 * A lock whose holder died or never released is freed after `leaseMs`.
 */
import type { Worker } from 'node:cluster'

export type LockOutcome =
  /** This worker fetches; it must call `release` when done. */
  | 'granted'
  /** Another worker fetched meanwhile: look again. */
  | 'released'
  /** The key is hit-for-miss on this node: fetch without the lock. */
  | 'pass'
  /** No answer in time: fetch without the lock. */
  | 'timeout'

export interface NodeLock {
  acquire (key: string): Promise<LockOutcome>
  release (key: string, uncacheable: boolean): void
  close (): void
}

const TAG = '__flashcrowdLock'
type Message =
  | { [TAG]: 'acquire', id: number, key: string }
  | { [TAG]: 'release', key: string, uncacheable: boolean }
  | { [TAG]: 'answer', id: number, outcome: LockOutcome }

function isLockMessage (m: unknown): m is Message {
  return m !== null && typeof m === 'object' && typeof (m as Record<string, unknown>)[TAG] === 'string'
}

type IpcEnd = Pick<NodeJS.Process, 'send' | 'on' | 'off'> & { connected?: boolean }

/** Worker side. */
export function ipcNodeLock (options: { timeoutMs: number, end?: IpcEnd }): NodeLock {
  const end = options.end ?? process
  let next = 0
  const pending = new Map<number, { resolve: (o: LockOutcome) => void, timer: NodeJS.Timeout }>()
  const onMessage = (m: unknown) => {
    if (!isLockMessage(m) || m[TAG] !== 'answer') return
    const p = pending.get(m.id)
    if (p === undefined) return
    pending.delete(m.id)
    clearTimeout(p.timer)
    p.resolve(m.outcome)
  }
  end.on('message', onMessage)
  const send = (m: Message): boolean => {
    if (typeof end.send !== 'function' || end.connected === false) return false
    try { end.send(m); return true } catch { return false }
  }
  return {
    acquire (key) {
      return new Promise((resolve) => {
        const id = ++next
        const timer = setTimeout(() => { pending.delete(id); resolve('timeout') }, options.timeoutMs)
        timer.unref()
        pending.set(id, { resolve, timer })
        if (!send({ [TAG]: 'acquire', id, key })) { pending.delete(id); clearTimeout(timer); resolve('timeout') }
      })
    },
    release (key, uncacheable) { send({ [TAG]: 'release', key, uncacheable }) },
    close () {
      end.off('message', onMessage)
      for (const [, p] of pending) { clearTimeout(p.timer); p.resolve('timeout') }
      pending.clear()
    }
  }
}

interface Held { holder: Worker, waiters: Array<{ worker: Worker, id: number }>, timer: NodeJS.Timeout }

/** Primary side: the node's table of keys being fetched. */
export function nodeLockServer (options: { leaseMs: number, hitForMissMs: number, now?: () => number }) {
  const now = options.now ?? Date.now
  const held = new Map<string, Held>()
  const passUntil = new Map<string, number>()
  const answer = (w: Worker, id: number, outcome: LockOutcome) => {
    if (!w.isConnected()) return
    try { w.send({ [TAG]: 'answer', id, outcome } satisfies Message) } catch { /* the worker is going away */ }
  }
  const free = (key: string) => {
    const h = held.get(key)
    if (h === undefined) return
    held.delete(key)
    clearTimeout(h.timer)
    for (const w of h.waiters) answer(w.worker, w.id, 'released')
  }
  return {
    attach (worker: Worker) {
      const onMessage = (m: unknown) => {
        if (!isLockMessage(m)) return
        if (m[TAG] === 'acquire') {
          const until = passUntil.get(m.key)
          if (until !== undefined) {
            if (now() < until) { answer(worker, m.id, 'pass'); return }
            passUntil.delete(m.key)
          }
          const h = held.get(m.key)
          if (h !== undefined) { h.waiters.push({ worker, id: m.id }); return }
          const timer = setTimeout(() => { free(m.key) }, options.leaseMs)
          timer.unref()
          held.set(m.key, { holder: worker, waiters: [], timer })
          answer(worker, m.id, 'granted')
        } else if (m[TAG] === 'release') {
          if (held.get(m.key)?.holder !== worker) return
          if (m.uncacheable && options.hitForMissMs > 0) {
            // Bounded: markers are per key being fetched, and expire.
            if (passUntil.size >= 100_000) passUntil.clear()
            passUntil.set(m.key, now() + options.hitForMissMs)
          }
          free(m.key)
        }
      }
      worker.on('message', onMessage)
      worker.once('exit', () => {
        worker.off('message', onMessage)
        // A worker that died mid-fetch frees its keys: the waiters look again and one fetches.
        for (const [key, h] of held) if (h.holder === worker) free(key)
      })
    },
    /** Keys being fetched now (tests, metrics). */
    get size (): number { return held.size },
    close () {
      for (const key of [...held.keys()]) free(key)
      passUntil.clear()
    }
  }
}
