/**
 * Where messages go, both through nodemailer: an SMTP server (SMTP_URL), or,
 * without one, a folder of .eml files under the state directory (the
 * one-machine tier needs no outside server). A transport only delivers; what
 * a failure means (retry, give up) is the sender's to decide.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import nodemailer from 'nodemailer'

export interface OutgoingMessage {
  /** `<uuid@domain>`, the same on every attempt. */
  messageId: string
  from: string
  replyTo?: string
  to: string
  subject: string
  text: string
  html: string
  /** When the write committed: the same on every attempt, so a resend is byte-for-byte the same message. */
  date: Date
}

export interface MailTransport {
  readonly kind: 'smtp' | 'folder'
  /** For logs and `npm start`: where messages go (never the password). */
  readonly description: string
  send (message: OutgoingMessage): Promise<void>
  close (): Promise<void>
}

function mailOptions (m: OutgoingMessage) {
  return {
    messageId: m.messageId,
    from: m.from,
    ...(m.replyTo ? { replyTo: m.replyTo } : {}),
    // An address object, never a string nodemailer would parse: one recipient, whatever it holds.
    to: { name: '', address: m.to },
    subject: m.subject,
    text: m.text,
    html: m.html,
    date: m.date,
    // RFC 3834: an automatic message; auto-responders do not answer it.
    headers: { 'Auto-Submitted': 'auto-generated' }
  }
}

export interface SmtpOptions {
  url: string
  rejectUnauthorized: boolean
  requireTLS: boolean
  poolSize: number
  timeoutMs: number
}

/** smtp:// (STARTTLS when the server offers it, or required) or smtps:// (implicit TLS); auth from the URL. */
export function smtpTransport (options: SmtpOptions): MailTransport {
  const url = new URL(options.url)
  const secure = url.protocol === 'smtps:'
  const port = url.port ? Number(url.port) : secure ? 465 : 587
  const user = decodeURIComponent(url.username)
  const transporter = nodemailer.createTransport({
    pool: true,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port,
    secure,
    requireTLS: !secure && options.requireTLS,
    ...(user ? { auth: { user, pass: decodeURIComponent(url.password) } } : {}),
    tls: { rejectUnauthorized: options.rejectUnauthorized, servername: url.hostname },
    maxConnections: options.poolSize,
    // The pool must never resend on its own: a connection that closed after
    // the server took the message would deliver it twice. Our retry (same
    // Message-ID, after back-off) is the only one.
    maxRequeues: 0,
    connectionTimeout: options.timeoutMs,
    greetingTimeout: options.timeoutMs,
    socketTimeout: options.timeoutMs,
    idleTimeout: 30_000,
    logger: false
  })
  return {
    kind: 'smtp',
    description: `${url.protocol}//${user ? `${user}@` : ''}${url.host}`,
    async send (message) {
      await transporter.sendMail(mailOptions(message))
    },
    async close () {
      transporter.close()
    }
  }
}

/** A file name for a Message-ID: one file per message, so a resend overwrites instead of adding a copy. */
export function emlFileName (messageId: string): string {
  return `${messageId.replace(/^<|>$/g, '').replace(/[^A-Za-z0-9._@-]/g, '_')}.eml`
}

/** Messages as .eml files in `dir` (each written whole, then renamed into place). */
export function folderTransport (dir: string): MailTransport {
  const transporter = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' })
  let made: Promise<unknown> | undefined
  return {
    kind: 'folder',
    description: path.resolve(dir),
    async send (message) {
      made ??= mkdir(dir, { recursive: true })
      await made
      const info = await transporter.sendMail(mailOptions(message))
      const file = path.join(dir, emlFileName(message.messageId))
      const partial = `${file}.${process.pid}.tmp`
      await writeFile(partial, info.message as Buffer)
      await rename(partial, file)
    },
    async close () {
      transporter.close()
    }
  }
}
