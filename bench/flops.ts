// FLOPs of one run of a graph, counted from onnxruntime's own profile: the graph runs once unoptimised (so every
// MatMul, Gemm and Conv is its own node) with profiling on, and each of those nodes costs 2 * multiply-adds, from
// the shapes the profiler recorded. The convention of dlip/eval/flops.py (FlopCounterMode): only matmul-like ops
// count; softmax, LayerNorm, GELU and bias adds cost nothing.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number; // microseconds
  args?: {
    op_name?: string;
    input_type_shape?: Record<string, number[]>[];
    output_type_shape?: Record<string, number[]>[];
    parameter_size?: string; // bytes of the node's initializers (weights)
  };
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
const shapes = (xs: Record<string, number[]>[] | undefined) => (xs ?? []).map((x) => Object.values(x)[0] ?? []);

/** Multiply-adds x 2 of one profiled node; 0 for ops that are not matmul-like. */
export function nodeFlops(e: ProfileEvent): number {
  const op = e.args?.op_name ?? "";
  const ins = shapes(e.args?.input_type_shape);
  const out = shapes(e.args?.output_type_shape)[0];
  if (!out || ins.length === 0) return 0;
  if (op === "MatMul" || op === "FusedMatMul" || op === "Gemm") {
    // (..., m, k) @ (k, n) -> (..., m, n): the reduced length k is the first input's last axis (Gemm: unless
    // transposed, which the exporter does not emit for activations)
    const k = ins[0][ins[0].length - 1];
    return 2 * prod(out) * k;
  }
  if (op === "Conv") {
    // out (N, Cout, ...spatial); each output value sums Cin/group * prod(kernel) products
    const w = ins[1];
    if (w && w.length >= 3) return 2 * prod(out) * prod(w.slice(1));
    // weights not listed: parameter bytes / 4 = Cout * per-output + Cout (bias)
    const cout = out[1];
    const params = Number(e.args?.parameter_size ?? 0) / 4;
    return cout > 0 && params > 0 ? 2 * prod(out) * Math.max(1, Math.round((params - cout) / cout)) : 0;
  }
  return 0;
}

/** GFLOPs of one run of `file` on `feeds`. */
export async function graphGflops(file: string, feeds: Record<string, ort.Tensor>): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-bench-prof-"));
  try {
    const session = await ort.InferenceSession.create(file, {
      executionProviders: ["cpu"],
      intraOpNumThreads: 1,
      graphOptimizationLevel: "disabled",
      enableProfiling: true,
      profileFilePrefix: path.join(dir, "profile"),
      logSeverityLevel: 3,
    });
    await session.run(feeds);
    session.endProfiling();
    await session.release();
    const json = readdirSync(dir).find((f) => f.endsWith(".json"));
    if (!json) throw new Error(`onnxruntime wrote no profile for ${file}`);
    const events = JSON.parse(readFileSync(path.join(dir, json), "utf8")) as ProfileEvent[];
    const flops = events
      .filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time"))
      .reduce((n, e) => n + nodeFlops(e), 0);
    return flops / 1e9;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
