# One image for every role; compose and Kubernetes pick the role by its command
# (`node dist/<role>/server.js`). Roles run as plain node processes on code
# compiled at build time: no npm or tsx beside them, nothing transpiled at start.
# syntax=docker/dockerfile:1
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# tsc (a dev dependency) compiles the roles and scripts into dist/ (npm run build).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY common ./common
COPY migrations ./migrations
COPY backend ./backend
COPY frontend ./frontend
COPY cache ./cache
COPY mailer ./mailer
COPY purger ./purger
COPY scripts ./scripts
RUN npm run build

FROM node:20-bookworm-slim AS runtime
# tini is PID 1: it passes SIGTERM/SIGINT to node (whose graceful close drains
# in-flight requests, common/shutdown.ts) and reaps any process left behind.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY --from=build /app/dist ./dist
# The load tester runs from its sources through tsx (its generator threads load TypeScript).
COPY tsconfig.json ./
COPY common ./common
COPY loadtest ./loadtest
# The mailer's .eml folder when no SMTP_URL is set (a volume in docker-compose.yml).
RUN mkdir -p /app/state/mail && chown -R node:node /app/state
USER node
ENV HOST=0.0.0.0
EXPOSE 3000 3001 3002 3003 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/scripts/start.js"]
