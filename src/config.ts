// Server configuration: environment variables and matching command-line flags, validated once at boot.
// This is the only module that reads process.env (server.ts passes it in); everything else gets a Config.
import os from "node:os";
import { parseArgs } from "node:util";

export type Device = "auto" | "cpu" | "cuda";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  port: number; // TCP port to listen on
  host: string; // interface to bind
  modelsDir: string; // directory holding one sub-directory per model bundle
  defaultModel: string | null; // bundle served when a request names none (null: "default", else the first by name)
  device: Device; // execution provider: auto = CUDA where it loads, else CPU (with a warning)
  workers: number; // inference worker threads (each holds its own sessions)
  threadsPerWorker: number; // onnxruntime intra-op threads per worker
  maxBatchSize: number; // rows per inference run
  maxBatchDelayMs: number; // how long a non-full batch may wait for more rows once a worker is free
  maxQueue: number; // rows waiting per model and graph before requests are refused (429)
  requestTimeoutMs: number; // a request's deadline, from arrival (504 past it)
  bodyLimitBytes: number; // whole request body
  fileLimitBytes: number; // one image (multipart file or decoded base64)
  maxImagePixels: number; // decoded width * height per image (decompression bombs)
  drainMs: number; // on SIGTERM: how long in-flight requests get to finish
  logLevel: LogLevel;
}

export class ConfigError extends Error {}

interface Setting {
  key: keyof Config;
  env: string;
  flag: string;
  kind: "int" | "string" | "enum";
  min?: number;
  choices?: readonly string[];
  help: string;
}

// One row per setting: the README's configuration table lists the same names and defaults.
export const SETTINGS: readonly Setting[] = [
  { key: "port", env: "PORT", flag: "port", kind: "int", min: 0, help: "TCP port" },
  { key: "host", env: "HOST", flag: "host", kind: "string", help: "interface to bind" },
  { key: "modelsDir", env: "MODELS_DIR", flag: "models-dir", kind: "string", help: "directory of model bundles" },
  { key: "defaultModel", env: "DEFAULT_MODEL", flag: "default-model", kind: "string", help: "default model name" },
  {
    key: "device",
    env: "DEVICE",
    flag: "device",
    kind: "enum",
    choices: ["auto", "cpu", "cuda"],
    help: "auto|cpu|cuda",
  },
  { key: "workers", env: "WORKERS", flag: "workers", kind: "int", min: 1, help: "inference worker threads" },
  {
    key: "threadsPerWorker",
    env: "THREADS_PER_WORKER",
    flag: "threads-per-worker",
    kind: "int",
    min: 1,
    help: "onnxruntime threads per worker",
  },
  {
    key: "maxBatchSize",
    env: "MAX_BATCH_SIZE",
    flag: "max-batch-size",
    kind: "int",
    min: 1,
    help: "rows per inference run",
  },
  {
    key: "maxBatchDelayMs",
    env: "MAX_BATCH_DELAY_MS",
    flag: "max-batch-delay-ms",
    kind: "int",
    min: 0,
    help: "batch gathering delay (ms)",
  },
  {
    key: "maxQueue",
    env: "MAX_QUEUE",
    flag: "max-queue",
    kind: "int",
    min: 1,
    help: "queued rows per model and graph",
  },
  {
    key: "requestTimeoutMs",
    env: "REQUEST_TIMEOUT_MS",
    flag: "request-timeout-ms",
    kind: "int",
    min: 1,
    help: "request deadline (ms)",
  },
  {
    key: "bodyLimitBytes",
    env: "BODY_LIMIT_BYTES",
    flag: "body-limit-bytes",
    kind: "int",
    min: 1024,
    help: "request body limit (bytes)",
  },
  {
    key: "fileLimitBytes",
    env: "FILE_LIMIT_BYTES",
    flag: "file-limit-bytes",
    kind: "int",
    min: 1,
    help: "per-image limit (bytes)",
  },
  {
    key: "maxImagePixels",
    env: "MAX_IMAGE_PIXELS",
    flag: "max-image-pixels",
    kind: "int",
    min: 1,
    help: "decoded pixels per image",
  },
  { key: "drainMs", env: "DRAIN_MS", flag: "drain-ms", kind: "int", min: 0, help: "shutdown drain time (ms)" },
  {
    key: "logLevel",
    env: "LOG_LEVEL",
    flag: "log-level",
    kind: "enum",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    help: "log level",
  },
];

/**
 * THREADS_PER_WORKER's default: the cores but one, shared among the workers (at least 1). The spare core is the HTTP
 * thread's and image decoding's (libuv): on 2 cores, 1 intra-op thread served captions and VQA 30-100% faster than
 * 2 with the default student, at a fraction of the CPU per request (`npm run bench -- --server-env ...`).
 */
export function defaultThreadsPerWorker(cpus: number, workers: number): number {
  return Math.max(1, Math.floor((cpus - 1) / workers));
}

export function defaultConfig(cpus: number = os.availableParallelism()): Config {
  return {
    port: 8080,
    host: "0.0.0.0",
    modelsDir: "models",
    defaultModel: null,
    device: "auto",
    workers: 1,
    threadsPerWorker: defaultThreadsPerWorker(cpus, 1),
    maxBatchSize: 32,
    maxBatchDelayMs: 0,
    maxQueue: 256,
    requestTimeoutMs: 30_000,
    bodyLimitBytes: 20 * 1024 * 1024,
    fileLimitBytes: 10 * 1024 * 1024,
    maxImagePixels: 40_000_000,
    drainMs: 10_000,
    logLevel: "info",
  };
}

/** Resolves the configuration: defaults < environment < flags. Throws ConfigError naming the bad variable/flag. */
export function loadConfig(
  env: Record<string, string | undefined>,
  argv: readonly string[],
  overrides: Partial<Config> = {},
): Config {
  const options = Object.fromEntries(SETTINGS.map((s) => [s.flag, { type: "string" as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...options, help: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message.split("\n")[0]);
  }
  if (values.help) throw new ConfigError(usage());
  const cfg: Record<string, unknown> = { ...defaultConfig() };
  // threads default to the cores but one shared among workers; recomputed once workers is known
  let threadsSet = false;
  for (const s of SETTINGS) {
    const fromFlag = values[s.flag];
    const raw = typeof fromFlag === "string" ? fromFlag : env[s.env];
    if (raw === undefined || raw === "") continue;
    const source = typeof fromFlag === "string" ? `--${s.flag}` : s.env;
    cfg[s.key] = parseValue(s, raw.trim(), source);
    if (s.key === "threadsPerWorker") threadsSet = true;
  }
  if (!threadsSet) cfg.threadsPerWorker = defaultThreadsPerWorker(os.availableParallelism(), cfg.workers as number);
  const out = { ...(cfg as unknown as Config), ...overrides };
  if (out.port > 65535) throw new ConfigError(`PORT must be <= 65535, got ${out.port}`);
  if (out.fileLimitBytes > out.bodyLimitBytes) {
    throw new ConfigError(
      `FILE_LIMIT_BYTES (${out.fileLimitBytes}) must not exceed BODY_LIMIT_BYTES (${out.bodyLimitBytes})`,
    );
  }
  return out;
}

function parseValue(s: Setting, raw: string, source: string): unknown {
  if (s.kind === "int") {
    if (!/^\d+$/.test(raw)) throw new ConfigError(`${source} must be a non-negative integer, got '${raw}'`);
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < (s.min ?? 0))
      throw new ConfigError(`${source} must be an integer >= ${s.min ?? 0}, got '${raw}'`);
    return n;
  }
  if (s.kind === "enum" && !s.choices!.includes(raw)) {
    throw new ConfigError(`${source} must be one of ${s.choices!.join(", ")}, got '${raw}'`);
  }
  return raw;
}

export function usage(): string {
  const d = defaultConfig() as unknown as Record<string, unknown>;
  const rows = SETTINGS.map(
    (s) => `  --${s.flag.padEnd(20)} ${s.env.padEnd(20)} ${s.help} (default: ${d[s.key] ?? "see README"})`,
  );
  return ["usage: node dist/server.js [flags]   (each flag also reads the environment variable shown)", ...rows].join(
    "\n",
  );
}
