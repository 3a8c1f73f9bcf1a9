// The models plugin: reads the bundles, starts the inference workers (each creates every model's onnxruntime
// sessions, checks them against the manifest and warms them up; a failure fails the boot loudly), then opens the
// lifecycle. Decorates `app.models` (the registry), `app.pool` (the workers) and `app.lifecycle`.
import fp from "fastify-plugin";
import type { Config } from "../config.js";
import { WorkerPool, type LossEvent, type StuckEvent } from "../inference/pool.js";
import { Lifecycle } from "../services/lifecycle.js";
import { loadModels, workerModel, type ModelRegistry } from "../services/models.js";

declare module "fastify" {
  interface FastifyInstance {
    models: ModelRegistry;
    pool: WorkerPool;
    lifecycle: Lifecycle;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const models = await loadModels(config, app.log);
    const served = models.list();
    const lifecycle = new Lifecycle();
    const pool = new WorkerPool(
      config.workers,
      {
        models: served.map(workerModel),
        device: config.device,
        threads: config.threadsPerWorker,
        warmup: true,
        // a kept row outlives its request's deadline only by this margin (the request releases it when it ends)
        storeTtlMs: config.requestTimeoutMs + 5000,
      },
      app.log,
      { stuckRunMs: config.stuckRunMs, faultInjection: config.faultInjection === "true" },
    );
    const m = app.metrics;
    pool.on("lost", (e: LossEvent) => m.workerRestarts.labels(e.model, e.reason).inc());
    pool.on("start_failed", () => m.workerRestarts.labels("none", "start_failed").inc());
    pool.on("stuck", (e: StuckEvent) => m.stuckRuns.labels(e.model, e.graph).inc());
    await pool.start(); // sessions created, checked against the manifest, warmed up (fails loudly)
    lifecycle.open();
    for (const m of served) {
      app.log.info(
        { model: m.name, version: m.manifest.version, precision: m.precision, provider: pool.provider },
        "model loaded",
      );
      app.metrics.modelInfo.labels(m.name, m.manifest.version, pool.provider, m.precision).set(1);
    }
    app.log.info(
      {
        models: served.map((m) => m.name),
        default: models.defaultName,
        provider: pool.provider,
        workers: config.workers,
      },
      "models loaded",
    );
    app.decorate("models", models);
    app.decorate("pool", pool);
    app.decorate("lifecycle", lifecycle);
    app.addHook("onClose", async () => {
      lifecycle.close();
      await pool.close();
    });
  },
  { name: "models", dependencies: ["metrics"] },
);
