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
    }
  | { type: "block"; id: number; ms: number }; // tests only: keeps the worker busy, as a long run() does

/** Sent while a generate job runs, before its reply: a `stream` row chose a token. */
export interface TokenReport {
  type: "token";
  id: number;
  row: number;
  token: number;
}

export type JobReply =
  | { type: "result"; id: number; outputs: Record<string, WireTensor> }
  | { type: "generated"; id: number; results: GenResult[]; steps: number }
  | { type: "done"; id: number }
  | { type: "error"; id: number; message: string };
