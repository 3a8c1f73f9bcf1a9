// The embedding step both embedding surfaces share (ours, POST /v1/embeddings with texts / images, and OpenAI's,
// with `input`): texts and images of one model -> L2-normalised vectors in the shared retrieval (ITC) space.
import type { FastifyRequest } from "fastify";
import type { ServedModel } from "../services/models.js";
import { l2normalise, prepareImages, prepareTexts } from "./task.js";

export interface Embedded {
  texts: number[][]; // one vector per text, in order
  images: number[][]; // one vector per image, in order
  textTokens: number[]; // each text's token count as encoded for the model ([CLS] text [SEP], truncated)
}

/** Embeds texts and images (strings as base64 / data URIs, or bytes); `label(i)` names image i in errors. */
export async function embed(
  req: FastifyRequest,
  model: ServedModel,
  texts: string[],
  images: (string | Buffer)[],
  label: (i: number) => string,
): Promise<Embedded> {
  const pixels = await prepareImages(req, model, images, label);
  const ids = prepareTexts(req, model, texts);
  const [textFeats, imageRows] = await Promise.all([
    req.server.inference.texts(model, ids, req.deadline),
    req.server.inference.images(model, pixels, req.deadline),
  ]);
  return {
    texts: textFeats.map(l2normalise),
    images: imageRows.map((r) => l2normalise(r.feat)),
    textTokens: ids.map((row) => row.length),
  };
}
