// The batching plugin: the scheduler that hands free inference workers to ready queues, with its events recorded as
// metrics (batch size, queue wait, inference time, queue depth, dropped rows), and the inference service over it.
// Decorates `app.inference`.
import fp from "fastify-plugin";
import type { Config } from "../config.js";
import { Scheduler, type BatchKey } from "../batching/batcher.js";
import { Inference } from "../services/inference.js";

declare module "fastify" {
  interface FastifyInstance {
    inference: Inference;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const m = app.metrics;
    const label = (k: BatchKey) => [k.model, k.graph] as const;
    const scheduler = new Scheduler(config.workers, (w) => app.pool.usable(w), {
      onBatch(k, size, waits) {
        m.batchSize.labels(...label(k)).observe(size);
        for (const w of waits) m.queueWait.labels(...label(k)).observe(w);
        m.inflightBatches.inc();
      },
      onRun(k, seconds, ok) {
        m.inflightBatches.dec();
        m.inferenceDuration.labels(...label(k)).observe(seconds);
        if (!ok) m.inferenceErrors.labels(...label(k)).inc();
      },
      onJoin(k, waits) {
        for (const w of waits) m.queueWait.labels(...label(k)).observe(w);
      },
      onDepth: (k, depth) => m.queueDepth.labels(...label(k)).set(depth),
      onDrop: (k, rows, reason) => m.droppedRows.labels(...label(k), reason).inc(rows),
      onRerun: (k, rows, reason) => m.rerunRows.labels(...label(k), reason).inc(rows),
    });
    app.pool.on("idle", () => scheduler.poke()); // a restarted worker takes work again
    const inference = new Inference(scheduler, app.pool, app.models.list(), {
      maxBatch: config.maxBatchSize,
      maxDelayMs: config.maxBatchDelayMs,
      maxQueue: config.maxQueue,
      continuous: config.continuousBatching === "true",
      keptTtlMs: config.requestTimeoutMs + 5000, // as the workers' (plugins/models.ts)
    });
    app.decorate("inference", inference);
    app.addHook("onClose", async () => scheduler.close());
  },
  { name: "batching", dependencies: ["models", "metrics"] },
);
