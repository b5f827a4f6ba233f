// A generator thread: runs the slice it is given and posts what it measured
// to the thread that started it (local.ts). Messages:
//   in:  { type: 'run', assignment } · { type: 'stop' }
//   out: { type: 'ready' } · SliceEvent · { type: 'done' } · { type: 'error', message }
import { parentPort } from 'node:worker_threads'
import { runSliceHere, type SliceAssignment } from './slice-runner.js'

const port = parentPort
if (!port) throw new Error('worker-thread.ts runs in a worker thread (see local.ts)')

const ac = new AbortController()
port.on('message', (m: { type: 'run', assignment: SliceAssignment } | { type: 'stop' }) => {
  if (m.type === 'stop') {
    ac.abort()
    return
  }
  runSliceHere(m.assignment, e => port.postMessage(e), ac.signal)
    .then(() => port.postMessage({ type: 'done' }))
    .catch((err: unknown) => port.postMessage({ type: 'error', message: (err as Error)?.message ?? String(err) }))
})
port.postMessage({ type: 'ready' })
