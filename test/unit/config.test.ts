import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, defaultConfig, defaultThreadsPerWorker, loadConfig, SETTINGS } from "../../src/config.js";

test("defaults, then environment, then flags", () => {
  const d = loadConfig({}, []);
  assert.equal(d.port, 8080);
  assert.equal(d.host, "0.0.0.0");
  assert.equal(d.modelsDir, "models");
  assert.equal(d.device, "auto");
  assert.equal(d.precision, "fp32");
  const e = loadConfig({ PORT: "9000", DEVICE: "cpu", MAX_BATCH_SIZE: "8", PRECISION: "int8" }, []);
  assert.deepEqual([e.port, e.device, e.maxBatchSize, e.precision], [9000, "cpu", 8, "int8"]);
  assert.equal(loadConfig({ PRECISION: "int8" }, ["--precision", "fp32"]).precision, "fp32");
  const f = loadConfig({ PORT: "9000" }, ["--port", "9100", "--max-batch-delay-ms=5", "--models-dir", "/m"]);
  assert.deepEqual([f.port, f.maxBatchDelayMs, f.modelsDir], [9100, 5, "/m"]);
});

test("bad values and unknown flags are refused naming the variable or flag", () => {
  assert.throws(
    () => loadConfig({ PORT: "eighty" }, []),
    (e: unknown) => e instanceof ConfigError && /PORT/.test((e as Error).message),
  );
  assert.throws(() => loadConfig({}, ["--workers", "0"]), /--workers must be an integer >= 1/);
  assert.throws(() => loadConfig({ DEVICE: "tpu" }, []), /DEVICE must be one of auto, cpu, cuda/);
  assert.throws(() => loadConfig({ PRECISION: "fp8" }, []), /PRECISION must be one of fp32, int8, fp16, got 'fp8'/);
  assert.throws(
    () => loadConfig({}, ["--precision", "INT8"]),
    /--precision must be one of fp32, int8, fp16, got 'INT8'/,
  );
  assert.throws(() => loadConfig({}, ["--nope", "1"]), ConfigError);
  assert.throws(() => loadConfig({ PORT: "70000" }, []), /65535/);
  assert.throws(() => loadConfig({ FILE_LIMIT_BYTES: "5000000", BODY_LIMIT_BYTES: "4000000" }, []), /FILE_LIMIT_BYTES/);
});

test("the watchdog's STUCK_RUN_MS: generous by default, a positive integer; FAULT_INJECTION is off unless true", () => {
  const d = loadConfig({}, []);
  assert.equal(d.stuckRunMs, 120_000);
  assert.equal(d.faultInjection, "false");
  assert.equal(loadConfig({ STUCK_RUN_MS: "500" }, []).stuckRunMs, 500);
  assert.equal(loadConfig({}, ["--stuck-run-ms", "2000"]).stuckRunMs, 2000);
  assert.throws(() => loadConfig({ STUCK_RUN_MS: "0" }, []), /STUCK_RUN_MS must be an integer >= 1, got '0'/);
  assert.throws(() => loadConfig({ STUCK_RUN_MS: "1m" }, []), /STUCK_RUN_MS must be a non-negative integer/);
  assert.throws(() => loadConfig({ FAULT_INJECTION: "yes" }, []), /FAULT_INJECTION must be one of true, false/);
});

test("threads per worker default to the cores but one shared among workers", () => {
  const c = loadConfig({ WORKERS: "2" }, []);
  assert.ok(c.threadsPerWorker >= 1);
  assert.deepEqual(
    [defaultThreadsPerWorker(1, 1), defaultThreadsPerWorker(2, 1), defaultThreadsPerWorker(16, 1)],
    [1, 1, 15],
  );
  assert.deepEqual([defaultThreadsPerWorker(2, 2), defaultThreadsPerWorker(16, 3)], [1, 5]);
  assert.equal(loadConfig({ THREADS_PER_WORKER: "3" }, []).threadsPerWorker, 3);
});

test("every setting has an env name, a flag and a default", () => {
  const d = defaultConfig() as unknown as Record<string, unknown>;
  for (const s of SETTINGS) {
    assert.ok(s.key in d, s.key);
    assert.match(s.env, /^[A-Z_]+$/);
    assert.match(s.flag, /^[a-z-]+$/);
  }
});

test("the README's configuration table lists every setting, in order, with its flag and literal default", () => {
  const readme = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../README.md"), "utf8");
  const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \| `--([a-z-]+)` \| ([^|]+) \|/gm)];
  assert.deepEqual(
    rows.map((r) => [r[1], r[2]]),
    SETTINGS.map((s) => [s.env, s.flag]),
  );
  const d = defaultConfig() as unknown as Record<string, unknown>;
  for (const [row, s] of rows.map((r, i) => [r, SETTINGS[i]] as const)) {
    const literal = /^`([^`]+)`/.exec(row[3].trim()); // computed defaults are described in words
    if (literal) assert.equal(literal[1], String(d[s.key]), s.env);
    else assert.equal(typeof s.default === "function" || s.default === null, true, `${s.env}: a literal default`);
  }
});
