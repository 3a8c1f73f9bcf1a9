# DLIP serve as a container. Two targets:
#   gpu (default): NVIDIA CUDA 12 runtime with cuDNN 9; onnxruntime-node's CUDA provider installed by npm ci.
#   cpu:           Node 20 slim; onnxruntime-node's CPU provider only.
#   docker build -t dlip-serve:gpu .            docker build --target cpu -t dlip-serve:cpu .
# Both: production dependencies, compiled JavaScript, the bundle contract (training/dlip/export/*.json), the
# playground page (static/), the bundles of models/ in /app/models (mount others over it, or elsewhere with
# MODELS_DIR), a non-root user, nothing written at run time but the embedded collections store in the volume
# /app/data (COLLECTIONS_DATA_DIR; a read-only root file system works; give it a /tmp),
# tini as PID 1 so SIGTERM reaches Node and the server drains.
# test/deploy/container.test.ts starts the server with this file's ENTRYPOINT, CMD, WORKDIR and ENV.

FROM node:20.20.2-bookworm-slim AS node

# Compiled JavaScript (dist/). Dev dependencies live only in this stage.
FROM node AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies for the CPU image (.npmrc skips onnxruntime-node's CUDA download).
FROM node AS deps-cpu
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Production dependencies for the GPU image: onnxruntime-node's install script fetches its CUDA 12 provider
# libraries; the build stops here if it did not.
FROM node AS deps-gpu
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund --onnxruntime-node-install=cuda12 \
    && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
    && npm cache clean --force

# tini, statically linked, so the same binary runs on Debian and Ubuntu.
FROM node AS tini
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

FROM node:20.20.2-bookworm-slim AS cpu
COPY --from=tini /usr/bin/tini-static /usr/bin/tini
WORKDIR /app
COPY --from=deps-cpu /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# The bundle contract the server reads at run time (dist/bundle/ resolves it two folders up, as from src/bundle/).
COPY training/dlip/export/contract.json training/dlip/export/manifest.schema.json ./training/dlip/export/
# The playground page's files (dist/routes/ resolves them two folders up, as from src/routes/).
COPY static ./static
COPY models ./models
# The embedded collections store (COLLECTIONS_DATA_DIR, a folder in it: a fresh volume may hold lost+found) is the one
# thing the server writes: a volume, so collections outlive the container, owned by the server's user. One server per
# directory: for several, set DATABASE_URL (PostgreSQL).
RUN mkdir /app/data && chown 10001:10001 /app/data
VOLUME ["/app/data"]
# The files stay root's and read-only to the server; it runs as an unprivileged numeric user (Kubernetes'
# runAsNonRoot can only check a numeric one).
USER 10001:10001
# ORT_DISABLE_TELEMETRY: onnxruntime would otherwise keep a device id and event database under ~/.cache and try to
# upload telemetry; the root file system is read-only and a server has no business calling out.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 MODELS_DIR=models COLLECTIONS_DATA_DIR=data/collections DEVICE=cpu ORT_DISABLE_TELEMETRY=1
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server.js"]

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gpu
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=tini /usr/bin/tini-static /usr/bin/tini
WORKDIR /app
COPY --from=deps-gpu /src/node_modules ./node_modules
# Every library the CUDA provider links must be in this image (a CUDA major version that does not match the
# provider's stops the build here); only the driver's libcuda.so.1 comes at run time, with the GPU.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ldd node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
    | awk '/not found/ && !/libcuda\.so\.1/ { print "the CUDA provider needs " $1 ", which this image lacks"; bad = 1 } END { exit bad }'
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY training/dlip/export/contract.json training/dlip/export/manifest.schema.json ./training/dlip/export/
COPY static ./static
COPY models ./models
RUN mkdir /app/data && chown 10001:10001 /app/data
VOLUME ["/app/data"]
USER 10001:10001
# auto: CUDA where the container sees a GPU, else CPU with a warning; DEVICE=cuda refuses to start without one.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 MODELS_DIR=models COLLECTIONS_DATA_DIR=data/collections DEVICE=auto ORT_DISABLE_TELEMETRY=1
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server.js"]
