// Entry point: validates the configuration, builds the app, listens, and on SIGTERM/SIGINT drains: readiness turns
// 503, no new work is admitted, in-flight requests get DRAIN_MS to finish, then the process exits 0.
import { ConfigError, loadConfig } from "./config.js";
import { BundleError, findBundleDirs, noBundleMessage } from "./bundle/manifest.js";
import { buildApp } from "./app.js";

function fail(message: string, code: number): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
  if (findBundleDirs(config.modelsDir).length === 0) fail(noBundleMessage(config.modelsDir), 1);

  let app;
  try {
    app = await buildApp(config);
  } catch (err) {
    fail(err instanceof BundleError ? err.message : `could not start: ${(err as Error).message}`, 1);
  }
  await app.listen({ port: config.port, host: config.host });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal, drainMs: config.drainMs }, "draining");
    app.lifecycle.draining = true; // readyz 503; /v1 requests refused with 503
    const drained = await drain(app, config.drainMs);
    if (!drained) app.log.warn({ inflight: app.lifecycle.inflight }, "drain time over; closing with requests still running");
    await app.close();
    app.log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

/** Stops accepting connections, then waits until no request is in flight (true) or `ms` passed (false). */
async function drain(app: Awaited<ReturnType<typeof buildApp>>, ms: number): Promise<boolean> {
  app.server.close(); // no new connections; open ones finish their requests
  app.server.closeIdleConnections();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (app.lifecycle.inflight === 0) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return app.lifecycle.inflight === 0;
}

main().catch((err) => fail(String((err as Error)?.stack ?? err), 1));
