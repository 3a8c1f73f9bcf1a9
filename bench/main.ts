// `npm run bench`: runs the parts asked for (models, server), writes each part's JSON, then rebuilds the markdown
// report and the plots from every part's JSON in the results directory. Targets missed are reported, not fatal:
// these are benchmarks. Exit codes: 0 done, 1 a run failed, 2 bad flags or a missing bundle/setup.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runFull, type FullResult } from "./full.js";
import type { GpuResult } from "./gpu.js";
import { COLLECTIONS_FULL, COLLECTIONS_QUICK, runCollections, type CollectionsResult } from "./collections.js";
import { collectionsTargets, renderCollections } from "./collections-report.js";
import { runModels, type ModelsResult } from "./models.js";
import { OptionsError, parseOptions, type BenchOptions } from "./options.js";
import { PLOTS, renderReport } from "./report.js";
import { ServerProcess } from "./server-process.js";
import { runServer, type ServerResult } from "./serving.js";
import { stamp } from "./stamp.js";
import { checkTargets } from "./targets.js";
import { ensureShapes, loadWorkload, SetupError, venvPython } from "./workload.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const rel = (p: string) => path.relative(ROOT, p) || ".";

const started = performance.now();
function log(s: string): void {
  process.stdout.write(`bench ${((performance.now() - started) / 1000).toFixed(0).padStart(4)}s  ${s}\n`);
}

/** The teacher bundle to measure, or why there is none (and how to make it). Exports it only when asked to. */
function resolveTeacher(opts: BenchOptions): { dir: string | null; note: string | null } {
  if (opts.teacher === null)
    return {
      dir: null,
      note: opts.quick
        ? "--quick measures no teacher unless --teacher DIR is passed"
        : "no teacher bundle was given (--teacher '')",
    };
  if (existsSync(path.join(opts.teacher, "manifest.json"))) return { dir: opts.teacher, note: null };
  if (opts.exportTeacher) {
    log(`exporting the teacher bundle from ${rel(opts.exportTeacher)} to ${rel(opts.teacher)}`);
    execFileSync(venvPython(ROOT), ["-m", "dlip", "export", opts.exportTeacher, "--out", opts.teacher, "--int8"], {
      cwd: path.join(ROOT, "training"),
      stdio: ["ignore", "inherit", "inherit"],
    });
    return { dir: opts.teacher, note: null };
  }
  const note =
    `no teacher bundle at ${rel(opts.teacher)}, so every teacher row is skipped. The teacher (~80 MB) is not shipped ` +
    `in models/; make it with 'cd training && .venv/bin/python -m dlip export ../runs/teacher --out ` +
    `../runs/bundles/teacher --int8', or pass --teacher DIR, or --export-teacher RUN to have the benchmark export it`;
  return { dir: null, note };
}

function readJson<T>(file: string): T | null {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : null;
}

/** bench/plot.py (matplotlib, in training/.venv) draws every plot its JSON inputs allow; returns the files. */
function drawPlots(out: string): string[] {
  const stdout = execFileSync(venvPython(ROOT), [path.join(ROOT, "bench/plot.py"), out], {
    encoding: "utf8",
    env: { ...process.env, MPLBACKEND: "Agg" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const drawn = new Set(stdout.split("\n").map((s) => s.trim()));
  return Object.keys(PLOTS).filter((p) => drawn.has(p)); // in the report's order (bench/render.ts uses it too)
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let opts: BenchOptions;
  try {
    opts = parseOptions(argv, ROOT);
    if (opts.quick && !argv.some((a) => a === "--out" || a.startsWith("--out=")))
      opts.out = path.join(os.tmpdir(), "dlip-bench-quick"); // never over the committed run in bench/results
  } catch (err) {
    if (err instanceof OptionsError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const small = opts.parts.some((p) => p !== "full"); // the parts that measure the default student (and teacher)
  if (small && !existsSync(path.join(opts.student, "manifest.json"))) {
    process.stderr.write(
      `error: no student bundle at ${rel(opts.student)} (the default model). Export one with 'cd training && ` +
        `.venv/bin/python -m dlip export RUN --out ../models/dlip-student', or pass --student DIR ` +
        `(--quick uses test/fixtures/micro)\n`,
    );
    return 2;
  }
  mkdirSync(opts.out, { recursive: true });
  const teacher = small ? resolveTeacher(opts) : { dir: null, note: null };
  if (teacher.note) log(`NOTE: ${teacher.note}`);
  ensureShapes(ROOT, opts.images, Math.max(opts.imageCount, opts.fullImageCount), log);
  const w = loadWorkload(opts.images, opts.imageCount);
  if (small)
    log(
      `student ${rel(opts.student)}, teacher ${teacher.dir ? rel(teacher.dir) : "none"}, ${w.images.length} images, results in ${opts.out}`,
    );

  if (opts.parts.includes("models")) {
    const r = await runModels(opts, w, teacher, stamp(ROOT, argv), log);
    writeFileSync(path.join(opts.out, "models.json"), JSON.stringify(r, null, 2));
  }
  if (opts.parts.includes("server")) {
    const r = await runServer(opts, ROOT, w, teacher, stamp(ROOT, argv), log);
    writeFileSync(path.join(opts.out, "server.json"), JSON.stringify(r, null, 2));
  }
  if (opts.parts.includes("full")) {
    log(`full: teacher and student under ${rel(opts.fullDir)}, results in ${opts.out}`);
    const r = await runFull(opts, ROOT, loadWorkload(opts.images, opts.fullImageCount), stamp(ROOT, argv), log);
    writeFileSync(path.join(opts.out, "full.json"), JSON.stringify(r, null, 2));
  }
  if (opts.parts.includes("collections")) {
    const settings = opts.quick ? COLLECTIONS_QUICK : COLLECTIONS_FULL;
    const r = await runCollections(opts, ROOT, settings, stamp(ROOT, argv), log);
    writeFileSync(path.join(opts.out, "collections.json"), JSON.stringify(r, null, 2));
  }
  const collections = readJson<CollectionsResult>(path.join(opts.out, "collections.json"));
  if (collections) {
    writeFileSync(path.join(opts.out, "collections.md"), renderCollections(collections));
    for (const t of collectionsTargets(collections))
      log(`${t.met === null ? "n/a " : t.met ? "met " : "MISS"}  ${t.target}: ${t.measured} (goal ${t.goal})`);
  }
  const models = readJson<ModelsResult>(path.join(opts.out, "models.json"));
  const server = readJson<ServerResult>(path.join(opts.out, "server.json"));
  const full = readJson<FullResult>(path.join(opts.out, "full.json"));
  const gpu = readJson<GpuResult>(path.join(opts.out, "gpu.json"));
  const plots = opts.plots ? drawPlots(opts.out) : [];
  writeFileSync(path.join(opts.out, "results.md"), renderReport(models, server, plots, full, gpu));
  for (const t of checkTargets(models, server, full))
    log(`${t.met === null ? "n/a " : t.met ? "met " : "MISS"}  ${t.target}: ${t.measured} (goal ${t.goal})`);
  log(
    `wrote ${["models.json", "server.json", "full.json", "results.md", "collections.json", "collections.md", ...plots].filter((f) => existsSync(path.join(opts.out, f))).join(", ")} in ${opts.out}`,
  );
  return 0;
}

// a failed or interrupted run leaves no server behind
process.once("SIGINT", () => {
  ServerProcess.killAll();
  process.exit(130);
});
main().then(
  (code) => process.exit(code),
  (err) => {
    ServerProcess.killAll();
    process.stderr.write(
      `error: ${err instanceof SetupError ? err.message : ((err as Error)?.stack ?? String(err))}\n`,
    );
    process.exit(err instanceof SetupError ? 2 : 1);
  },
);
