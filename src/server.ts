// Entry point: validates the configuration, builds the app, listens, and on SIGTERM/SIGINT drains: readiness turns
// 503 and new /v1 requests are refused (503, Retry-After) while admitted ones finish, for at most DRAIN_MS; then the
// listener and the inference workers close and the process exits 0. `npm start` execs this process (package.json),
// so the signals npm passes on reach it, and npm exits with its code.
import os from "node:os";
import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.js";
import { BundleError, findBundleDirs, noBundleMessage } from "./bundle/manifest.js";
import { ConfigError, loadConfig, usage, type Config } from "./config.js";

function fail(message: string, code: number): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  if (process.argv.includes("--help")) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  let config: Config;
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
  if (findBundleDirs(config.modelsDir).length === 0) fail(noBundleMessage(config.modelsDir), 1);

  let app: FastifyInstance;
  try {
    app = await buildApp(config);
  } catch (err) {
    fail(err instanceof BundleError ? err.message : `could not start: ${(err as Error).message}`, 1);
  }
  await app.listen({ port: config.port, host: config.host });
  logThreadPool(app);

  let stopping = false;
  const stop = async (signal: string) => {
    // one signal can come twice (Ctrl-C reaches npm and the server, and npm passes it on): the drain goes on
    if (stopping) return void app.log.info({ signal }, "already draining");
    stopping = true;
    app.log.info({ signal, inflight: app.lifecycle.inflight, drainMs: config.drainMs }, "draining");
    const unanswered = await app.lifecycle.drain(config.drainMs);
    if (unanswered > 0) app.log.warn({ inflight: unanswered }, "drain time over; closing with requests unanswered");
    await app.close();
    app.log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

/** libuv's pool (sharp decodes, zlib inflates) is sized from the environment at launch only: see README. */
function logThreadPool(app: FastifyInstance): void {
  const given = process.env.UV_THREADPOOL_SIZE;
  const cores = os.availableParallelism();
  app.log.info({ uvThreadpoolSize: given ?? "4 (libuv default)", cores }, "libuv thread pool");
  if (given === undefined && cores > 4)
    app.log.warn(`UV_THREADPOOL_SIZE is unset: at most 4 images decode at once on ${cores} cores; set it at launch`);
}

main().catch((err) => fail(String((err as Error)?.stack ?? err), 1));
