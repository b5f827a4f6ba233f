// Entry of a generator thread. Worker threads do not inherit the TypeScript
// loader of the thread that starts them (tsx registers its hooks per
// thread), so the thread registers it, then loads the real entry.
import { workerData } from 'node:worker_threads'
import { register } from 'tsx/esm/api'

register()
await import(workerData.entry)
