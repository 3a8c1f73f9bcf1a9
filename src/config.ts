// Server configuration: environment variables and matching command-line flags, validated once at boot.
// This is the only module that reads process.env (server.ts passes it in); everything else gets a Config.
import os from "node:os";
import { parseArgs } from "node:util";

// One row per setting: its Config key, environment variable, flag, kind, default and meaning. The Config type and
// the defaults follow from these rows; the README's configuration table lists the same names and defaults (a test
// compares them).
export const SETTINGS = [
  { key: "port", env: "PORT", flag: "port", kind: "int", min: 0, default: 8080, help: "TCP port" },
  { key: "host", env: "HOST", flag: "host", kind: "string", default: "0.0.0.0", help: "interface to bind" },
  {
    key: "modelsDir",
    env: "MODELS_DIR",
    flag: "models-dir",
    kind: "string",
    default: "models",
    help: "directory of model bundles (one sub-directory each)",
  },
  {
    key: "defaultModel",
    env: "DEFAULT_MODEL",
    flag: "default-model",
    kind: "string",
    default: null, // the bundle named "default", else the first by name
    help: "default model name",
  },
  {
    key: "device",
    env: "DEVICE",
    flag: "device",
    kind: "enum",
    choices: ["auto", "cpu", "cuda"], // auto: CUDA where it loads, else CPU (with a warning)
    default: "auto",
    help: "auto|cpu|cuda",
  },
  {
    key: "precision",
    env: "PRECISION",
    flag: "precision",
    kind: "enum",
    // int8/fp16: a bundle without such a variant of every graph serves fp32 (with a warning)
    choices: ["fp32", "int8", "fp16"],
    default: "fp32",
    help:
      "fp32|int8|fp16: the bundles' float graphs, or each bundle's dynamic-quantised int8 graphs, or its float16 " +
      "graphs (for GPUs), where it has them",
  },
  {
    key: "workers",
    env: "WORKERS",
    flag: "workers",
    kind: "int",
    min: 1,
    default: 1,
    help: "inference worker threads (each holds its own sessions)",
  },
  {
    key: "threadsPerWorker",
    env: "THREADS_PER_WORKER",
    flag: "threads-per-worker",
    kind: "int",
    min: 1,
    default: (cpus: number, workers: number) => defaultThreadsPerWorker(cpus, workers),
    help: "onnxruntime intra-op threads per worker",
  },
  {
    key: "maxBatchSize",
    env: "MAX_BATCH_SIZE",
    flag: "max-batch-size",
    kind: "int",
    min: 1,
    default: 32,
    help: "rows per inference run",
  },
  {
    key: "maxBatchDelayMs",
    env: "MAX_BATCH_DELAY_MS",
    flag: "max-batch-delay-ms",
    kind: "int",
    min: 0,
    default: 0,
    help: "how long a non-full batch may wait for more rows once a worker is free (ms)",
  },
  {
    key: "continuousBatching",
    env: "CONTINUOUS_BATCHING",
    flag: "continuous-batching",
    kind: "enum",
    choices: ["true", "false"], // false: a decode batch runs whole, rows arriving meanwhile wait for it
    default: "true",
    help: "true|false: caption and VQA rows join running decodes at step boundaries and leave when finished",
  },
  {
    key: "maxQueue",
    env: "MAX_QUEUE",
    flag: "max-queue",
    kind: "int",
    min: 1,
    default: 256,
    help: "rows waiting per model and graph before requests are refused (429)",
  },
  {
    key: "requestTimeoutMs",
    env: "REQUEST_TIMEOUT_MS",
    flag: "request-timeout-ms",
    kind: "int",
    min: 1,
    default: 30_000,
    help: "a request's deadline from arrival (ms; 504 past it)",
  },
  {
    key: "stuckRunMs",
    env: "STUCK_RUN_MS",
    flag: "stuck-run-ms",
    kind: "int",
    min: 1,
    // far above any real run (a 32-image batch of BLIP-base's 384 px vision graph takes ~1 min of one CPU core)
    default: 120_000,
    help: "a graph run longer than this marks its worker stuck: it is replaced and its rows run again once (ms)",
  },
  {
    key: "bodyLimitBytes",
    env: "BODY_LIMIT_BYTES",
    flag: "body-limit-bytes",
    kind: "int",
    min: 1024,
    default: 20 * 1024 * 1024,
    help: "request body limit (bytes)",
  },
  {
    key: "fileLimitBytes",
    env: "FILE_LIMIT_BYTES",
    flag: "file-limit-bytes",
    kind: "int",
    min: 1,
    default: 10 * 1024 * 1024,
    help: "per-image limit: a multipart file or decoded base64 (bytes)",
  },
  {
    key: "maxImagePixels",
    env: "MAX_IMAGE_PIXELS",
    flag: "max-image-pixels",
    kind: "int",
    min: 1,
    default: 40_000_000,
    help: "decoded width x height per image (decompression bombs)",
  },
  {
    key: "imageUrlHosts",
    env: "IMAGE_URL_HOSTS",
    flag: "image-url-hosts",
    kind: "string",
    default: null, // no URLs
    help: "hosts image URLs may be fetched from, comma-separated: exact names or *.domain (empty: no URLs)",
  },
  {
    key: "imageUrlMaxBytes",
    env: "IMAGE_URL_MAX_BYTES",
    flag: "image-url-max-bytes",
    kind: "int",
    min: 1,
    default: 10 * 1024 * 1024,
    help: "bytes read from an image URL at most (413 past it)",
  },
  {
    key: "imageUrlTimeoutMs",
    env: "IMAGE_URL_TIMEOUT_MS",
    flag: "image-url-timeout-ms",
    kind: "int",
    min: 1,
    default: 5000,
    help: "time for one image URL fetch, connect to last byte (ms; 504 past it)",
  },
  {
    key: "drainMs",
    env: "DRAIN_MS",
    flag: "drain-ms",
    kind: "int",
    min: 0,
    default: 10_000,
    help: "on SIGTERM, how long admitted requests get to finish (ms)",
  },
  {
    key: "logLevel",
    env: "LOG_LEVEL",
    flag: "log-level",
    kind: "enum",
    choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    default: "info",
    help: "log level",
  },
  {
    key: "apiKeys",
    env: "API_KEYS",
    flag: "api-keys",
    kind: "string",
    default: null, // no key: the API is open
    help: "comma-separated API keys; when set, /v1, /v2 and the OpenAI routes need 'Authorization: Bearer <key>'",
  },
  {
    key: "apiKeysFile",
    env: "API_KEYS_FILE",
    flag: "api-keys-file",
    kind: "string",
    default: null,
    help: "a file of API keys, one per line (e.g. a mounted Kubernetes Secret), added to API_KEYS",
  },
  {
    key: "playground",
    env: "PLAYGROUND",
    flag: "playground",
    kind: "enum",
    choices: ["true", "false"],
    default: "true",
    help: "serve the playground page at / (false: 404)",
  },
  {
    key: "databaseUrl",
    env: "DATABASE_URL",
    flag: "database-url",
    kind: "string",
    default: null, // the embedded store (PGlite) in COLLECTIONS_DATA_DIR
    help: "PostgreSQL (with pgvector >= 0.8) for collections, e.g. postgres://user:pass@host:5432/db; unset: embedded",
  },
  {
    key: "collectionsDataDir",
    env: "COLLECTIONS_DATA_DIR",
    flag: "collections-data-dir",
    kind: "string",
    default: "data/collections",
    help: "directory of the embedded collections store (PGlite), when DATABASE_URL is unset",
  },
  {
    key: "collectionsMaxItems",
    env: "COLLECTIONS_MAX_ITEMS",
    flag: "collections-max-items",
    kind: "int",
    min: 1,
    default: 64,
    help: "items per PUT /v1/collections/{name}/items request (bulk: the imports route)",
  },
  {
    key: "collectionsMaxMetadataBytes",
    env: "COLLECTIONS_MAX_METADATA_BYTES",
    flag: "collections-max-metadata-bytes",
    kind: "int",
    min: 2,
    default: 8192,
    help: "an item's metadata, as JSON (bytes)",
  },
  {
    key: "faultInjection",
    env: "FAULT_INJECTION",
    flag: "fault-injection",
    kind: "enum",
    choices: ["true", "false"], // tests only: no request can reach it (WorkerPool.inject is called by test code)
    default: "false",
    help: "tests only: lets test code make an inference worker throw or hang at a chosen graph run",
  },
] as const;

type Setting = (typeof SETTINGS)[number];
type Value<S extends Setting> = S extends { kind: "int" }
  ? number
  : S extends { kind: "enum"; choices: readonly (infer C)[] }
    ? C
    : S extends { default: null }
      ? string | null
      : string;

/** The resolved configuration: one field per setting, typed by its kind. */
export type Config = { -readonly [S in Setting as S["key"]]: Value<S> };
export type Device = Config["device"];
export type Precision = Config["precision"];
export type LogLevel = Config["logLevel"];

export class ConfigError extends Error {}

/**
 * THREADS_PER_WORKER's default: the cores but one, shared among the workers (at least 1). The spare core is the HTTP
 * thread's and image decoding's (libuv): on 2 cores, 1 intra-op thread served captions and VQA 30-100% faster than
 * 2 with the default student, at a fraction of the CPU per request (`npm run bench -- --server-env ...`).
 */
export function defaultThreadsPerWorker(cpus: number, workers: number): number {
  return Math.max(1, Math.floor((cpus - 1) / workers));
}

export function defaultConfig(cpus: number = os.availableParallelism()): Config {
  return withDefaults({}, cpus);
}

/** `given` completed with each setting's default; a computed default (threads) sees the given or default workers. */
function withDefaults(given: Record<string, unknown>, cpus: number): Config {
  const cfg: Record<string, unknown> = {};
  for (const s of SETTINGS) if (typeof s.default !== "function") cfg[s.key] = given[s.key] ?? s.default;
  for (const s of SETTINGS)
    if (typeof s.default === "function") cfg[s.key] = given[s.key] ?? s.default(cpus, cfg.workers as number);
  return cfg as Config;
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
  const given: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const fromFlag = values[s.flag];
    const raw = typeof fromFlag === "string" ? fromFlag : env[s.env];
    if (raw === undefined || raw === "") continue;
    const source = typeof fromFlag === "string" ? `--${s.flag}` : s.env;
    given[s.key] = parseValue(s, raw.trim(), source);
  }
  const out = { ...withDefaults(given, os.availableParallelism()), ...overrides };
  if (out.port > 65535) throw new ConfigError(`PORT must be <= 65535, got ${out.port}`);
  if (out.fileLimitBytes > out.bodyLimitBytes) {
    throw new ConfigError(
      `FILE_LIMIT_BYTES (${out.fileLimitBytes}) must not exceed BODY_LIMIT_BYTES (${out.bodyLimitBytes})`,
    );
  }
  if (out.collectionsMaxItems > out.maxQueue) {
    // a request's images go to the vision queue together: more than it holds would always be refused (429)
    throw new ConfigError(
      `COLLECTIONS_MAX_ITEMS (${out.collectionsMaxItems}) must not exceed MAX_QUEUE (${out.maxQueue})`,
    );
  }
  if (out.apiKeys !== null && out.apiKeys.split(",").every((k) => k.trim() === "")) {
    throw new ConfigError(`API_KEYS holds no key, got '${out.apiKeys}' (leave it unset for an open API)`);
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
  if (s.kind === "enum" && !(s.choices as readonly string[]).includes(raw)) {
    throw new ConfigError(`${source} must be one of ${s.choices.join(", ")}, got '${raw}'`);
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
