// The decoder graphs of format 3 as a DecoderStepper: `cross_kv` runs once over the encoder states of rows as they
// arrive (image tokens, question states), then each `decoder` step feeds the chosen tokens, each slot's own
// position_ids, the mask over its padded past, and the self-attention and cross-attention caches. Lives in a worker
// thread (run() blocks its thread).
//
// The cache is one padded tensor per key/value, (R, H, P, Dh): every slot's real past is the last pos[r] columns
// (rows that join a running batch are left-padded, mask 0), so P can shrink to the longest real past whenever rows
// are gathered. Rows are gathered only when the slots change: beams reorder, rows leave or join; while every slot
// continues its own row in order (greedy rows all alive), the graph's `present_*` become the next `past_*` as they
// are, and the cross-attention tensors are not touched.
import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-node";
import { cacheNames } from "../bundle/contract.js";
import type { DecoderStepper } from "../decode/search.js";

type TensorCtor = typeof OrtTensor;
/** What the stepper needs of a session: its run() (the worker passes sessions whose runs the watchdog sees). */
export type GraphRunner = Pick<InferenceSession, "run">;

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

/** One encoder row: its cross-attention keys/values (2K arrays (H, M, Dh), M its own length) once cross_kv ran. */
interface EncoderRow {
  length: number; // M_r real encoder positions
  cross: Float32Array[] | null; // null until cross_kv has run for it
}

interface PendingEncoders {
  hidden: Float32Array; // (B, M, D), rows right-padded to M
  lengths: number[];
  ids: number[];
}

export class OnnxStepper implements DecoderStepper {
  readonly vocab: number;
  steps = 0;
  /** Cache rows copied by gathers, summed over steps (0 while slots keep their order): for tests and benchmarks. */
  gatheredRows = 0;
  private readonly names: { past: string[]; present: string[]; cross: string[] };
  private readonly encoders: EncoderRow[] = [];
  private pending: PendingEncoders[] = [];
  // the live slots, in the order of the previous step
  private past: Float32Array[] = []; // 2K tensors (R, H, P, Dh)
  private P = 0;
  private pastMask = new BigInt64Array(0); // (R, P): 1 over each slot's real past
  private pos: number[] = []; // real cached positions per slot (its next position id)
  private enc: number[] = []; // encoder row per slot
  // the cross-attention feeds for `enc` as it is
  private cross: Float32Array[] = []; // 2K tensors (R, H, M, Dh)
  private crossM = 0;
  private encMask = new BigInt64Array(0); // (R, M)

  constructor(
    private readonly decoder: GraphRunner,
    private readonly crossKv: GraphRunner,
    private readonly Tensor: TensorCtor,
    private readonly shape: DecoderShape,
    private readonly D: number,
  ) {
    this.vocab = shape.vocab;
    this.names = cacheNames(shape.layers);
  }

  /**
   * Encoder states of new rows, (B, M, D) with each row's real length (rows right-padded to M); returns their encoder
   * row ids (what `step`'s `from` names as `-1 - id`). cross_kv runs for them, once, before the next step.
   */
  addEncoders(hidden: Float32Array, lengths: readonly number[]): number[] {
    const ids = lengths.map((length) => this.encoders.push({ length, cross: null }) - 1);
    this.pending.push({ hidden, lengths: [...lengths], ids });
    return ids;
  }

  /** Forgets encoder rows no slot reads any more (their cross K/V), so a long-running batch does not grow. */
  release(ids: readonly number[]): void {
    for (const id of ids) this.encoders[id].cross = null;
  }

  private async runCrossKv(): Promise<void> {
    const { heads: H, headDim: Dh } = this.shape;
    for (const p of this.pending) {
      const B = p.ids.length;
      const M = p.hidden.length / (B * this.D);
      const out = await this.crossKv.run({
        encoder_hidden: new this.Tensor("float32", p.hidden, [B, M, this.D]),
      });
      p.ids.forEach((id, b) => {
        const Mr = p.lengths[b];
        this.encoders[id].cross = this.names.cross.map((name) => {
          const all = out[name].data as Float32Array; // (B, H, M, Dh)
          if (Mr === M) return all.slice(b * H * M * Dh, (b + 1) * H * M * Dh);
          const mine = new Float32Array(H * Mr * Dh);
          for (let h = 0; h < H; h++) {
            const at = (b * H + h) * M * Dh;
            mine.set(all.subarray(at, at + Mr * Dh), h * Mr * Dh);
          }
          return mine;
        });
      });
    }
    this.pending = [];
  }

  /** The cross-attention feeds for the slots' encoder rows `enc`, padded to their longest M. */
  private buildCross(enc: number[]): void {
    const { heads: H, headDim: Dh } = this.shape;
    const R = enc.length;
    const M = Math.max(...enc.map((e) => this.encoders[e].length));
    this.cross = this.names.cross.map((_, t) => {
      const out = new Float32Array(R * H * M * Dh);
      enc.forEach((e, r) => {
        const { length: Mr, cross } = this.encoders[e];
        const src = cross![t];
        if (Mr === M) out.set(src, r * H * M * Dh);
        else for (let h = 0; h < H; h++) out.set(src.subarray(h * Mr * Dh, (h + 1) * Mr * Dh), (r * H + h) * M * Dh);
      });
      return out;
    });
    this.encMask = new BigInt64Array(R * M);
    enc.forEach((e, r) => this.encMask.fill(1n, r * M, r * M + this.encoders[e].length));
    this.crossM = M;
  }

  /**
   * `from[i] >= 0`: slot i continues slot from[i] of the previous step; `from[i] < 0`: slot i is a new row reading
   * encoder row `-1 - from[i]` (empty past).
   */
  async step(tokens: readonly number[], from: readonly number[]): Promise<Float32Array> {
    const R = tokens.length;
    if (from.length !== R) throw new Error(`decoder: ${R} tokens but ${from.length} sources`);
    const { heads: H, headDim: Dh, vocab } = this.shape;
    if (this.pending.length) await this.runCrossKv();
    const same = R === this.pos.length && from.every((f, i) => f === i);
    if (!same) this.gather(from);
    const P = this.P;
    const T = this.Tensor;
    const mask = new BigInt64Array(R * (P + 1)); // (R, P+1): the real past, then the new token
    for (let r = 0; r < R; r++) {
      mask.set(this.pastMask.subarray(r * P, (r + 1) * P), r * (P + 1));
      mask[r * (P + 1) + P] = 1n;
    }
    const feeds: Record<string, OrtTensor> = {
      input_ids: new T(
        "int64",
        BigInt64Array.from(tokens, (x) => BigInt(x)),
        [R, 1],
      ),
      position_ids: new T(
        "int64",
        BigInt64Array.from(this.pos, (x) => BigInt(x)),
        [R, 1],
      ),
      attention_mask: new T("int64", mask, [R, P + 1]),
      encoder_mask: new T("int64", this.encMask, [R, this.crossM]),
    };
    this.names.past.forEach((name, i) => {
      feeds[name] = new T("float32", this.past[i], [R, H, P, Dh]);
    });
    this.names.cross.forEach((name, i) => {
      feeds[name] = new T("float32", this.cross[i], [R, H, this.crossM, Dh]);
    });
    const out = await this.decoder.run(feeds);
    this.past = this.names.present.map((name) => out[name].data as Float32Array); // the next step's past, in order
    this.P = P + 1;
    this.pastMask = mask;
    this.pos = this.pos.map((p) => p + 1);
    this.steps++;
    const logits = out.logits.data as Float32Array; // (R, 1, V)
    if (logits.length !== R * vocab)
      throw new Error(`decoder: logits have ${logits.length} values, expected ${R} x ${vocab}`);
    return logits;
  }

  /** The slots `from` names: cache rows gathered (new rows left-padded), P cut to the longest real past. */
  private gather(from: readonly number[]): void {
    const { heads: H, headDim: Dh } = this.shape;
    const R = from.length;
    const pos = from.map((f) => (f >= 0 ? this.pos[f] : 0));
    const enc = from.map((f) => (f >= 0 ? this.enc[f] : -1 - f));
    for (const e of enc)
      if (!this.encoders[e]?.cross) throw new Error(`decoder: encoder row ${e} has no cross-attention keys/values`);
    const P0 = this.P;
    const P = Math.max(0, ...pos);
    const cut = P0 - P; // leading columns no slot needs
    this.past = this.past.map((t) => {
      const out = new Float32Array(R * H * P * Dh);
      from.forEach((f, r) => {
        if (f < 0) return; // zeros, masked
        for (let h = 0; h < H; h++) {
          const src = (f * H + h) * P0 * Dh + cut * Dh;
          out.set(t.subarray(src, src + P * Dh), (r * H + h) * P * Dh);
        }
      });
      return out;
    });
    if (this.past.length === 0) this.past = this.names.past.map(() => new Float32Array(0));
    const mask = new BigInt64Array(R * P);
    from.forEach((f, r) => {
      if (f >= 0) mask.set(this.pastMask.subarray(f * P0 + cut, (f + 1) * P0), r * P);
    });
    this.gatheredRows += from.filter((f) => f >= 0).length;
    this.pastMask = mask;
    this.P = P;
    this.pos = pos;
    const encChanged = enc.length !== this.enc.length || enc.some((e, i) => e !== this.enc[i]);
    this.enc = enc;
    if (encChanged) this.buildCross(enc);
  }

  /** Encoder rows some live slot reads. */
  liveEncoders(): Set<number> {
    return new Set(this.enc);
  }
}
