// Greedy and beam search over a one-step decoder with a key/value cache, mirroring
// training/dlip/infer/search.py (greedy_decode, beam_decode). Token ids in, token ids out; text lives in the
// tokenizer, tensors in the stepper (the ONNX decoder graph in a worker, or a fake in tests).
//
// Unlike the Python code, every row carries its own beam count, token budget and minimum length, so requests that
// arrive together decode together; a row stops as soon as it is finished (Python's result for that row alone).
// Beyond the Python code, for the OpenAI-style chat route: a row may start from forced prompt tokens after [DEC]
// (BLIP's conditioned captions), return its `numReturn` best beam hypotheses, report each greedy token as it is
// chosen (`onToken`, streaming) and be stopped between steps (`stopped`, its client left).

/** One decoder step for the live slots (beams). */
export interface DecoderStepper {
  readonly vocab: number;
  /**
   * Feeds `tokens[i]` to slot i and returns next-token logits, (R, V) row-major, R = tokens.length.
   * `from[i] >= 0`: slot i continues slot from[i] of the previous call (its cache: beams reorder, finished rows drop
   * out); `from[i] < 0`: slot i starts a new row, reading encoder row `-1 - from[i]` with an empty cache (every slot
   * of the first call; later, rows joining a running batch).
   */
  step(tokens: readonly number[], from: readonly number[]): Promise<Float32Array>;
}

export interface GenRow {
  numBeams: number; // 1 = greedy
  maxTokens: number; // generated tokens at most (the final [SEP] included, as Python's loop)
  minTokens: number; // [SEP] is forbidden before this many tokens
  prefix?: number[]; // forced tokens after [DEC] (a caption prompt), not part of the result nor of maxTokens
  numReturn?: number; // beam rows: how many finished hypotheses to return (default 1, at most numBeams)
  stream?: boolean; // greedy rows: report each chosen token through `onToken`
}

/** Why a hypothesis ended: [SEP] chosen, the token budget spent, or the row stopped from outside. */
export type FinishReason = "stop" | "length" | "aborted";

export interface Hypothesis {
  ids: number[]; // generated ids, without [DEC], the prefix and the final [SEP]
  logprob: number; // greedy: sum of log p of the emitted tokens ([SEP] included); beam: the hypothesis score
  finish: FinishReason;
}

export interface GenResult extends Hypothesis {
  nbest?: Hypothesis[]; // rows with numReturn > 1: that many best hypotheses, best first (the first is this one)
}

export interface GenHooks {
  onToken?(row: number, token: number): void; // a `stream` greedy row chose `token` (never [SEP])
  stopped?(row: number): boolean; // asked before each step's choice: true ends the row now ("aborted")
}

interface Slot {
  row: number;
  seq: number[];
  score: number; // sum of log p so far (beam)
}

type Finished = [number, number[], FinishReason]; // (normalised score, hyp, why it ended)

interface RowState {
  spec: GenRow;
  encoder: number; // the stepper's encoder row
  step: number; // decoder steps this row has taken
  finished: Finished[]; // beam rows
  done: boolean;
}

function checkRow(r: GenRow): void {
  const n = r.numReturn ?? 1;
  if (!(r.numBeams >= 1 && r.maxTokens >= 1 && r.minTokens >= 0 && n >= 1 && n <= r.numBeams))
    throw new Error(`generate: bad row ${JSON.stringify(r)}`);
}

/**
 * A running decode (iteration-level batching): rows `add`ed between steps join at the next `step`, each with its own
 * step count; a row leaves as soon as it is finished, its result returned by that step. Rows are numbered in the
 * order they were added (the number hooks and results name them).
 */
export class Decoding {
  private readonly rows: RowState[] = [];
  private slots: Slot[] = [];
  private tokens: number[] = [];
  private from: number[] = [];
  private readonly V: number;

  constructor(
    private readonly stepper: DecoderStepper,
    private readonly bos: number,
    private readonly eos: number,
    private readonly lengthPenalty = 1,
    private readonly hooks: GenHooks = {},
  ) {
    this.V = stepper.vocab;
  }

  /** Rows that have not finished (added or decoding). */
  get live(): number {
    return this.rows.filter((r) => !r.done).length;
  }

  /** Adds rows reading the stepper's encoder rows `encoders`; returns their row numbers. They join at the next step. */
  add(specs: readonly GenRow[], encoders: readonly number[]): number[] {
    specs.forEach(checkRow);
    return specs.map((spec, i) => {
      const row = this.rows.push({ spec, encoder: encoders[i], step: 0, finished: [], done: false }) - 1;
      this.slots.push({ row, seq: [], score: 0 });
      this.tokens.push(this.bos);
      this.from.push(-1 - encoders[i]);
      return row;
    });
  }

  /** The encoder row `row` reads. */
  encoder(row: number): number {
    return this.rows[row].encoder;
  }

  /** One decoder step for every live slot; returns the rows that finished in it, with their results. */
  async step(): Promise<{ row: number; result: GenResult }[]> {
    const { V, eos, hooks } = this;
    const ended: { row: number; result: GenResult }[] = [];
    const finish = (row: number, result: GenResult) => {
      this.rows[row].done = true;
      ended.push({ row, result });
    };
    // rows stopped from outside before their first step do not run it
    if (this.slots.length === 0) return ended;
    const slots = this.slots.slice(); // rows added while the step runs join the next one
    const logits = await this.stepper.step(this.tokens.slice(), this.from.slice());
    if (logits.length !== slots.length * V)
      throw new Error(`generate: stepper returned ${logits.length} logits for ${slots.length} x ${V}`);
    const next: Slot[] = [];
    const nextTokens: number[] = [];
    const nextFrom: number[] = [];
    // slots of one row are contiguous: walk row groups
    for (let a = 0; a < slots.length;) {
      let b = a;
      while (b < slots.length && slots[b].row === slots[a].row) b++;
      const row = slots[a].row;
      const state = this.rows[row];
      const spec = state.spec;
      const step = state.step++;
      const forced = spec.prefix ?? [];
      if (hooks.stopped?.(row)) {
        const s = slots[a]; // greedy: the row's slot; beam: its best live beam (slots are kept best first)
        finish(row, { ids: s.seq, logprob: s.score, finish: "aborted" });
        a = b;
        continue;
      }
      if (step < forced.length) {
        // a prompt token: fed as given, whatever the logits say (one slot: beams expand after the prompt)
        next.push(slots[a]);
        nextTokens.push(forced[step]);
        nextFrom.push(a);
        a = b;
        continue;
      }
      const t = step - forced.length; // generated tokens so far
      const last = t === spec.maxTokens - 1;
      if (spec.numBeams === 1) {
        const lp = logSoftmaxRow(logits, a, V);
        if (t < spec.minTokens) lp[eos] = -Infinity;
        const tok = argmax(lp);
        const s = slots[a];
        const score = s.score + lp[tok];
        if (tok !== eos && spec.stream) hooks.onToken?.(row, tok);
        if (tok === eos) finish(row, { ids: s.seq, logprob: score, finish: "stop" });
        else if (last) finish(row, { ids: [...s.seq, tok], logprob: score, finish: "length" });
        else {
          next.push({ row, seq: [...s.seq, tok], score });
          nextTokens.push(tok);
          nextFrom.push(a);
        }
      } else {
        const k = spec.numBeams;
        const cand = topCandidates(logits, a, b, V, slots, t < spec.minTokens ? eos : -1, 2 * k);
        const live: Slot[] = [];
        for (const [s, slot, tok] of cand) {
          if (s === -Infinity) break;
          const parent = slots[slot];
          if (tok === eos || last) {
            const hyp = tok === eos ? parent.seq : [...parent.seq, tok];
            const why = tok === eos ? "stop" : "length";
            state.finished.push([s / Math.max(hyp.length + 1, 1) ** this.lengthPenalty, hyp, why]);
            continue;
          }
          live.push({ row, seq: [...parent.seq, tok], score: s });
          nextTokens.push(tok);
          nextFrom.push(slot);
          if (live.length === k) break;
        }
        if (last || live.length === 0 || rowDone(state.finished, live, k, this.lengthPenalty, t + 2)) {
          nextTokens.length -= live.length;
          nextFrom.length -= live.length;
          finish(row, bestHypotheses(state.finished, spec.numReturn ?? 1));
        } else next.push(...live);
      }
      a = b;
    }
    // rows added while this step ran (between its await and now) keep their place after the continuing slots
    const added = this.slots.slice(slots.length);
    this.slots = [...next, ...added];
    this.tokens = [...nextTokens, ...this.tokens.slice(slots.length)];
    this.from = [...nextFrom, ...this.from.slice(slots.length)];
    return ended;
  }
}

/** Decodes `rows` (row i reads encoder row i) to the end; results in row order. */
export async function generate(
  stepper: DecoderStepper,
  rows: readonly GenRow[],
  bos: number,
  eos: number,
  lengthPenalty = 1,
  hooks: GenHooks = {},
): Promise<GenResult[]> {
  rows.forEach(checkRow);
  const d = new Decoding(stepper, bos, eos, lengthPenalty, hooks);
  d.add(
    rows,
    rows.map((_, i) => i),
  );
  const results: (GenResult | null)[] = rows.map(() => null);
  while (d.live > 0) for (const { row, result } of await d.step()) results[row] = result;
  return results.map((r) => r ?? { ids: [], logprob: -Infinity, finish: "stop" });
}

/** Python's _all_done for one row: k finished hypotheses, none beaten by what the live beams may still score. */
function rowDone(hyps: Finished[], live: Slot[], k: number, lengthPenalty: number, nextLen: number): boolean {
  if (hyps.length < k) return false;
  const worstKept = hyps.map((h) => h[0]).sort((x, y) => y - x)[k - 1];
  const bestLive = Math.max(...live.map((s) => s.score));
  return !(bestLive !== -Infinity && bestLive / nextLen ** lengthPenalty > worstKept);
}

/** The best finished hypothesis (first of equals, as Python's max); with n > 1 also the n best, best first. */
function bestHypotheses(hyps: Finished[], n: number): GenResult {
  if (hyps.length === 0) return { ids: [], logprob: -Infinity, finish: "stop" };
  const ranked = hyps.map((h, i) => [h, i] as const).sort((x, y) => y[0][0] - x[0][0] || x[1] - y[1]); // stable
  const as = ([[score, ids, finish]]: readonly [Finished, number]): Hypothesis => ({ ids, logprob: score, finish });
  const best = as(ranked[0]);
  return n === 1 ? best : { ...best, nbest: ranked.slice(0, n).map(as) };
}

/** The `n` best (score + log p) candidates over slots [a, b) of a row, best first; ties by (slot, token) order. */
function topCandidates(
  logits: Float32Array,
  a: number,
  b: number,
  V: number,
  slots: Slot[],
  banned: number,
  n: number,
): [number, number, number][] {
  const top: [number, number, number][] = []; // (score, slot index, token), sorted best first
  for (let s = a; s < b; s++) {
    const lp = logSoftmaxRow(logits, s, V);
    if (banned >= 0) lp[banned] = -Infinity;
    const base = slots[s].score;
    for (let v = 0; v < V; v++) {
      const score = base + lp[v];
      if (top.length === n && !(score > top[n - 1][0])) continue;
      let i = top.length === n ? n - 1 : top.length;
      if (top.length < n) top.push([score, s, v]);
      while (i > 0 && score > top[i - 1][0]) {
        top[i] = top[i - 1];
        i--;
      }
      top[i] = [score, s, v];
    }
  }
  return top;
}

export function logSoftmaxRow(logits: Float32Array, row: number, V: number): Float64Array {
  const out = new Float64Array(V);
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[row * V + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[row * V + v] - max);
  const lse = max + Math.log(sum);
  for (let v = 0; v < V; v++) out[v] = logits[row * V + v] - lse;
  return out;
}

function argmax(x: Float64Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
