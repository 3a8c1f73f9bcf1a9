// Steps every task route shares: reading JSON or multipart input, decoding and preprocessing images, tokenising,
// each timed into the preprocessing histogram and checked against the request's deadline.
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Config } from "../config.js";
import { ApiError } from "../errors.js";
import type { ServedModel } from "../plugins/sessions.js";
import { preprocessImage } from "../preprocess/image.js";
import { decodeImageString, Form, readMultipart } from "./input.js";

/** The JSON body (already validated by the route schema), or the multipart form converted by `fromForm`. */
export async function readInput<T>(
  req: FastifyRequest,
  cfg: Config,
  allow: { fields: string[]; files: string[] },
  fromForm: (f: Form) => T,
): Promise<T> {
  if (req.isMultipart()) return fromForm(new Form(await readMultipart(req, cfg, allow)));
  if (req.body === undefined || req.body === null) throw new ApiError("invalid_json", "the request has no body");
  return req.body as T;
}

/** Image inputs of either form -> bytes; `label(i)` names the image in errors ("images[2]"). */
export function imageBytes(images: (string | Buffer)[], label: (i: number) => string, cfg: Config): Buffer[] {
  return images.map((im, i) => (typeof im === "string" ? decodeImageString(im, label(i), cfg.fileLimitBytes) : im));
}

export async function prepareImages(
  app: FastifyInstance,
  req: FastifyRequest,
  model: ServedModel,
  bytes: Buffer[],
  label: (i: number) => string,
): Promise<Float32Array[]> {
  const t0 = performance.now();
  const pixels = await Promise.all(bytes.map((b, i) => preprocessImage(b, model.image, label(i))));
  app.metrics.preprocessDuration.labels(model.name, "image").observe((performance.now() - t0) / 1000);
  req.deadline.throwIfAborted();
  return pixels;
}

/** Token rows for texts: [CLS] text [SEP] (or `first` in place of [CLS]), truncated to `maxTokens`. */
export function prepareTexts(
  app: FastifyInstance,
  model: ServedModel,
  texts: string[],
  maxTokens: number,
  first?: number,
): number[][] {
  const t0 = performance.now();
  const rows = texts.map((t) =>
    first === undefined ? model.tokenizer.encode(t, maxTokens) : model.tokenizer.encodeWithFirst(t, maxTokens, first),
  );
  app.metrics.preprocessDuration.labels(model.name, "text").observe((performance.now() - t0) / 1000);
  return rows;
}

export function l2normalise(v: Float32Array): number[] {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  return Array.from(v, (x) => x / n);
}

declare module "fastify" {
  interface FastifyRequest {
    deadline: AbortSignal; // the request's deadline and client-gone signal (task routes only)
  }
}
