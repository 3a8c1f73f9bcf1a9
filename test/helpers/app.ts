// Builds the app on the micro fixture bundle (test/fixtures/micro) and closes it after the test file.
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/app.js";
import { defaultConfig, type Config } from "../../src/config.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = path.join(ROOT, "test/fixtures");
export const MICRO = path.join(FIXTURES, "micro");

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...defaultConfig(),
    modelsDir: FIXTURES,
    workers: 1,
    threadsPerWorker: 1,
    logLevel: "silent",
    device: "cpu",
    ...overrides,
  };
}

export async function testApp(overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  const cfg = testConfig(overrides);
  return buildApp(cfg, { logger: cfg.logLevel === "silent" ? false : { level: cfg.logLevel } });
}

/**
 * Holds an inference worker through the app's own scheduler, as a long batch would, until `release()` (or `ms`):
 * while held, the worker is busy for certain, whatever the machine's speed. `done` resolves once it is free again.
 */
export async function holdWorker(
  app: FastifyInstance,
  ms = 60_000,
): Promise<{ release(): void; done: Promise<unknown> }> {
  const { Batcher } = await import("../../src/batching/batcher.js");
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const b = new Batcher(
    { model: "test", graph: "hold" },
    { maxBatch: 1, maxDelayMs: 0, maxQueue: 1 },
    async (xs: number[], w: number) => {
      await app.pool.run(w, { type: "block", ms, release: flag });
      return xs;
    },
    app.inference.scheduler,
  );
  const done = b.submit([0]);
  return {
    release: () => {
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
    },
    done,
  };
}

/** Waits until `cond()` holds, looking every few ms; fails saying `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The value of one sample of the app's metrics, by name and labels ({} matches the first sample). */
export async function metricValue(
  app: FastifyInstance,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const all = await app.metrics.registry.getMetricsAsJSON();
  for (const m of all) {
    for (const v of (
      m as unknown as { values: { metricName?: string; labels: Record<string, string | number>; value: number }[] }
    ).values) {
      const metricName = v.metricName ?? m.name;
      if (metricName !== name) continue;
      if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) return v.value;
    }
  }
  return 0;
}
