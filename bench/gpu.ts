// `npm run bench:gpu`: the full-size bundles (bench/full.ts, data/bench-full) on onnxruntime-node's CUDA execution
// provider, fp32 and (where the bundles carry them) fp16 graphs: the vision graph and encode + 20-token caption per
// image at a few batch sizes, teacher and student in turn, the GPU memory this process holds, the card named. Writes
// gpu.json into the results folder and rebuilds results.md. A short script on purpose: GPU time is scarce.
//
// It measures nothing on the CPU in the GPU's place: without an NVIDIA GPU (nvidia-smi) or without onnxruntime-node's
// CUDA provider library it writes gpu.json saying so (the report says no GPU was available) and exits 2.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { readManifest } from "../src/bundle/manifest.js";
import { ensureFullBundles, ROLES, type Role } from "./full.js";
import { endToEnd } from "./models.js";
import { hasFp16, RawModel, take, type ExecutionProvider, type GpuVariant } from "./raw.js";
import { PLOTS, renderReport } from "./report.js";
import { stamp, type Stamp } from "./stamp.js";
import { alternate, round } from "./timing.js";
import { ensureShapes, loadWorkload, type Workload } from "./workload.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface GpuPoint {
  batch: number;
  teacher_ms_per_image: number;
  student_ms_per_image: number;
  teacher_images_s: number;
  student_images_s: number;
  ratio: number; // teacher / student
}

export interface GpuVariantResult {
  load_s: Record<Role, number>;
  memory_mib: { loaded: number | null; after: number | null }; // this process on the GPU, both models loaded
  vision: GpuPoint[];
  caption: GpuPoint[]; // encode + 20-token greedy caption ([SEP] forbidden until then)
}

export interface GpuResult {
  part: "gpu";
  stamp: Stamp;
  available: boolean;
  reason: string | null; // why nothing was measured
  card: { name: string; memory_total: string; driver: string } | null;
  onnxruntime_provider: "cuda";
  variants: Partial<Record<GpuVariant, GpuVariantResult>>;
  skipped: string[]; // variants not measured, and why
}

export class NoGpu extends Error {}

/** The first NVIDIA GPU as nvidia-smi names it; NoGpu where there is none. */
export function findGpu(): NonNullable<GpuResult["card"]> {
  const r = spawnSync("nvidia-smi", ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], {
    encoding: "utf8",
  });
  if (r.error || r.status !== 0 || !String(r.stdout).trim()) {
    const code = (r.error as NodeJS.ErrnoException | undefined)?.code;
    const why = r.error
      ? code === "ENOENT"
        ? "nvidia-smi is not installed (no NVIDIA driver)"
        : `nvidia-smi could not run (${code ?? r.error.message})`
      : `nvidia-smi exited ${r.status}${String(r.stderr ?? "").trim() ? `: ${String(r.stderr).trim()}` : " and named no GPU"}`;
    throw new NoGpu(`no NVIDIA GPU: ${why}`);
  }
  const [name, memory_total, driver] = String(r.stdout).trim().split("\n")[0].split(", ");
  return { name, memory_total, driver };
}

/** onnxruntime-node's CUDA provider library beside its binding; NoGpu where the install skipped it. */
export function cudaProviderLibrary(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve("onnxruntime-node/package.json"));
  const lib = path.join(pkg, "bin/napi-v6", process.platform, process.arch, "libonnxruntime_providers_cuda.so");
  if (!existsSync(lib))
    throw new NoGpu(
      `onnxruntime-node has no CUDA provider library (${path.relative(ROOT, lib)}): this repository's .npmrc skips ` +
        `it (onnxruntime-node-install=skip); install it with 'npm rebuild onnxruntime-node ` +
        `--onnxruntime-node-install=cuda12' (downloads from NuGet; the Dockerfile's build does it), CUDA 12 and cuDNN 9 ` +
        `on the machine`,
    );
  return lib;
}

/** MiB of GPU memory this process holds (nvidia-smi's compute apps), or null where it cannot tell. */
function gpuMemoryMib(): number | null {
  const r = spawnSync("nvidia-smi", ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], {
    encoding: "utf8",
  });
  if (r.status !== 0) return null;
  const mine = r.stdout
    .trim()
    .split("\n")
    .map((l) => l.split(", ").map(Number))
    .filter(([pid]) => pid === process.pid);
  return mine.length ? mine.reduce((n, [, mib]) => n + mib, 0) : null;
}

/** One variant's numbers: both models loaded on `ep` (the script: cuda; the tests: cpu, on tiny bundles). */
export async function measureVariant(
  dirs: Record<Role, string>,
  v: GpuVariant,
  batches: number[],
  runs: number,
  w: Workload,
  log: (s: string) => void,
  ep: ExecutionProvider = "cuda",
): Promise<GpuVariantResult> {
  const m = {} as Record<Role, RawModel>;
  const load = {} as Record<Role, number>;
  try {
    for (const r of ROLES) {
      const t0 = performance.now();
      m[r] = await RawModel.load(dirs[r], v, 1, undefined, ep);
      load[r] = round((performance.now() - t0) / 1000);
    }
    const loaded = gpuMemoryMib();
    const inputs = { teacher: await m.teacher.prepare(w), student: await m.student.prepare(w) };
    const vision: GpuPoint[] = [];
    const caption: GpuPoint[] = [];
    for (const B of batches) {
      const pix = ROLES.map((r) => take(inputs[r].pixels, B));
      const [tv, sv] = await alternate(
        ROLES.map((r, i) => () => m[r].encodeImages(pix[i])),
        { minRuns: runs, minSeconds: 1 },
      );
      vision.push(point(B, tv.median_ms, sv.median_ms));
      const e2e = ROLES.map((r) => endToEnd(m[r], inputs[r], B).caption.fn);
      const [tc, sc] = await alternate(e2e, { minRuns: runs, minSeconds: 1 });
      caption.push(point(B, tc.median_ms, sc.median_ms));
      log(
        `gpu ${v} b${B}: vision ${round(tv.median_ms / B)} / ${round(sv.median_ms / B)} ms per image, caption ` +
          `${round(tc.median_ms / B)} / ${round(sc.median_ms / B)} ms per image (teacher / student)`,
      );
    }
    return { load_s: load, memory_mib: { loaded, after: gpuMemoryMib() }, vision, caption };
  } finally {
    for (const r of ROLES) await m[r]?.release();
  }
}

function point(B: number, t: number, s: number): GpuPoint {
  return {
    batch: B,
    teacher_ms_per_image: round(t / B),
    student_ms_per_image: round(s / B),
    teacher_images_s: round((1000 * B) / t),
    student_images_s: round((1000 * B) / s),
    ratio: round(t / s),
  };
}

function rebuildReport(out: string): void {
  const read = (f: string) =>
    existsSync(path.join(out, f)) ? JSON.parse(readFileSync(path.join(out, f), "utf8")) : null;
  const plots = Object.keys(PLOTS).filter((p) => existsSync(path.join(out, p))); // as bench/render.ts
  writeFileSync(
    path.join(out, "results.md"),
    renderReport(read("models.json"), read("server.json"), plots, read("full.json"), read("gpu.json")),
  );
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      "full-dir": { type: "string", default: "data/bench-full" },
      out: { type: "string", default: "bench/results" },
      "batch-sizes": { type: "string", default: "1,8,32" },
      runs: { type: "string", default: "5" },
    },
  });
  const out = path.resolve(ROOT, values.out!);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const result: GpuResult = {
    part: "gpu",
    stamp: stamp(ROOT, argv),
    available: false,
    reason: null,
    card: null,
    onnxruntime_provider: "cuda",
    variants: {},
    skipped: [],
  };
  mkdirSync(out, { recursive: true });
  try {
    result.card = findGpu();
    cudaProviderLibrary();
  } catch (err) {
    if (!(err instanceof NoGpu)) throw err;
    result.reason = err.message;
    writeFileSync(path.join(out, "gpu.json"), JSON.stringify(result, null, 2));
    rebuildReport(out);
    process.stderr.write(`error: ${err.message}. Nothing measured; wrote ${path.join(out, "gpu.json")} saying so.\n`);
    return 2;
  }
  result.available = true;
  log(`gpu: ${result.card.name} (${result.card.memory_total}, driver ${result.card.driver})`);
  ensureShapes(ROOT, path.join(ROOT, "data/bench-shapes"), 8, log);
  const dirs = ensureFullBundles(ROOT, path.resolve(ROOT, values["full-dir"]!), log);
  const batches = values["batch-sizes"]!.split(",").map(Number);
  for (const v of ["fp32", "fp16"] as const) {
    if (v === "fp16" && !ROLES.every((r) => hasFp16(readManifest(dirs[r])))) {
      result.skipped.push(
        "fp16: the bundles have no fp16 graphs (python bench/full_bundles.py DIR --fp16 --overwrite)",
      );
      continue;
    }
    const w = loadWorkload(path.join(ROOT, "data/bench-shapes"), 8);
    result.variants[v] = await measureVariant(dirs, v, batches, Number(values.runs), w, log);
  }
  writeFileSync(path.join(out, "gpu.json"), JSON.stringify(result, null, 2));
  rebuildReport(out);
  log(`wrote gpu.json and results.md in ${out}`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
