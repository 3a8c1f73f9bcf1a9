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
  return { ...defaultConfig(), modelsDir: FIXTURES, workers: 1, threadsPerWorker: 1, logLevel: "silent", device: "cpu", ...overrides };
}

export async function testApp(overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  const cfg = testConfig(overrides);
  return buildApp(cfg, { logger: cfg.logLevel === "silent" ? false : { level: cfg.logLevel } });
}
