// The decoder graph as a DecoderStepper: keeps the key/value cache between steps and gathers its rows as beams
// reorder and finished rows drop out. Lives in a worker thread (run() blocks its thread).
import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-node";
import { cacheNames } from "../bundle/contract.js";
import type { DecoderStepper } from "../decode/search.js";

type TensorCtor = typeof OrtTensor;

export interface DecoderShape {
  layers: number; // K
  heads: number; // H
  headDim: number; // Dh
  vocab: number; // V
}

/** Rows `index` of a row-major tensor whose rows hold `rowSize` values. */
export function gatherRows<T extends Float32Array | BigInt64Array>(
  data: T,
  rowSize: number,
  index: readonly number[],
): T {
  const out = new (data.constructor as new (n: number) => T)(index.length * rowSize);
  index.forEach((r, i) => out.set(data.subarray(r * rowSize, (r + 1) * rowSize) as never, i * rowSize));
  return out;
}

export class OnnxStepper implements DecoderStepper {
  readonly vocab: number;
  steps = 0;
  private past: Float32Array[] = []; // 2K tensors (R, H, P, Dh): key_0, value_0, key_1, ...
  private pastLen = 0; // P
  private hidden: Float32Array; // (R, M, D), gathered along with the cache
  private mask: BigInt64Array; // (R, M)
  private readonly cache: { past: string[]; present: string[] }; // the contract's names, in the order of `past`

  constructor(
    private readonly session: InferenceSession,
    private readonly Tensor: TensorCtor,
    private readonly shape: DecoderShape,
    encoderHidden: Float32Array,
    encoderMask: BigInt64Array,
    private readonly M: number,
    private readonly D: number,
  ) {
    this.vocab = shape.vocab;
    this.hidden = encoderHidden;
    this.mask = encoderMask;
    this.cache = cacheNames(shape.layers);
  }

  async step(tokens: readonly number[], from: readonly number[]): Promise<Float32Array> {
    const R = tokens.length;
    const { heads, headDim, vocab } = this.shape;
    const P = this.pastLen;
    this.hidden = gatherRows(this.hidden, this.M * this.D, from);
    this.mask = gatherRows(this.mask, this.M, from);
    this.past = this.past.map((t) => gatherRows(t, heads * P * headDim, from));
    const T = this.Tensor;
    const feeds: Record<string, OrtTensor> = {
      input_ids: new T(
        "int64",
        BigInt64Array.from(tokens, (x) => BigInt(x)),
        [R, 1],
      ),
      attention_mask: new T("int64", new BigInt64Array(R * (P + 1)).fill(1n), [R, P + 1]), // past and new: all real
      encoder_hidden: new T("float32", this.hidden, [R, this.M, this.D]),
      encoder_mask: new T("int64", this.mask, [R, this.M]),
    };
    this.cache.past.forEach((name, i) => {
      feeds[name] = new T("float32", this.past[i] ?? new Float32Array(0), [R, heads, P, headDim]);
    });
    const out = await this.session.run(feeds);
    this.past = this.cache.present.map((name) => out[name].data as Float32Array); // the next step's past, in order
    this.pastLen = P + 1;
    this.steps++;
    const logits = out.logits.data as Float32Array; // (R, 1, V)
    if (logits.length !== R * vocab)
      throw new Error(`decoder: logits have ${logits.length} values, expected ${R} x ${vocab}`);
    return logits;
  }
}
