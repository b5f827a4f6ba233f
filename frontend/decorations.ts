/** What the app decorates Fastify with, typed once for every route file. */
import type { ContentRepository } from './repositories.js'
import type { PageServer } from './page-render.js'
import type { BackendClient } from './backend-client.js'
import type { RenderCache } from './render-cache.js'
import type { ReadYourWrites } from './read-your-writes.js'

export interface FrontendSettings {
  /** Extra origins whose form posts are accepted. */
  allowedOrigins: string[]
  now: () => number
}

declare module 'fastify' {
  interface FastifyInstance {
    repos: ContentRepository
    pages: PageServer
    backend: BackendClient
    renderCache: RenderCache
    ryw: ReadYourWrites
    settings: FrontendSettings
  }
}
