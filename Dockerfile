# One image for every role; the compose file picks the role by command.
# syntax=docker/dockerfile:1
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY common ./common
COPY migrations ./migrations
COPY backend ./backend
COPY frontend ./frontend
COPY cache ./cache
COPY mailer ./mailer
COPY loadtest ./loadtest
COPY scripts ./scripts
# The mailer's .eml folder when no SMTP_URL is set (a volume in docker-compose.yml).
RUN mkdir -p /app/state/mail && chown -R node:node /app/state
USER node
ENV HOST=0.0.0.0
EXPOSE 3000 3001 3002 8080
CMD ["npm", "start"]
