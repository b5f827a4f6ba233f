/**
 * One graceful exit for every long-running process (the roles' server.ts,
 * `npm start`, `npm run cluster`), through close-with-grace: SIGINT, SIGTERM
 * (a rolling update's stop), the other terminating signals, an uncaught
 * exception or unhandled rejection, and — for a process started by a
 * supervisor over IPC — the supervisor going away. `close` runs once; the
 * process then exits 0, or 1 after an error. `delayMs` bounds the whole close:
 * past it the process exits 1 whatever is still draining, so a stuck
 * connection cannot hold a pod in Terminating until the kubelet's SIGKILL.
 * A second signal during the close exits at once (Ctrl-C twice) — unless it
 * comes within a second of the first: a terminal sends Ctrl-C to the whole
 * process group and `npm run` forwards it to its child again, so one key
 * press arrives twice within milliseconds, and taking the copy for a second
 * press skipped the close (the embedded database left unclosed).
 */
import closeWithGrace from 'close-with-grace'

export interface ShutdownLog {
  info: (obj: Record<string, unknown>, msg: string) => void
  error: (obj: Record<string, unknown>, msg: string) => void
}

export interface ShutdownReason {
  /** The signal, or `disconnect` when the supervisor went away, `manual` when `close()` was called. */
  cause: string
  err?: Error
}

export interface Shutdown {
  /** Runs the close now (as a signal would), then exits 0. */
  close: () => void
}

/** close-with-grace's terminating signals, which this module answers itself (the repeat window above). */
const SIGNALS = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV', 'SIGUSR2', 'SIGTERM'] as const satisfies readonly NodeJS.Signals[]
/** A signal this soon after the close began is the same one delivered twice, not a second request. */
export const REPEAT_WINDOW_MS = 1000

export function gracefulShutdown (options: { delayMs: number, log: ShutdownLog }, close: (reason: ShutdownReason) => Promise<void>): Shutdown {
  const { log } = options
  let cause = 'manual'
  /** When the close began, by whatever began it. */
  let closingSince: number | undefined
  const closer = closeWithGrace({
    delay: options.delayMs,
    // The emptied event loop is not a request to stop (a finished start-up script exits by itself);
    // signals are answered below.
    skip: ['beforeExit', ...SIGNALS],
    logger: { error: (message: unknown) => log.error({ err: message instanceof Error ? message : undefined }, message instanceof Error ? 'close failed' : String(message)) },
    onTimeout: (delay) => log.error({ delayMs: delay }, `graceful close did not finish within ${delay} ms; exiting`),
    onSecondError: (err) => log.error({ err }, 'another uncaught error while closing; exiting now')
  }, async ({ signal, err }) => {
    closingSince ??= Date.now()
    const reason: ShutdownReason = { cause: signal ?? (err ? 'error' : cause), err }
    if (err) log.error({ err }, 'uncaught error: closing')
    else log.info({ signal: reason.cause }, 'closing')
    await close(reason)
  })
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closingSince === undefined) {
      closingSince = Date.now()
      cause = signal
      closer.close()
      return
    }
    if (Date.now() - closingSince < REPEAT_WINDOW_MS) return
    log.error({ signal }, `second ${signal} while closing; exiting now`)
    process.exit(1)
  }
  for (const signal of SIGNALS) process.on(signal, onSignal)
  // Forked by a supervisor (IPC): when it goes away, do not linger as an orphan.
  if (typeof process.send === 'function') process.once('disconnect', () => { cause = 'disconnect'; closer.close() })
  return { close: () => { closer.close() } }
}

/** A role's server listens, or logs why it could not and exits 1 (a port taken, an address it may not bind). */
export async function listenOrExit (app: { listen: (o: { host: string, port: number }) => Promise<unknown>, log: Pick<ShutdownLog, 'error'> }, at: { host: string, port: number }): Promise<void> {
  try {
    await app.listen(at)
  } catch (err) {
    app.log.error({ err }, 'could not listen')
    process.exit(1)
  }
}
