// The steps captioning and VQA share between their routes (/v1/captions, /v1/vqa, the chat completions route):
// what the decoder reads for an image (its tokens) or for an image and a question (the question's states, BLIP's
// way), as inputs for `app.inference.generate`. One place, so that every surface gives the same answer.
import type { FastifyRequest } from "fastify";
import type { GenRow } from "../decode/search.js";
import { answerContext, type GenInput } from "../inference/graphs.js";
import type { ServedModel } from "../services/models.js";
import { prepareTexts } from "./task.js";

/** Decoder inputs for captions: each image's tokens, with `row` as the search settings. */
export async function captionInputs(
  req: FastifyRequest,
  model: ServedModel,
  pixels: Float32Array[],
  row: GenRow,
): Promise<GenInput[]> {
  const encoded = await req.server.inference.images(model, pixels, req.deadline);
  const length = model.manifest.model.image_tokens;
  return encoded.map((im) => ({ hidden: im.embeds, length, row }));
}

/** Decoder input for a VQA answer: the question ([ENC] question [SEP]) encoded over the image; `ids` its tokens. */
export async function answerInput(
  req: FastifyRequest,
  model: ServedModel,
  pixels: Float32Array,
  question: string,
  row: GenRow,
): Promise<{ input: GenInput; ids: number[] }> {
  const app = req.server;
  const [ids] = prepareTexts(req, model, [question], model.manifest.tokenizer.special_tokens.enc);
  const [image] = await app.inference.images(model, [pixels], req.deadline);
  const [q] = await app.inference.questions(model, [{ embeds: image.embeds, ids }], req.deadline);
  const context = answerContext(q, image, model.manifest.model.vqa_decoder_reads_image === true);
  return { input: { ...context, row }, ids };
}
