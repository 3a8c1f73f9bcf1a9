// The graph contract of FORMAT.md, read at run time from training/dlip/export/contract.json, the file the exporter
// (training/dlip/export/contract.py) reads too: every graph's exact input/output names, dtypes and shapes. A shape
// entry is an integer, a dim (a key of the contract's `dims`, whose value the manifest holds) or a dynamic axis
// (a key of its `axes`, kept as a name). The server's code reads outputs by these names, so a manifest that names
// them otherwise is refused at boot.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Manifest, TensorSpec } from "./manifest.types.js";

export type GraphName = keyof Manifest["graphs"];

/**
 * training/dlip/export/, where the contract files live: two folders above this module both in src/bundle/ (tsx)
 * and in dist/bundle/ (compiled), so the same relative path serves both, and the image (/app/training/...).
 */
export const CONTRACT_DIR = new URL("../../training/dlip/export/", import.meta.url);

/** One of the contract files, parsed. */
export function readContractFile(name: string): unknown {
  const file = fileURLToPath(new URL(name, CONTRACT_DIR));
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: the bundle contract is unreadable (${(err as Error).message})`);
  }
}

type Dim = number | string;
interface ContractTensor {
  name: string; // "{i}" in a repeated tensor's name is the layer index
  dtype: "float32" | "int64";
  shape: Dim[];
}
/**
 * A per-layer block: `tensors` once per index i below the dim `repeat`. `cache` names it: `past` (decoder inputs) and
 * `present` (decoder outputs) are the self-attention cache, `cross` the cross-attention keys and values (cross_kv's
 * outputs, the decoder's inputs, the same names).
 */
interface RepeatBlock {
  repeat: string;
  cache: "past" | "present" | "cross";
  tensors: ContractTensor[];
}
interface ContractGraph {
  file: string;
  int8_file: string;
  fp16_file: string;
  inputs: (ContractTensor | RepeatBlock)[];
  outputs: (ContractTensor | RepeatBlock)[];
}
export interface Contract {
  opset: number;
  files: { manifest: string; tokenizer: string };
  tasks: Record<Manifest["tasks"][number], GraphName[]>; // the graphs each task needs
  dims: Record<string, { manifest: [string, string]; description: string }>;
  axes: Record<string, string>;
  graphs: Record<GraphName, ContractGraph>;
}

export const CONTRACT = readContractFile("contract.json") as Contract;

/** Every graph, in the contract's order. */
export const GRAPHS: readonly GraphName[] = Object.keys(CONTRACT.graphs) as GraphName[];

/**
 * The graphs a bundle serving `tasks` holds (format 4; contract.json's `tasks`), in the contract's order. Format 3
 * bundles hold every graph.
 */
export function graphsForTasks(tasks: readonly Manifest["tasks"][number][]): GraphName[] {
  return GRAPHS.filter((g) => tasks.some((t) => CONTRACT.tasks[t].includes(g)));
}

/** The graphs a manifest lists, in the contract's order. */
export function bundleGraphs(m: Manifest): GraphName[] {
  return GRAPHS.filter((g) => m.graphs[g] !== undefined);
}

/** The first token of itm / vqa_encoder input ids: [ENC], or the tokenizer's [CLS] where the manifest says so. */
export function fusionFirstToken(m: Manifest): number {
  const sp = m.tokenizer.special_tokens;
  return m.tokenizer.fusion_first_token === "cls" ? sp.cls : sp.enc;
}

/** The manifest's value for one of the contract's dims (e.g. `image_tokens` is `model.image_tokens`). */
function dimValue(m: Manifest, dim: string): number {
  const [section, key] = CONTRACT.dims[dim].manifest;
  return (m as unknown as Record<string, Record<string, number>>)[section][key];
}

function expand(entries: (ContractTensor | RepeatBlock)[], m: Manifest): TensorSpec[] {
  const resolve = (t: ContractTensor, i?: number): TensorSpec => ({
    name: i === undefined ? t.name : t.name.replaceAll("{i}", String(i)),
    dtype: t.dtype,
    shape: t.shape.map((d) => {
      if (typeof d === "number" || d in CONTRACT.axes) return d;
      if (d in CONTRACT.dims) return dimValue(m, d);
      throw new Error(`contract.json: ${t.name}: '${d}' is neither a dim nor an axis`);
    }),
  });
  return entries.flatMap((e) =>
    "repeat" in e
      ? Array.from({ length: dimValue(m, e.repeat) }, (_, i) => e.tensors.map((t) => resolve(t, i))).flat()
      : [resolve(e)],
  );
}

/** Every graph's inputs and outputs for a manifest's dims. */
export function graphContract(m: Manifest): Record<GraphName, { inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  return Object.fromEntries(
    GRAPHS.map((g) => [
      g,
      { inputs: expand(CONTRACT.graphs[g].inputs, m), outputs: expand(CONTRACT.graphs[g].outputs, m) },
    ]),
  ) as Record<GraphName, { inputs: TensorSpec[]; outputs: TensorSpec[] }>;
}

/**
 * The decoder's cache names for `layers` layers, in feed order: past_key_0, past_value_0, past_key_1, ... (and the
 * same for `present` outputs and the `cross` keys/values cross_kv returns and the decoder reads).
 */
export function cacheNames(layers: number): { past: string[]; present: string[]; cross: string[] } {
  const names = (cache: "past" | "present" | "cross") => {
    const side = cache === "present" ? CONTRACT.graphs.decoder.outputs : CONTRACT.graphs.decoder.inputs;
    const block = side.find((e): e is RepeatBlock => "repeat" in e && e.cache === cache)!;
    return Array.from({ length: layers }, (_, i) =>
      block.tensors.map((t) => t.name.replaceAll("{i}", String(i))),
    ).flat();
  };
  return { past: names("past"), present: names("present"), cross: names("cross") };
}

/** Bundle formats that fed `encoder_hidden` to every decoder step: refused at boot with how to re-export them. */
export const OLDER_FORMATS: readonly number[] = [1, 2];

/**
 * Why a manifest of an older bundle format cannot be served, with the commands that write it again as format 3
 * (worded as training/dlip/export/contract.py's format_problem), or null.
 */
export function formatProblem(m: unknown, bundle = "BUNDLE"): string | null {
  const r = (m && typeof m === "object" ? m : {}) as Record<string, any>;
  const version = r.format_version;
  if (!OLDER_FORMATS.includes(version)) return null;
  const source = r.source && typeof r.source === "object" ? r.source : {};
  const again = `python -m dlip export ${bundle} --out ${bundle} --overwrite`;
  let how: string;
  if ("weights" in r) how = `\`${again}\``;
  else if (source.random_init)
    how = `\`python -m dlip export --random-init --preset ${source.preset} --seed ${source.seed} --out ${bundle} --overwrite\``;
  else {
    how = `\`python -m dlip recover-weights ${bundle}\` then \`${again}\``;
    if (source.run)
      how += `, or \`python -m dlip export ${source.run} --out ${bundle} --overwrite\` from its run folder`;
  }
  return (
    `bundle format ${version} is no longer read (format 3: the decoder takes cross-attention keys/values from ` +
    `cross_kv and per-row position_ids); re-export it (in training/): ${how}`
  );
}

/** The first difference between a schema-valid manifest's graph entries and the contract, or null. */
export function contractProblem(m: Manifest): string | null {
  if (m.model.text_width !== m.model.vision_width) {
    return `model.text_width (${m.model.text_width}) must equal model.vision_width (${m.model.vision_width}): the decoder reads both`;
  }
  if (m.format_version >= 4) {
    const have = bundleGraphs(m);
    const need = graphsForTasks(m.tasks);
    if (have.join() !== need.join())
      return `graphs are ${have.join(", ")}; tasks ${m.tasks.join(", ")} need exactly ${need.join(", ")} (contract.json's tasks)`;
  }
  const want = graphContract(m);
  for (const graph of bundleGraphs(m)) {
    for (const side of ["inputs", "outputs"] as const) {
      const got = m.graphs[graph]![side];
      const exp = want[graph][side];
      const show = (xs: TensorSpec[]) => xs.map((x) => `${x.name} ${x.dtype} [${x.shape.join(", ")}]`).join("; ");
      const same =
        got.length === exp.length &&
        got.every(
          (g, i) =>
            g.name === exp[i].name &&
            g.dtype === exp[i].dtype &&
            JSON.stringify(g.shape) === JSON.stringify(exp[i].shape),
        );
      if (!same) return `graphs.${graph}.${side} are [${show(got)}], the contract says [${show(exp)}]`;
    }
  }
  return null;
}
