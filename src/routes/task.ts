// What every task route shares. `taskRoute()` gives a route's options: its schemas (the body, typed through the
// TypeBox type provider; a reply per status) and, for multipart/form-data, a preValidation step that reads the form
// and converts it into the JSON body's shape, so that Fastify validates both kinds of body with the route's one
// compiled schema. Then the steps handlers share: images to pixels and texts to token rows, each timed into the
// preprocessing histogram. And which bundle task each operation needs (TASK_OF), checked by requireTask.
import type { FastifyRequest } from "fastify";
import type { TSchema } from "typebox";
import { ApiError } from "../errors.js";
import { preprocessImage } from "../preprocess/image.js";
import { cleanText } from "../preprocess/text.js";
import type { Manifest } from "../bundle/manifest.js";
import type { ServedModel } from "../services/models.js";
import { addTiming } from "./timing.js";
import { decodeImageString, Form, readMultipart } from "./input.js";
import { TASK_ERRORS } from "./schemas.js";

export type Task = Manifest["tasks"][number];

/**
 * The bundle task (manifest `tasks`) each operation needs: the one place this is decided. Every route and route part
 * that performs an operation calls requireTask first, so a bundle is only ever asked for what it serves:
 *   caption: POST /v1/captions; /v1/chat/completions without a question (or task "caption"); v2 output `caption`
 *   answer:  POST /v1/vqa; /v1/chat/completions with a question (or task "vqa"); v2 output `answer`
 *   embed:   POST /v1/embeddings and /embeddings, texts and images, our body and OpenAI's; v2 outputs
 *            `text_embedding`, `image_embedding`. Image embeddings need retrieval too: the vision graph's ITC
 *            feature is the retrieval model's projection, which a captioning or VQA checkpoint does not train.
 *   rank:    POST /v1/rank (ITC, and ITM unless rerank "none"); v2 output `itm_score`
 */
export const TASK_OF = {
  caption: { task: "captioning", what: "captions" },
  answer: { task: "vqa", what: "VQA answers" },
  embed: { task: "retrieval", what: "embeddings" },
  rank: { task: "retrieval", what: "ranking and ITM scores" },
  collect: { task: "retrieval", what: "collections" },
} as const satisfies Record<string, { task: Task; what: string }>;
export type Operation = keyof typeof TASK_OF;

/** 400 unsupported_task, naming the tasks the model serves, unless the model's bundle serves what `op` needs. */
export function requireTask(model: ServedModel, op: Operation): void {
  const { task, what } = TASK_OF[op];
  const tasks = model.manifest.tasks;
  if (tasks.includes(task)) return;
  throw new ApiError(
    "unsupported_task",
    `model '${model.name}' does not serve ${task}, which ${what} need; it serves ` +
      (tasks.length ? tasks.join(", ") : "no task"),
    undefined,
    "model",
  );
}

export interface FormSpec {
  fields: string[]; // field names the form may have
  files: string[]; // file part names the form may have
  parts: string; // the form described for the OpenAPI document
  /** The form as the JSON body it stands for (validated by the route's schema next, so not yet typed). */
  toBody: (form: Form) => Record<string, unknown>;
}

export function taskRoute<B extends TSchema, R extends TSchema>(spec: {
  summary: string;
  body: B;
  reply: R;
  form: FormSpec;
}) {
  const { form } = spec;
  return {
    schema: {
      summary: spec.summary,
      description: `JSON body as described, or multipart/form-data with ${form.parts}.`,
      tags: ["tasks"],
      body: spec.body,
      response: { 200: spec.reply, ...TASK_ERRORS },
    },
    async preValidation(req: FastifyRequest) {
      if (req.isMultipart()) req.body = form.toBody(new Form(await readMultipart(req, req.server.config, form)));
      else if (req.body === undefined) throw new ApiError("invalid_json", "the request has no body");
    },
  };
}

/** Images of either form (JSON strings, multipart bytes) -> model pixels; `label(i)` names an image in errors. */
export async function prepareImages(
  req: FastifyRequest,
  model: ServedModel,
  images: (string | Buffer)[],
  label: (i: number) => string,
): Promise<Float32Array[]> {
  const t0 = performance.now();
  const limit = req.server.config.fileLimitBytes;
  const pixels = await Promise.all(
    images.map((im, i) =>
      preprocessImage(typeof im === "string" ? decodeImageString(im, label(i), limit) : im, model.image, label(i)),
    ),
  );
  observePreprocess(req, model, "image", performance.now() - t0);
  req.deadline.throwIfAborted();
  return pixels;
}

/** `images[i]`-style labels for prepareImages. */
export const at =
  (name: string) =>
  (i: number): string =>
    `${name}[${i}]`;

/**
 * Token rows for texts, cleaned as the model's evaluation cleans them (cleanText: BLIP's pre_caption / pre_question,
 * none for a Hugging Face checkpoint served as it is):
 * [CLS] text [SEP] (or `first` in place of [CLS]), truncated to the model's max_text_tokens.
 */
export function prepareTexts(
  req: FastifyRequest,
  model: ServedModel,
  texts: string[],
  first?: number,
  kind: "caption" | "question" = "caption",
): number[][] {
  const t0 = performance.now();
  const max = model.manifest.tokenizer.max_text_tokens;
  const clean = (t: string) => cleanText(model.manifest.source, t, kind);
  const rows = texts.map((t) =>
    first === undefined ? model.tokenizer.encode(clean(t), max) : model.tokenizer.encodeWithFirst(clean(t), max, first),
  );
  observePreprocess(req, model, "text", performance.now() - t0);
  return rows;
}

/** One preprocessing step's duration: into the histogram and the request's x-preprocess-time, the same number. */
function observePreprocess(req: FastifyRequest, model: ServedModel, kind: "image" | "text", ms: number): void {
  req.server.metrics.preprocessDuration.labels(model.name, kind).observe(ms / 1000);
  addTiming(req.timings, "preprocess", ms);
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
