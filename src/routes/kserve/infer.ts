// A v2 inference request run through the same steps as the /v1 routes: images encoded once and shared by every
// output that reads them; captions as /v1/captions with its defaults (greedy, the model's max_caption_tokens),
// answers as /v1/vqa, embeddings L2-normalised as /v1/embeddings, itm_score the ITM match logit of (image i,
// text i) as /v1/rank reports `itm_score`. Then the outputs in the response's form: JSON `data`, or binary.
import type { FastifyRequest } from "fastify";
import type { ServedModel } from "../../services/models.js";
import { answerQuestions, captionImages } from "../generation.js";
import { withEnc } from "../rank.js";
import { at, l2normalise, prepareImages, prepareTexts, requireTask } from "../task.js";
import { encodeBytes, encodeFp32 } from "./binary.js";
import { datatypeOf, OPERATION_OF, type Inputs, type OutputName, type Wanted } from "./tensors.js";

/** An output's values, row-major: strings (BYTES) or numbers (FP32), with its shape. */
export interface Tensor {
  shape: number[];
  values: string[] | number[];
}

export async function runOutputs(
  req: FastifyRequest,
  model: ServedModel,
  inputs: Inputs,
  outputs: Wanted[],
): Promise<Map<OutputName, Tensor>> {
  for (const o of outputs) requireTask(model, OPERATION_OF[o.name]);
  const { inference } = req.server;
  const wants = new Set(outputs.map((o) => o.name));
  const pixels = inputs.image ? await prepareImages(req, model, inputs.image, at("image")) : [];
  const ids = inputs.text ? prepareTexts(req, model, inputs.text) : [];
  const [images, textFeats] = await Promise.all([
    inference.images(model, pixels, req.deadline),
    wants.has("text_embedding") ? inference.texts(model, ids, req.deadline) : [],
  ]);
  const D = model.manifest.model.embed_dim;
  const N = images.length;
  const run: Record<OutputName, () => Promise<Tensor>> = {
    caption: async () => {
      const maxTokens = model.manifest.tokenizer.max_caption_tokens;
      const caps = await captionImages(req, model, images, { numBeams: 1, maxTokens });
      return { shape: [N], values: caps.map((c) => c.text) };
    },
    answer: async () => {
      const answers = await answerQuestions(req, model, images, inputs.question!);
      return { shape: [N], values: answers.map((a) => a.answer) };
    },
    image_embedding: async () => ({ shape: [N, D], values: images.flatMap((r) => l2normalise(r.feat)) }),
    text_embedding: async () => ({ shape: [textFeats.length, D], values: textFeats.flatMap(l2normalise) }),
    itm_score: async () => {
      const rows = images.map((im, i) => ({ embeds: im.embeds, ids: withEnc(model, ids[i]) }));
      return { shape: [N], values: await inference.itm(model, rows, req.deadline) };
    },
  };
  const done = await Promise.all(outputs.map((o) => run[o.name]()));
  return new Map(outputs.map((o, i) => [o.name, done[i]]));
}

export interface OutputJson {
  name: string;
  datatype: string;
  shape: number[];
  data?: string[] | number[];
  parameters?: { binary_data_size: number };
}

/** The response's outputs: each as JSON data, or as a binary piece (its size in parameters.binary_data_size). */
export function encodeOutputs(
  outputs: Wanted[],
  tensors: Map<OutputName, Tensor>,
): { json: OutputJson[]; pieces: Buffer[] } {
  const pieces: Buffer[] = [];
  const json = outputs.map(({ name, binary }) => {
    const t = tensors.get(name)!;
    const head = { name, datatype: datatypeOf(name), shape: t.shape };
    if (!binary) return { ...head, data: t.values };
    const piece =
      head.datatype === "BYTES"
        ? encodeBytes((t.values as string[]).map((s) => Buffer.from(s, "utf8")))
        : encodeFp32(t.values as number[]);
    pieces.push(piece);
    return { ...head, parameters: { binary_data_size: piece.length } };
  });
  return { json, pieces };
}
