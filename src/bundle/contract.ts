// The graph contract of FORMAT.md, mirrored from training/dlip/export/contract.py (graph_specs): exact input/output
// names, dtypes and shapes (ints: fixed sizes from the manifest's `model`; strings: dynamic axes). The server's
// code reads outputs by these names, so a manifest that names them otherwise is refused at boot.
import type { GraphName, Manifest, TensorSpec } from "./manifest.js";

type Dim = number | string;
const t = (name: string, dtype: "float32" | "int64", shape: Dim[]): TensorSpec => ({ name, dtype, shape });

export function graphContract(m: Manifest): Record<GraphName, { inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  const S = m.preprocessing.image_size;
  const { image_tokens: N, vision_width: Dv, text_width: Dt, embed_dim: E } = m.model;
  const { decoder_layers: K, decoder_heads: H, decoder_head_dim: Dh, vocab_size: V } = m.model;
  const imageEmbeds = t("image_embeds", "float32", ["B", N, Dv]);
  const textIn = (L: string) => [t("input_ids", "int64", ["B", L]), t("attention_mask", "int64", ["B", L])];
  const cache = (prefix: string, P: string) =>
    Array.from({ length: K }, (_, i) =>
      ["key", "value"].map((kind) => t(`${prefix}_${kind}_${i}`, "float32", ["B", H, P, Dh])),
    ).flat();
  return {
    vision: {
      inputs: [t("pixel_values", "float32", ["B", 3, S, S])],
      outputs: [imageEmbeds, t("image_feat", "float32", ["B", E])],
    },
    text: { inputs: textIn("L"), outputs: [t("text_feat", "float32", ["B", E])] },
    itm: { inputs: [imageEmbeds, ...textIn("L")], outputs: [t("itm_logits", "float32", ["B", 2])] },
    vqa_encoder: {
      inputs: [imageEmbeds, ...textIn("Lq")],
      outputs: [t("question_states", "float32", ["B", "Lq", Dt])],
    },
    decoder: {
      inputs: [
        t("input_ids", "int64", ["B", "T"]),
        t("attention_mask", "int64", ["B", "P+T"]),
        t("encoder_hidden", "float32", ["B", "M", Dv]),
        t("encoder_mask", "int64", ["B", "M"]),
        ...cache("past", "P"),
      ],
      outputs: [t("logits", "float32", ["B", "T", V]), ...cache("present", "P+T")],
    },
  };
}

/** The first difference between a manifest's graph entries and the contract, or null. */
export function contractProblem(m: Manifest): string | null {
  const want = graphContract(m);
  if (m.model.text_width !== m.model.vision_width) {
    return `model.text_width (${m.model.text_width}) must equal model.vision_width (${m.model.vision_width}): the decoder reads both`;
  }
  for (const [graph, spec] of Object.entries(want) as [GraphName, (typeof want)[GraphName]][]) {
    for (const side of ["inputs", "outputs"] as const) {
      const got = m.graphs[graph][side];
      const exp = spec[side];
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
