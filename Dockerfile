# One image for every Conveyor process: `conveyor webhook`, `conveyor relay`, `conveyor sink`,
# `conveyor migrate`, `conveyor pull ...` (the command is the container's arguments).
FROM node:20-bookworm-slim

WORKDIR /app
# Ops endpoints on every interface: health checks, probes and scrapes come from outside the container.
ENV NODE_ENV=production \
    CONVEYOR_HOME=/data \
    SINK_OUTPUT_DIR=/data/lake \
    OPS_HOST=0.0.0.0

# Dependencies first, so code changes do not re-install them. `npm install`, not `npm ci`: it also
# copes with a lock made where the registry lacked some platform's optional binaries (see the README).
COPY package.json package-lock.json ./
COPY services/cli/package.json services/cli/package.json
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force

COPY libs libs
COPY services services
COPY schemas schemas
COPY infra/simulator infra/simulator
COPY infra/stack infra/stack
COPY tsconfig.json ./

# The CLI's bundle (.build/), made now: the app folder is not writable by the node user.
RUN node services/cli/bin/conveyor.mjs --help > /dev/null \
    && mkdir -p /data/lake && chown -R node:node /data
USER node
VOLUME ["/data"]

# The launcher, as `npx conveyor` runs it: it gives node the flags a command needs (the sink's smaller
# young generation, which keeps it under 256 MB).
ENTRYPOINT ["services/cli/bin/conveyor"]
CMD ["--help"]
