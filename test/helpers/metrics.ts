/** The scraper's credential in tests: every role's test config sets METRICS_TOKEN to it. */
export const METRICS_TOKEN = 'test-metrics-token-0123456789'
export const scraper = { authorization: `Bearer ${METRICS_TOKEN}` }
