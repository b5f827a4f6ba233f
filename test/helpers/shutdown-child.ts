/**
 * A process that closes through common/shutdown.ts, for its tests: CLOSE=hang
 * never finishes closing, THROW=1 throws an uncaught error once running. It
 * prints `ready`, then `close <cause>` and `closed` as the close goes.
 */
import { gracefulShutdown } from '../../common/shutdown.js'

const line = (text: string) => process.stdout.write(`${text}\n`)
const log = { info: (_obj: Record<string, unknown>, msg: string) => line(`info ${msg}`), error: (_obj: Record<string, unknown>, msg: string) => line(`error ${msg}`) }
gracefulShutdown({ delayMs: Number(process.env.DELAY_MS ?? 2000), log }, async (reason) => {
  line(`close ${reason.cause}`)
  if (process.env.CLOSE === 'hang') await new Promise(() => {})
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.CLOSE_MS ?? 0)))
  line('closed')
})
// Something to keep the process alive, as a server's socket does.
setInterval(() => {}, 60_000)
line('ready')
if (process.env.THROW) setTimeout(() => { throw new Error('boom') }, 10)
