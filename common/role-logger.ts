/**
 * How a role's Fastify app logs: a test passes `false` (silent) or its own
 * logger; a server passes nothing and gets pino at the configured level.
 */
import type { FastifyBaseLogger } from 'fastify'

export function roleLoggerOptions (logger: FastifyBaseLogger | false | undefined, level: string): { logger: false | { level: string } } | { loggerInstance: FastifyBaseLogger } {
  if (logger === false) return { logger: false }
  return logger ? { loggerInstance: logger } : { logger: { level } }
}
