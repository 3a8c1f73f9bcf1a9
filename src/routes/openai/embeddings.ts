// OpenAI's embeddings body on POST /v1/embeddings (and /embeddings): `input` a string or a list of strings and
// {"text"} / {"image"} objects; a string is an image when it is a data:image/ URI, or every string is one with
// `modality: "image"` (Infinity's convention, where bare base64 works too). Answered in OpenAI's form: vectors in
// input order, floats or base64 (little-endian float32), `usage` in tokens (a text's tokens as encoded for the
// model, an image's `model.image_tokens`). The embedding itself is the step our own body uses (routes/embed.ts).
import type { FastifyRequest } from "fastify";
import Type, { type Static } from "typebox";
import type { Config } from "../../config.js";
import { ApiError, invalidField, invalidImage, withParam } from "../../errors.js";
import { schemaErrorFormatter } from "../../schema-errors.js";
import { imageSourceBytes, urlPolicy } from "../../preprocess/fetch.js";
import { embed } from "../embed.js";
import { requireTask } from "../task.js";
import { MAX_IMAGES, MAX_TEXT_CHARS, MAX_TEXTS, ModelField } from "../schemas.js";
import { namedModel } from "./shared.js";

const MAX_INPUTS = MAX_TEXTS + MAX_IMAGES;

const Item = Type.Union([
  Type.String({
    description: "a text, or an image as a data:image/...;base64, URI (every string an image with modality image)",
  }),
  Type.Object({ text: Type.String({ maxLength: MAX_TEXT_CHARS }) }, { additionalProperties: false }),
  Type.Object({ image: Type.String({ description: "a data URI or base64" }) }, { additionalProperties: false }),
]);

// every field but `input`, which inputItems() checks (Ajv's errors for a union say little)
const fields = {
  model: ModelField,
  encoding_format: Type.Optional(Type.Enum(["float", "base64"], { description: "float (default) or base64" })),
  dimensions: Type.Optional(Type.Integer({ minimum: 1, description: "must equal the model's embed_dim if given" })),
  user: Type.Optional(Type.String({ maxLength: 256, description: "accepted and ignored" })),
  modality: Type.Optional(
    Type.Enum(["text", "image"], { description: "image: every string is an image; text: every string is a text" }),
  ),
};

export const OpenAIEmbeddingsBody = Type.Object(
  {
    input: Type.Union([Type.String(), Type.Array(Item, { minItems: 1, maxItems: MAX_INPUTS })], {
      description: `a string or 1-${MAX_INPUTS} items (at most ${MAX_TEXTS} texts and ${MAX_IMAGES} images)`,
    }),
    ...fields,
  },
  { additionalProperties: false, description: "OpenAI's embeddings request" },
);
type Body = Static<typeof OpenAIEmbeddingsBody>;

const Fields = Type.Object({ input: Type.Unknown(), ...fields }, { additionalProperties: false });

export const OpenAIEmbeddingsReply = Type.Object(
  {
    object: Type.Literal("list"),
    data: Type.Array(
      Type.Object({
        object: Type.Literal("embedding"),
        index: Type.Integer(),
        embedding: Type.Union([Type.Array(Type.Number()), Type.String()], {
          description: "L2-normalised; base64 of little-endian float32 with encoding_format base64",
        }),
      }),
    ),
    model: Type.String(),
    usage: Type.Object({ prompt_tokens: Type.Integer(), total_tokens: Type.Integer() }),
  },
  { description: "OpenAI's embeddings answer (to a body with `input`)" },
);
type Reply = Static<typeof OpenAIEmbeddingsReply>;

/** A body in OpenAI's form: one with `input`. */
export const isOpenAIBody = (body: unknown): body is Record<string, unknown> =>
  typeof body === "object" && body !== null && !Array.isArray(body) && "input" in body;

/** Checks an OpenAI body before the route's schema does, so every refusal names its field (`param`). */
export function checkOpenAIBody(req: FastifyRequest, body: Record<string, unknown>): void {
  if ("texts" in body || "images" in body) {
    throw invalidField(
      "the body mixes OpenAI's form ('input') with ours ('texts' / 'images'): send one of them",
      "input",
    );
  }
  const valid = req.compileValidationSchema(Fields, "body");
  if (!valid(body)) {
    const errors = valid.errors ?? [];
    const e = errors[0];
    const field =
      (e?.params as { missingProperty?: string; additionalProperty?: string } | undefined)?.additionalProperty ??
      e?.instancePath.split("/")[1];
    throw withParam(invalidField(schemaErrorFormatter(errors as never, "body").message), field ?? "input");
  }
  inputItems(body.input, body.modality as Body["modality"]);
}

interface InputItem {
  kind: "text" | "image";
  value: string;
}

/** `input` as texts and images, in order; a 400 (param "input") naming the item at fault. */
export function inputItems(input: unknown, modality?: "text" | "image"): InputItem[] {
  const list = typeof input === "string" ? [input] : input;
  const bad = (msg: string) => invalidField(msg, "input");
  if (!Array.isArray(list))
    throw bad('body.input must be a string or a list of strings, {"text": ...} and {"image": ...} objects');
  if (list.length === 0) throw bad("body.input is empty: nothing to embed");
  if (list.length > MAX_INPUTS) throw bad(`body.input has ${list.length} items; at most ${MAX_INPUTS}`);
  const items = list.map((x: unknown, i): InputItem => {
    const at = `body.input[${i}]`;
    if (typeof x === "string") {
      const image = modality === "image" || (modality === undefined && x.startsWith("data:image/"));
      return { kind: image ? "image" : "text", value: x };
    }
    if (typeof x === "object" && x !== null && !Array.isArray(x)) {
      const keys = Object.keys(x);
      const [key] = keys;
      const value = (x as Record<string, unknown>)[key];
      if (keys.length !== 1 || (key !== "text" && key !== "image"))
        throw bad(`${at} must have exactly one field, 'text' or 'image'`);
      if (typeof value !== "string") throw bad(`${at}.${key} must be a string`);
      return { kind: key, value };
    }
    throw bad(
      `${at} must be a string, {"text": string} or {"image": string}` +
        (typeof x === "number" || Array.isArray(x) ? " (token ids are not taken: send the text)" : ""),
    );
  });
  items.forEach((it, i) => {
    if (it.kind === "text" && it.value.length > MAX_TEXT_CHARS && [...it.value].length > MAX_TEXT_CHARS)
      throw bad(`body.input[${i}] is a text longer than ${MAX_TEXT_CHARS} characters`);
  });
  const texts = items.filter((it) => it.kind === "text").length;
  if (texts > MAX_TEXTS) throw bad(`body.input has ${texts} texts; at most ${MAX_TEXTS} per request`);
  if (items.length - texts > MAX_IMAGES)
    throw bad(`body.input has ${items.length - texts} images; at most ${MAX_IMAGES} per request`);
  return items;
}

/**
 * An image string of OpenAI's input -> its bytes: base64 or a data URI. The one place an image string becomes
 * bytes on this surface, where a URL fetcher plugs in (given the request's deadline, `signal`); until one does,
 * http(s) URLs are refused.
 */
export async function imageBytes(s: string, label: string, config: Config, signal: AbortSignal): Promise<Buffer> {
  signal.throwIfAborted();
  return imageSourceBytes(s, label, { policy: urlPolicy(config), fileLimitBytes: config.fileLimitBytes, signal });
}

/** Errors that come from an input item (then `param` is "input"), not from the server's state. */
const INPUT_ERRORS = new Set(["invalid_image", "file_too_large", "image_too_large", "unsupported_image_format"]);

export async function openaiEmbeddings(req: FastifyRequest, body: Body): Promise<Reply> {
  const model = namedModel(req.server, body.model);
  requireTask(model, "embed");
  const dim = model.manifest.model.embed_dim;
  if (body.dimensions !== undefined && body.dimensions !== dim) {
    throw invalidField(
      `dimensions must be ${dim}, the embedding size of model '${model.name}' (its vectors are not shortened), ` +
        `got ${body.dimensions}`,
      "dimensions",
    );
  }
  const items = inputItems(body.input, body.modality);
  const at = (kind: InputItem["kind"]) => items.flatMap((it, i) => (it.kind === kind ? [i] : []));
  const [textAt, imageAt] = [at("text"), at("image")];
  const label = (j: number) => `input[${imageAt[j]}]`;
  let out;
  try {
    const images = await Promise.all(
      imageAt.map((i, j) => imageBytes(items[i].value, label(j), req.server.config, req.deadline)),
    );
    out = await embed(
      req,
      model,
      textAt.map((i) => items[i].value),
      images,
      label,
    );
  } catch (e) {
    throw e instanceof ApiError && INPUT_ERRORS.has(e.code) ? withParam(e, "input") : e;
  }
  const vectors: number[][] = new Array(items.length);
  textAt.forEach((i, j) => (vectors[i] = out.texts[j]));
  imageAt.forEach((i, j) => (vectors[i] = out.images[j]));
  const tokens = out.textTokens.reduce((a, b) => a + b, 0) + imageAt.length * model.manifest.model.image_tokens;
  const base64 = body.encoding_format === "base64";
  return {
    object: "list",
    data: vectors.map((v, index) => ({
      object: "embedding",
      index,
      embedding: base64 ? float32Base64(v) : v,
    })),
    model: model.name,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** A vector as OpenAI's base64 encoding: little-endian float32 bytes, standard base64. */
export function float32Base64(v: number[]): string {
  const buf = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf.toString("base64");
}
