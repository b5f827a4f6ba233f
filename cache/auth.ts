/**
 * Credentials for the cache's admin requests (PURGE, BAN, health details:
 * ADMIN_TOKEN) and its metrics (METRICS_TOKEN): the bearer check every role shares.
 */
export { authorize, type AuthResult } from '../common/bearer-token.js'
