// Items in: each item checked on its own (id, metadata, text, image bytes from base64, a data URI, an allowed URL or
// a multipart file, decoded and resized as every route does), then the good ones embedded in batches through the
// inference queues (ITC features; the image tokens where the collection keeps them). A bad item becomes an error
// outcome naming its index; it does not sink the others.
import type { FastifyInstance } from "fastify";
import { ApiError, toApiError } from "../errors.js";
import type { ImageRow } from "../inference/graphs.js";
import { imageSourceBytes, urlPolicy } from "../preprocess/fetch.js";
import { preprocessImage } from "../preprocess/image.js";
import { cleanText } from "../preprocess/text.js";
import type { ServedModel } from "../services/models.js";
import { l2normalise } from "../routes/task.js";
import type { CollectionInfo, ItemWrite } from "./store.js";
import { encodeHalf } from "./tokens.js";
import { idFault, metadataFault, textFault } from "./validate.js";

export interface ItemInput {
  id?: unknown;
  image?: unknown; // string (base64, data URI, URL) or Buffer (a multipart file)
  text?: unknown;
  metadata?: unknown;
}

export interface Outcome {
  index: number; // the item's position in the request (or line number in an import)
  id: string | null;
  status: "ok" | "error";
  error?: { code: string; message: string };
}

const MAX_TEXT_CHARS = 2000;

class ItemFault extends Error {}

/** Embeds `items` for collection `c` with `model`; the writes of the good items and every item's outcome. */
export async function embedItems(
  app: FastifyInstance,
  c: CollectionInfo,
  model: ServedModel,
  items: ItemInput[],
  signal: AbortSignal,
  index: (i: number) => number = (i) => i,
): Promise<{ writes: ItemWrite[]; outcomes: Outcome[] }> {
  const seen = new Set<string>();
  const cfg = app.config;
  const prepared = await Promise.allSettled(
    items.map(async (it, i) => {
      const label = `items[${index(i)}]`;
      if (it === null || typeof it !== "object") throw new ItemFault(`${label} must be an object`);
      if (typeof it.id !== "string") throw new ItemFault(`${label}.id must be a string`);
      const id = it.id;
      const idBad = idFault(id);
      if (idBad) throw new ItemFault(`${label}.${idBad}`);
      if (seen.has(id)) throw new ItemFault(`${label}: id '${id}' appears earlier in this request`);
      seen.add(id);
      const metadata = it.metadata ?? {};
      const metaBad = metadataFault(metadata, cfg.collectionsMaxMetadataBytes);
      if (metaBad) throw new ItemFault(`${label}.${metaBad}`);
      let text: string | null = null;
      if (it.text !== undefined && it.text !== null) {
        if (typeof it.text !== "string") throw new ItemFault(`${label}.text must be a string`);
        if ([...it.text].length > MAX_TEXT_CHARS)
          throw new ItemFault(`${label}.text is longer than ${MAX_TEXT_CHARS} characters`);
        const bad = textFault(it.text);
        if (bad) throw new ItemFault(`${label}.${bad}`);
        text = it.text;
      }
      let bytes: Buffer | null = null;
      let pixels: Float32Array | null = null;
      if (it.image !== undefined && it.image !== null) {
        if (typeof it.image === "string")
          bytes = await imageSourceBytes(it.image, `${label}.image`, {
            policy: urlPolicy(cfg),
            fileLimitBytes: cfg.fileLimitBytes,
            signal,
          });
        else if (Buffer.isBuffer(it.image)) bytes = it.image;
        else throw new ItemFault(`${label}.image must be a string (base64, data URI or URL) or a file part`);
        pixels = await preprocessImage(bytes, model.image, `${label}.image`);
      }
      if (text === null && pixels === null) throw new ItemFault(`${label} has neither an image nor a text`);
      return { id, text, metadata: metadata as Record<string, unknown>, bytes, pixels };
    }),
  );
  signal.throwIfAborted();

  const good = prepared.flatMap((p, i) => (p.status === "fulfilled" ? [{ i, ...p.value }] : []));
  const withImage = good.filter((g) => g.pixels !== null);
  const withText = good.filter((g) => g.text !== null);
  const [imageRows, textFeats] = await Promise.all([
    withImage.length
      ? app.inference.images(
          model,
          withImage.map((g) => g.pixels!),
          signal,
        )
      : Promise.resolve([] as ImageRow[]),
    withText.length
      ? app.inference.texts(
          model,
          withText.map((g) =>
            model.tokenizer.encode(
              cleanText(model.manifest.source, g.text!, "caption"),
              model.manifest.tokenizer.max_text_tokens,
            ),
          ),
          signal,
        )
      : Promise.resolve([] as Float32Array[]),
  ]);
  const imageOf = new Map(withImage.map((g, j) => [g.i, imageRows[j]]));
  const textOf = new Map(withText.map((g, j) => [g.i, textFeats[j]]));

  const writes = good.map((g): ItemWrite => {
    const im = imageOf.get(g.i);
    const tf = textOf.get(g.i);
    return {
      id: g.id,
      text: g.text,
      metadata: g.metadata,
      image: c.storeImages ? g.bytes : null,
      tokens: c.storeTokens && im ? encodeHalf(im.embeds) : null,
      imageEmb: im ? l2normalise(im.feat) : null,
      textEmb: tf ? l2normalise(tf) : null,
    };
  });
  const outcomes = prepared.map((p, i): Outcome => {
    if (p.status === "fulfilled") return { index: index(i), id: p.value.id, status: "ok" };
    const e = p.reason instanceof ItemFault ? new ApiError("invalid_field", p.reason.message) : toApiError(p.reason);
    if (e.code === "internal" || e.status === 429 || e.status === 503) throw p.reason; // not the item's fault
    const id = typeof items[i]?.id === "string" ? (items[i].id as string).slice(0, 128) : null;
    return { index: index(i), id, status: "error", error: { code: e.code, message: e.message } };
  });
  return { writes, outcomes };
}
