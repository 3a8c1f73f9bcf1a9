// Messages between the main thread (pool.ts) and the inference workers (worker.ts). Tensors travel as typed arrays.
import type { GenResult, GenRow } from "../decode/search.js";

export interface WireTensor {
  type: "float32" | "int64";
  dims: number[];
  data: Float32Array | BigInt64Array;
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
  special: { cls: number; sep: number; enc: number; dec: number };
  decoder: { layers: number; heads: number; headDim: number; vocab: number };
}

export interface InitMessage {
  type: "init";
  models: WorkerModel[];
  device: "auto" | "cpu" | "cuda";
  threads: number;
  warmup: boolean;
}

export type InitReply =
  { type: "ready"; provider: "cpu" | "cuda"; warning: string | null } | { type: "init_error"; message: string };

export type JobMessage =
  | { type: "run"; id: number; model: string; graph: string; feeds: Record<string, WireTensor> }
  | {
      type: "generate";
      id: number;
      model: string;
      encoderHidden: WireTensor; // (B, M, D), rows right-padded to the longest
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
      encoderHidden: WireTensor;
      encoderLengths: number[];
      rows: GenRow[];
      stop: Int32Array;
    }
  | { type: "block"; id: number; ms: number }; // tests only: keeps the worker busy, as a long run() does

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
  | { type: "done"; id: number }
  | { type: "error"; id: number; message: string };
