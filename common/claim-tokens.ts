/**
 * The tokens of a queue's claims (the mailer's messages, the purger's CDN
 * jobs): rows are taken for a lease under a fresh token, and every later
 * write of them holds only while they still carry it.
 *
 * A claim whose connection died with the statement in flight has an unseen
 * outcome: when the primary is killed and a standby that has the commit is
 * promoted, the rows are taken under a token nobody holds, and would sit
 * 'sending' for a whole lease. So such tokens are kept, and the next claim
 * first gives their rows back (`giveBack`; a no-op where nothing committed).
 */
import { randomBytes } from 'node:crypto'
import { isConnectionError } from './errors.js'

export class ClaimTokens {
  readonly #unseen = new Set<string>()
  readonly #giveBack: (tokens: string[]) => Promise<unknown>

  /** `giveBack`: makes the rows still carrying these tokens due again, under no token. */
  constructor (giveBack: (tokens: string[]) => Promise<unknown>) {
    this.#giveBack = giveBack
  }

  /** Runs one claim under a fresh token, after giving back what earlier claims may have taken unseen. */
  async claim<T> (run: (token: string) => Promise<T>): Promise<T> {
    if (this.#unseen.size > 0) {
      const tokens = [...this.#unseen]
      await this.#giveBack(tokens)
      for (const token of tokens) this.#unseen.delete(token)
    }
    const token = randomBytes(12).toString('base64url')
    try {
      return await run(token)
    } catch (err) {
      if (isConnectionError(err)) this.#unseen.add(token)
      throw err
    }
  }
}
