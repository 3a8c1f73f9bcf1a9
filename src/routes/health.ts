// Probes and metrics: GET /healthz (the process and some inference worker are alive), GET /readyz (models loaded
// and warmed up, not draining), GET /metrics (Prometheus text format). All answered on the main thread, which
// never runs inference, so they stay fast while batches run.
import type { FastifyInstance } from "fastify";
import Type from "typebox";
import { ApiError } from "../errors.js";
import { ErrorBody } from "./schemas.js";

const Status = Type.Object({ status: Type.String() });
const Readiness = Type.Object({
  status: Type.String(),
  // the collections database: its own state, so that inference stays in service while it is away
  collections: Type.Object({
    status: Type.Enum(["ok", "unavailable", "not_opened"]),
    store: Type.Enum(["pglite", "postgres"]),
    reason: Type.Optional(Type.String()),
  }),
});

export default async function health(app: FastifyInstance) {
  app.get(
    "/healthz",
    { schema: { summary: "Liveness", tags: ["probes"], response: { 200: Status, 503: ErrorBody } } },
    async () => {
      assertLive(app);
      return { status: "ok" };
    },
  );

  app.get(
    "/readyz",
    {
      schema: {
        summary: "Readiness",
        description:
          "200 once models are loaded and warmed up (not draining); `collections` says whether the collections database answers, and why not (collection routes answer 503 meanwhile; inference does not depend on it)",
        tags: ["probes"],
        response: { 200: Readiness, 503: ErrorBody },
      },
    },
    async () => {
      assertReady(app);
      return { status: "ready", collections: await app.collections.health() };
    },
  );

  app.get(
    "/metrics",
    { schema: { summary: "Prometheus metrics", tags: ["probes"], hide: false } },
    async (_req, reply) => {
      reply.type(app.metrics.registry.contentType);
      return app.metrics.registry.metrics();
    },
  );
}

/**
 * Liveness (/healthz, /v2/health/live): some inference worker is up, else the 503 to answer. While none is (each one
 * lost: exited or stuck, its replacement starting or failing to), the process cannot serve: repeated failures make
 * Kubernetes restart the pod.
 */
export function assertLive(app: FastifyInstance): void {
  if (!app.pool.healthy()) throw new ApiError("not_ready", "no inference worker is running (restarting)", 1);
}

/** Readiness (/readyz, /v2/health/ready): models loaded and warmed up, not draining, a worker up; else the 503. */
export function assertReady(app: FastifyInstance): void {
  app.lifecycle.assertReady();
  assertLive(app);
}
