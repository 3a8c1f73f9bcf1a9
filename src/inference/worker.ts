// An inference worker thread: owns one onnxruntime session per model and graph, runs graphs and whole decodes
// (the cache stays here between steps). onnxruntime-node's run() blocks this thread, not the HTTP thread.
import { parentPort } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { Decoding, generate, type GenResult, type GenRow } from "../decode/search.js";
import { CUDNN_SONAME, explainCudaFailure, findCudaProvider, loadable, missingLinkedLibraries } from "./cuda.js";
import {
  GRAPH_NAMES,
  runStamp,
  type Fault,
  type FaultReport,
  type InitMessage,
  type InitReply,
  type JobMessage,
  type JobReply,
  type KeepSpec,
  type Part,
  type RowReport,
  type RowsFeed,
  type TokenReport,
  type WireTensor,
  type WorkerModel,
} from "./protocol.js";
import { OnnxStepper, type GraphRunner } from "./stepper.js";

const port = parentPort!;
const sessions = new Map<string, Map<string, ort.InferenceSession>>(); // model -> graph -> session
const models = new Map<string, WorkerModel>();

// Rows kept for a later graph in this worker (image tokens, question states), by handle: each is read `uses` times
// (then dropped), dropped on a `release` message, or after `ttl` ms unread (a request that never came back for it).
const store = new Map<number, { data: Float32Array; uses: number; expires: number }>();
let ttl = 60_000;
setInterval(() => {
  const now = Date.now();
  for (const [h, e] of store) if (e.expires < now) store.delete(h);
}, 1000).unref();

function take(handle: number): Float32Array {
  const e = store.get(handle);
  if (!e) throw new Error(`worker: kept row ${handle} is gone (released or expired)`);
  if (--e.uses <= 0) store.delete(handle);
  return e.data;
}

// The graph run in progress, for the pool's watchdog (protocol.ts, runStamp); job runs only (warm-up is not watched).
let stamp: ReturnType<typeof runStamp> | null = null;
// armed test faults (null: FAULT_INJECTION is off, inject messages are ignored)
let faults: { fault: Fault; left: number }[] | null = null;

/** `s`, whose runs stamp the run in progress (and fire an armed test fault of their graph). */
function watched(model: string, graph: string, s: ort.InferenceSession): GraphRunner {
  const m = [...models.keys()].indexOf(model);
  const g = (GRAPH_NAMES as readonly string[]).indexOf(graph);
  return {
    run: async (feeds: ort.InferenceSession.FeedsType) => {
      const batch = (Object.values(feeds)[0] as ort.Tensor | undefined)?.dims[0] ?? 0;
      stamp?.what.set([m, g, batch]);
      if (stamp) Atomics.store(stamp.since, 0, BigInt(Math.round(performance.timeOrigin + performance.now())));
      try {
        if (fire(graph, batch)) return await new Promise<never>(() => {}); // the thread ends first
        return await s.run(feeds);
      } finally {
        if (stamp) Atomics.store(stamp.since, 0, 0n);
      }
    },
  };
}

/**
 * Tests only: the fault armed for this run of `graph`, if any, fires (the pool hears of it first). A hang never
 * returns; a throw returns true: the exception is thrown outside any job's promise chain (uncaught, it ends the
 * thread), and the run must never complete.
 */
function fire(graph: string, batch: number): boolean {
  const armed = faults?.find((f) => f.fault.graph === graph);
  if (!armed || armed.left-- > 0) return false;
  faults!.splice(faults!.indexOf(armed), 1);
  const { action } = armed.fault;
  port.postMessage({ type: "fault", graph, batch, action } satisfies FaultReport);
  if (action === "hang") for (;;); // as a run stuck in native code: only terminate() ends it
  process.nextTick(() => {
    throw new Error(`injected fault: the worker throws in a ${graph} run of ${batch} rows`);
  });
  return true;
}

/** A row's parts (inline or stored), joined. */
function resolveRow(parts: Part[]): Float32Array {
  const arrays = parts.map((p) => (typeof p === "number" ? take(p) : p));
  if (arrays.length === 1) return arrays[0];
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) (out.set(a, at), (at += a.length));
  return out;
}

/** Rows stacked into (B, M, D), each right-padded to M. */
function stack(rows: Float32Array[], dims: number[]): Float32Array {
  const [B, M, D] = dims;
  const out = new Float32Array(B * M * D);
  rows.forEach((r, i) => out.set(r.subarray(0, M * D), i * M * D));
  return out;
}

/** Keeps the spec's rows of output `t` (B, L, ...) in the store; returns the other rows, stacked. */
function keepRows(t: ort.Tensor, spec: KeepSpec): ort.Tensor {
  const data = t.data as Float32Array;
  const [B, L] = t.dims;
  const rowSize = data.length / B;
  const per = rowSize / L;
  const back: number[] = [];
  spec.handles.forEach((h, i) => {
    if (h === null) return void back.push(i);
    const n = (spec.lengths?.[i] ?? L) * per;
    store.set(h, { data: data.slice(i * rowSize, i * rowSize + n), uses: spec.uses[i], expires: Date.now() + ttl });
  });
  const out = new Float32Array(back.length * rowSize);
  back.forEach((r, i) => out.set(data.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize));
  return new ort.Tensor("float32", out, [back.length, ...t.dims.slice(1)]);
}

async function createSession(file: string, provider: "cpu" | "cuda", threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, {
    executionProviders: [provider],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  });
}

/**
 * Whether CUDA works here: the first model's vision graph is created on the CUDA provider and run once (its patch
 * convolution needs cuDNN). Null when it does; otherwise what is missing, in words (see cuda.ts).
 */
async function cudaProblem(m: WorkerModel, threads: number): Promise<string | null> {
  const providerPath = findCudaProvider();
  if (providerPath === null)
    return explainCudaFailure({ providerPath, missingLibraries: [], cudnnLoadable: null, error: null });
  try {
    const s = await createSession(m.graphs.vision.file, "cuda", threads);
    const S = m.imageSize;
    await s.run({ pixel_values: new ort.Tensor("float32", new Float32Array(3 * S * S), [1, 3, S, S]) });
    await s.release();
    return null;
  } catch (err) {
    const missingLibraries = missingLinkedLibraries(providerPath);
    return explainCudaFailure({
      providerPath,
      missingLibraries,
      // cuDNN is opened at run time, not linked: look for it once the linked libraries are all there
      cudnnLoadable: missingLibraries.length === 0 ? loadable(CUDNN_SONAME) : null,
      error: String((err as Error)?.message ?? err),
    });
  }
}

async function init(msg: InitMessage): Promise<InitReply> {
  ttl = msg.storeTtlMs;
  stamp = runStamp(msg.stamp);
  faults = msg.faults && msg.faults.map((fault) => ({ fault, left: fault.after ?? 0 }));
  if (faults?.some((f) => f.fault.graph === "init")) return { type: "init_error", message: "injected fault at init" };
  let provider: "cpu" | "cuda" = "cpu";
  let warning: string | null = null;
  if (msg.device !== "cpu") {
    const why = await cudaProblem(msg.models[0], msg.threads);
    if (why === null) provider = "cuda";
    else if (msg.device === "cuda")
      return { type: "init_error", message: `DEVICE=cuda but ${why} (DEVICE=auto would fall back to the CPU)` };
    else warning = `DEVICE=auto: ${why}; using the CPU provider`;
  }
  for (const m of msg.models) {
    const graphs = new Map<string, ort.InferenceSession>();
    for (const [graph, spec] of Object.entries(m.graphs)) {
      let s: ort.InferenceSession;
      try {
        s = await createSession(spec.file, provider, msg.threads);
      } catch (err) {
        return {
          type: "init_error",
          message: `${spec.file}: onnxruntime cannot load it (${String((err as Error).message).split("\n")[0]})`,
        };
      }
      const problem = checkNames(s, spec.inputs, spec.outputs);
      if (problem) return { type: "init_error", message: `${spec.file}: ${problem}` };
      graphs.set(graph, s);
    }
    sessions.set(m.name, graphs);
    models.set(m.name, m);
    if (msg.warmup) await warmup(m);
  }
  return { type: "ready", provider, warning };
}

/** The graph's real inputs/outputs must be the manifest's, names and element types. */
function checkNames(
  s: ort.InferenceSession,
  inputs: { name: string; dtype: string }[],
  outputs: { name: string; dtype: string }[],
): string | null {
  const same = (a: readonly string[], b: readonly string[]) =>
    a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
  if (
    !same(
      s.inputNames,
      inputs.map((i) => i.name),
    )
  )
    return `inputs are [${s.inputNames.join(", ")}], the manifest says [${inputs.map((i) => i.name).join(", ")}]`;
  if (
    !same(
      s.outputNames,
      outputs.map((o) => o.name),
    )
  )
    return `outputs are [${s.outputNames.join(", ")}], the manifest says [${outputs.map((o) => o.name).join(", ")}]`;
  const meta = [...(s.inputMetadata ?? []), ...(s.outputMetadata ?? [])] as {
    name: string;
    isTensor: boolean;
    type?: string;
  }[];
  for (const want of [...inputs, ...outputs]) {
    const got = meta.find((x) => x.name === want.name);
    if (got?.isTensor && got.type && got.type !== want.dtype)
      return `'${want.name}' is ${got.type}, the manifest says ${want.dtype}`;
  }
  return null;
}

/**
 * One tiny run of every graph the bundle has (its tasks'): first runs allocate and optimise, so they should not land
 * on a user request.
 */
async function warmup(m: WorkerModel): Promise<void> {
  const g = sessions.get(m.name)!;
  const S = m.imageSize;
  const vis = await g
    .get("vision")!
    .run({ pixel_values: new ort.Tensor("float32", new Float32Array(3 * S * S), [1, 3, S, S]) });
  const embeds = vis.image_embeds;
  const ids = (first: number) =>
    new ort.Tensor("int64", BigInt64Array.from([BigInt(first), BigInt(m.special.sep)]), [1, 2]);
  const mask = () => new ort.Tensor("int64", BigInt64Array.from([1n, 1n]), [1, 2]);
  await g.get("text")?.run({ input_ids: ids(m.special.cls), attention_mask: mask() });
  await g.get("itm")?.run({ image_embeds: embeds, input_ids: ids(m.special.enc), attention_mask: mask() });
  await g.get("vqa_encoder")?.run({ image_embeds: embeds, input_ids: ids(m.special.enc), attention_mask: mask() });
  if (!g.has("decoder")) return;
  const [, N, D] = embeds.dims;
  const stepper = new OnnxStepper(g.get("decoder")!, g.get("cross_kv")!, ort.Tensor, m.decoder, D);
  stepper.addEncoders(embeds.data as Float32Array, [N]);
  await generate(stepper, [{ numBeams: 1, maxTokens: 2, minTokens: 0 }], m.special.dec, m.special.sep);
}

function toOrt(t: WireTensor | RowsFeed): ort.Tensor {
  if (t.type === "rows") return new ort.Tensor("float32", stack(t.rows.map(resolveRow), t.dims), t.dims);
  return new ort.Tensor(t.type, t.data, t.dims);
}

function toWire(t: ort.Tensor): WireTensor {
  if (t.type !== "float32" && t.type !== "int64") throw new Error(`unexpected output type ${t.type}`);
  return { type: t.type, dims: [...t.dims], data: t.data as Float32Array | BigInt64Array };
}

async function handle(msg: JobMessage): Promise<JobReply> {
  if (msg.type === "block") {
    // a synchronous stall, exactly what a long run() does to this thread
    Atomics.wait(msg.release ?? new Int32Array(new SharedArrayBuffer(4)), 0, 0, msg.ms);
    return { type: "done", id: msg.id };
  }
  if (msg.type === "stored") return { type: "done", id: msg.id, stored: store.size };
  if (msg.type === "join" || msg.type === "release" || msg.type === "inject")
    throw new Error(`worker: a ${msg.type} is not a job`);
  const graphs = sessions.get(msg.model);
  if (!graphs) throw new Error(`worker: model ${msg.model} not loaded`);
  if (msg.type === "run") {
    const s = graphs.get(msg.graph);
    if (!s) throw new Error(`worker: graph ${msg.graph} not loaded`);
    const feeds = Object.fromEntries(Object.entries(msg.feeds).map(([k, v]) => [k, toOrt(v)]));
    const out: Record<string, ort.Tensor> = { ...(await watched(msg.model, msg.graph, s).run(feeds)) };
    if (msg.keep) out[msg.keep.output] = keepRows(out[msg.keep.output], msg.keep);
    return {
      type: "result",
      id: msg.id,
      outputs: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, toWire(v)])),
    };
  }
  const m = models.get(msg.model)!;
  const first = msg.encoders.map(resolveRow); // stored rows are taken before anything can fail
  const D = first[0].length / msg.encoderLengths[0];
  const stepper = new OnnxStepper(
    watched(msg.model, "decoder", graphs.get("decoder")!),
    watched(msg.model, "cross_kv", graphs.get("cross_kv")!),
    ort.Tensor,
    m.decoder,
    D,
  );
  const { id } = msg;
  // wire row numbers (the job's rows, then each join's from its base) of the Decoding's rows, and their stop flags
  const wire: number[] = [];
  const stops: [Int32Array, number][] = [];
  const decoding = new Decoding(stepper, msg.bos, msg.eos, 1, {
    onToken: (row, token) => port.postMessage({ type: "token", id, row: wire[row], token } satisfies TokenReport),
    stopped: (row) => Atomics.load(...stops[row]) === 1,
  });
  const add = (encoders: Float32Array[], lengths: number[], rows: GenRow[], stop: Int32Array, base: number) => {
    const M = Math.max(...lengths);
    const enc = stepper.addEncoders(stack(encoders, [encoders.length, M, D]), lengths);
    decoding.add(rows, enc).forEach((row, i) => {
      wire[row] = base + i;
      stops[row] = [stop, i];
    });
  };
  add(first, msg.encoderLengths, msg.rows, msg.stop, 0);
  const joined: number[] = [];
  if (msg.continuous)
    joins.set(id, (j) => {
      let encoders: Float32Array[];
      try {
        encoders = j.encoders.map(resolveRow);
      } catch {
        return; // not taken in: the main thread queues the rows again, and their next decode reports the loss
      }
      add(encoders, j.encoderLengths, j.rows, j.stop, j.base);
      joined.push(j.base);
    });
  const results: GenResult[] = [];
  try {
    while (decoding.live > 0) {
      for (const { row, result } of await decoding.step()) {
        stepper.release([decoding.encoder(row)]);
        if (msg.continuous) port.postMessage({ type: "row", id, row: wire[row], result } satisfies RowReport);
        else results[wire[row]] = result;
      }
    }
  } finally {
    joins.delete(id);
  }
  return { type: "generated", id, results, steps: stepper.steps, joined };
}

/** Running continuous generate jobs: what takes a join message in. */
const joins = new Map<number, (j: Extract<JobMessage, { type: "join" }>) => void>();

port.on("message", (msg: InitMessage | JobMessage) => {
  if (msg.type === "init") {
    init(msg).then(
      (reply) => port.postMessage(reply),
      (err) =>
        port.postMessage({ type: "init_error", message: String((err as Error)?.message ?? err) } satisfies InitReply),
    );
    return;
  }
  if (msg.type === "join") {
    // a job that has ended lists the joins it took in; the main thread queues the rest again (their rows still kept)
    joins.get(msg.id)?.(msg);
    return;
  }
  if (msg.type === "release") {
    for (const h of msg.handles) store.delete(h);
    return;
  }
  if (msg.type === "inject") {
    faults?.push({ fault: msg.fault, left: msg.fault.after ?? 0 });
    return;
  }
  handle(msg).then(
    (reply) => port.postMessage(reply),
    (err) =>
      port.postMessage({
        type: "error",
        id: msg.id,
        message: String((err as Error)?.message ?? err),
      } satisfies JobReply),
  );
});
