// The steps captioning and VQA share between their surfaces (/v1/captions, /v1/vqa, the chat completions route,
// the KServe v2 `caption` and `answer` outputs): what the decoder reads for an encoded image (its tokens) or for an
// image and a question (the question's states, BLIP's way), and the whole caption/answer step on top. One place, so
// that every surface gives the same answer.
import type { FastifyRequest } from "fastify";
import { fusionFirstToken } from "../bundle/contract.js";
import type { GenRow } from "../decode/search.js";
import { answerContext, type GenInput, type ImageRow, type KeptImage } from "../inference/graphs.js";
import type { ServedModel } from "../services/models.js";
import { prepareTexts } from "./task.js";

/**
 * Decoder inputs for captions: each encoded image's tokens, with `row` as the search settings. Tokens kept in a
 * worker (keptImages) are decoded there; tokens on this thread (KServe, which reuses one encode for other outputs)
 * are sent with the decode.
 */
export function captionInputs(model: ServedModel, encoded: (ImageRow | KeptImage)[], row: GenRow): GenInput[] {
  const length = model.manifest.model.image_tokens;
  return encoded.map((im) =>
    im.embeds instanceof Float32Array
      ? { parts: [im.embeds], worker: null, length, row }
      : { parts: [im.embeds.handle], worker: im.embeds.worker, length, row },
  );
}

/** Graph reads of an image's kept tokens: one for a caption; for a question its encoder, and its decode where the
 * decoder reads the image too. */
export function imageUses(model: ServedModel, task: "caption" | "answer"): number {
  return task === "caption" || model.manifest.model.vqa_decoder_reads_image !== true ? 1 : 2;
}

/** Decoder inputs for VQA answers, question i about encoded image i: the question ([ENC] question [SEP]) encoded
 * over its image; `ids` are the question's tokens. */
export async function answerInputs(
  req: FastifyRequest,
  model: ServedModel,
  images: (ImageRow | KeptImage)[],
  questions: string[],
  row: GenRow,
): Promise<{ input: GenInput; ids: number[] }[]> {
  const { inference } = req.server;
  const held = images.map((im) => im.embeds);
  let states;
  try {
    const ids = prepareTexts(req, model, questions, fusionFirstToken(model.manifest), "question");
    states = await inference.questions(
      model,
      images.map((im, i) => ({ embeds: im.embeds, ids: ids[i] })),
      req.deadline,
    );
    const readsImage = model.manifest.model.vqa_decoder_reads_image === true;
    const N = model.manifest.model.image_tokens;
    return states.map((q, i) => ({ input: { ...answerContext(q, images[i], readsImage, N), row }, ids: ids[i] }));
  } catch (err) {
    inference.release(held); // kept image tokens no decode will read
    throw err;
  }
}

/** Captions of encoded images, decoded, with their token counts (at least one word, as the Python evaluation). */
export async function captionImages(
  req: FastifyRequest,
  model: ServedModel,
  encoded: (ImageRow | KeptImage)[],
  opts: { numBeams: number; maxTokens: number },
): Promise<{ text: string; tokens: number }[]> {
  const { inference, metrics } = req.server;
  const inputs = captionInputs(model, encoded, { ...opts, minTokens: 1 });
  const gen = await inference.generate(model, inputs, req.deadline);
  metrics.generatedTokens.labels(model.name, "captioning").inc(gen.reduce((n, g) => n + g.ids.length, 0));
  return gen.map((g) => ({ text: model.tokenizer.decode(g.ids), tokens: g.ids.length }));
}

/** Greedy answers (as the Python evaluation) to questions about encoded images, with their probabilities. */
export async function answerQuestions(
  req: FastifyRequest,
  model: ServedModel,
  images: (ImageRow | KeptImage)[],
  questions: string[],
): Promise<{ answer: string; score: number }[]> {
  const { inference, metrics } = req.server;
  const row = { numBeams: 1, maxTokens: model.manifest.tokenizer.max_answer_tokens, minTokens: 0 };
  const inputs = await answerInputs(req, model, images, questions, row);
  const answers = await inference.generate(
    model,
    inputs.map((x) => x.input),
    req.deadline,
  );
  metrics.generatedTokens.labels(model.name, "vqa").inc(answers.reduce((n, a) => n + a.ids.length, 0));
  return answers.map((a) => ({ answer: model.tokenizer.decode(a.ids), score: Math.exp(a.logprob) }));
}
