// Messages between the main thread (pool.ts) and the inference workers (worker.ts). Tensors travel as typed arrays,
// except the rows a worker keeps (image tokens, question states read by a later graph in the same worker): those
// stay in the worker's store and travel as handles (numbers the main thread allocates, unique across restarts).
import type { GenResult, GenRow } from "../decode/search.js";

export interface WireTensor {
  type: "float32" | "int64";
  dims: number[];
  data: Float32Array | BigInt64Array;
}

/**
 * A float32 feed (B, M, D) stacked by the worker from rows: each row inline or stored (a handle), or several parts
 * joined along M (question states then image tokens); rows shorter than M are right-padded with zeros.
 */
export interface RowsFeed {
  type: "rows";
  dims: number[]; // [B, M, D]
  rows: Part[][];
}
export type Part = Float32Array | number; // inline values, or a stored row's handle

/** Keep rows of output `output` in the worker: row i under handles[i] (null: sent back), read `uses` times. */
export interface KeepSpec {
  output: string;
  handles: (number | null)[];
  uses: number[];
  lengths?: number[]; // keep only the first lengths[i] positions of row i (dim 1)
}

export interface GraphFiles {
  file: string; // absolute path of the .onnx file, from the manifest (never from a request)
  inputs: { name: string; dtype: string }[];
  outputs: { name: string; dtype: string }[];
}

export interface WorkerModel {
  name: string;
  graphs: Record<string, GraphFiles>;
  // what warm-up needs to build inputs
  imageSize: number;
  special: { cls: number; sep: number; enc: number; dec: number }; // enc: itm/vqa_encoder's first token ([ENC] or [CLS])
  decoder: { layers: number; heads: number; headDim: number; vocab: number };
}

export interface InitMessage {
  type: "init";
  models: WorkerModel[];
  device: "auto" | "cpu" | "cuda";
  threads: number;
  warmup: boolean;
  storeTtlMs: number; // a kept row no graph read within this long is dropped (its request is gone)
  // the graph run in progress, written by the worker, read by the pool's watchdog (RunStamp)
  stamp: SharedArrayBuffer;
  faults: Fault[] | null; // null: fault injection is off (FAULT_INJECTION=false); else faults armed from the start
}

/**
 * The graph run a worker has in progress, over a SharedArrayBuffer (no message needed: a hung worker cannot send
 * one): `since` the time it started (ms, performance.timeOrigin + performance.now(), 0n when no run is in
 * progress), and which model, graph and batch size (indices into the init message's models and GRAPH_NAMES).
 */
export const STAMP_BYTES = 24;
export const GRAPH_NAMES = ["vision", "text", "itm", "vqa_encoder", "cross_kv", "decoder"] as const;
export function runStamp(buf: SharedArrayBuffer): { since: BigInt64Array; what: Int32Array } {
  return { since: new BigInt64Array(buf, 0, 1), what: new Int32Array(buf, 8, 3) }; // what: model, graph, batch
}

/**
 * Tests only (FAULT_INJECTION=true): at the (after+1)-th job run of `graph` (a decoder run is one decode step), the
 * worker throws outside the run (an uncaught exception: it exits) or hangs (a synchronous endless loop, as a run
 * stuck in native code), after telling the pool (FaultReport). Graph "init": the worker fails to start.
 */
export interface Fault {
  graph: (typeof GRAPH_NAMES)[number] | "init";
  after?: number;
  action: "throw" | "hang";
}

export type InitReply =
  { type: "ready"; provider: "cpu" | "cuda"; warning: string | null } | { type: "init_error"; message: string };

/** Tests only: an armed fault fires now, in a run of `graph` over `batch` rows. */
export interface FaultReport {
  type: "fault";
  graph: string;
  batch: number;
  action: Fault["action"];
}

export type JobMessage =
  | {
      type: "run";
      id: number;
      model: string;
      graph: string;
      feeds: Record<string, WireTensor | RowsFeed>;
      keep?: KeepSpec; // its kept rows are left out of the reply's output (dims[0] counts the others)
    }
  | {
      type: "generate";
      id: number;
      model: string;
      encoders: Part[][]; // each row's encoder states (M_r * D), inline or stored
      encoderLengths: number[]; // each row's real M
      rows: GenRow[];
      bos: number;
      eos: number;
      stop: Int32Array; // over a SharedArrayBuffer, one flag per row: the main thread sets 1 to stop that row
      continuous: boolean; // rows may join (`join` messages) and each finished row is reported at once (RowReport)
    }
  | {
      // rows joining running generate job `id` at its next step (continuous batching); numbered from `base`
      type: "join";
      id: number;
      base: number;
      encoders: Part[][];
      encoderLengths: number[];
      rows: GenRow[];
      stop: Int32Array;
    }
  | { type: "release"; handles: number[] } // drop kept rows (their request ended); unknown handles are ignored
  | { type: "stored"; id: number } // how many rows the worker keeps (tests, leak checks)
  // tests only: keeps the worker busy, as a long run() does, for `ms` or until the main thread sets release[0] to 1
  | { type: "block"; id: number; ms: number; release?: Int32Array }
  | { type: "inject"; fault: Fault }; // tests only (FAULT_INJECTION=true): arms a fault

/** Sent while a generate job runs, before its reply: a `stream` row chose a token. */
export interface TokenReport {
  type: "token";
  id: number;
  row: number;
  token: number;
}

/** Sent while a continuous generate job runs: row `row` finished (it leaves the batch at once). */
export interface RowReport {
  type: "row";
  id: number;
  row: number;
  result: GenResult;
}

export type JobReply =
  | { type: "result"; id: number; outputs: Record<string, WireTensor> }
  // joined: the `base` of each join message the job took in (the others arrived after it ended: the main thread
  // queues those rows again)
  | { type: "generated"; id: number; results: GenResult[]; steps: number; joined: number[] }
  | { type: "done"; id: number; stored?: number }
  | { type: "error"; id: number; message: string };
