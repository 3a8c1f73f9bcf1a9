// What every result file is stamped with: the machine (CPU model, cores, memory, load), software versions, the git
// commit and the exact command, so that a number can be traced to where and how it was measured.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

export interface Stamp {
  time: string; // ISO 8601, when the part started
  command: string; // the exact command line, as typed (npm run ... -- flags) when run through npm
  machine: {
    cpu_model: string;
    cores: number; // logical CPUs this process may use
    memory_gib: number;
    os: string;
    load_average_1m: number; // at the start: a busy machine makes every number slower
  };
  versions: Record<string, string>;
  git: { commit: string | null; dirty: boolean | null };
  env: Record<string, string>; // environment variables that change the numbers (threads)
}

const require = createRequire(import.meta.url);

function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    // packages whose exports hide package.json: read it from the resolved entry's folder upwards
    let dir = path.dirname(require.resolve(name));
    for (let i = 0; i < 5; i++, dir = path.dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as {
          name?: string;
          version: string;
        };
        if (pkg.name === name) return pkg.version;
      } catch {
        /* keep looking */
      }
    }
    return "unknown";
  }
}

function git(root: string, args: string[]): string | null {
  try {
    return execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/** The command that started this process: `npm run bench -- --quick` under npm, else `node ... args`. */
export function commandLine(argv: readonly string[]): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  // under npm, argv starts with the script's own flags (bench:models adds --parts models): those are not typed
  const scriptWords = (process.env.npm_lifecycle_script ?? "").split(/\s+/);
  const own = scriptWords.slice(scriptWords.findIndex((w) => w.endsWith("main.ts")) + 1);
  const typed = own.length > 0 && own.every((w, i) => argv[i] === w) ? argv.slice(own.length) : argv;
  const script = process.env.npm_lifecycle_event;
  const args = (script ? typed : argv).map(quote).join(" ");
  if (script) return `npm run ${script}${args ? ` -- ${args}` : ""}`;
  return `${path.relative(process.cwd(), process.argv[1] ?? "bench/main.ts")} ${args}`.trim();
}

export function stamp(root: string, argv: readonly string[]): Stamp {
  const cpus = os.cpus();
  const commit = git(root, ["rev-parse", "HEAD"]);
  const status = git(root, ["status", "--porcelain", "--untracked-files=no"]);
  return {
    time: new Date().toISOString(),
    command: commandLine(argv),
    machine: {
      cpu_model: cpus[0]?.model.trim() ?? "unknown",
      cores: os.availableParallelism(),
      memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      load_average_1m: Math.round(os.loadavg()[0] * 100) / 100,
    },
    versions: {
      node: process.versions.node,
      "onnxruntime-node": packageVersion("onnxruntime-node"),
      autocannon: packageVersion("autocannon"),
      fastify: packageVersion("fastify"),
      sharp: packageVersion("sharp"),
    },
    git: { commit, dirty: status === null ? null : status.length > 0 },
    env: Object.fromEntries(
      ["OMP_NUM_THREADS", "UV_THREADPOOL_SIZE", "NODE_OPTIONS"]
        .filter((k) => process.env[k] !== undefined)
        .map((k) => [k, process.env[k]!]),
    ),
  };
}
