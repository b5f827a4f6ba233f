/** A second process on a shared store (test/cache/shared-store.test.ts): answers each key it is sent with the body it reads. */
import { SharedStore } from '../../cache/shared-store.js'
import { policyClassFor, systemClock } from '../../cache/freshness.js'

const store = new SharedStore({ path: process.argv[2], maxBytes: 1024 * 1024, Policy: policyClassFor(systemClock), admission: false })
process.on('message', (key) => {
  store.refresh()
  const o = store.lookup(String(key))
  process.send!(o === undefined ? null : o.bodies.identity.toString())
})
process.on('disconnect', () => { void store.close().then(() => process.exit(0)) })
