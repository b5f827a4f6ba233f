/**
 * The SMTP server of bench:signup-rush, as its own process: it stands for
 * the provider (SES), which is not on the tier's machines, so the benchmark
 * starts it at low priority and it never sits in the load generator's
 * event loop. Accepts every message and counts them by Message-ID; answers
 * `{ port }` once listening and `{ total, counts }` to a 'report' message.
 */
import { SMTPServer } from 'smtp-server'

const counts = new Map<string, number>()
let total = 0
const server = new SMTPServer({
  logger: false,
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  closeTimeout: 500,
  onData (stream, _session, callback) {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      const id = /^Message-ID:\s*(\S+)/im.exec(Buffer.concat(chunks).toString('utf8'))?.[1] ?? '(none)'
      counts.set(id, (counts.get(id) ?? 0) + 1)
      total++
      callback()
    })
  }
})
server.on('error', () => { /* a client reset mid-session is not the sink's problem */ })
server.listen(0, '127.0.0.1', () => {
  process.send!({ port: (server.server.address() as { port: number }).port })
})
process.on('message', (m) => {
  if (m === 'report') process.send!({ total, counts: [...counts] })
  if (m === 'reset') { counts.clear(); total = 0; process.send!({ reset: true }) }
})
process.on('disconnect', () => { server.close(() => process.exit(0)) })
