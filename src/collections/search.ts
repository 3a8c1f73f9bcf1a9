// Search, BLIP's two stages over a collection: stage one, the ITC cosine of the query with the items' vectors over
// the ANN index (pgvector HNSW; a filter keeps scanning until enough rows pass); stage two (rerank "itm"), the top
// rerank_k re-scored by the ITM head as /v1/rank does: score = ITM match logit + ITC cosine.
import type { FastifyInstance } from "fastify";
import { invalidField } from "../errors.js";
import type { FusedRow } from "../inference/graphs.js";
import { rankResults } from "../postprocess/rank.js";
import { preprocessImage } from "../preprocess/image.js";
import { cleanText } from "../preprocess/text.js";
import type { ServedModel } from "../services/models.js";
import { withEnc } from "../routes/rank.js";
import { l2normalise } from "../routes/task.js";
import type { Filter } from "./filter.js";
import type { Collections } from "./service.js";
import type { CollectionInfo, Target } from "./store.js";
import { decodeHalf } from "./tokens.js";

export interface SearchQuery {
  text?: string;
  pixels?: Float32Array; // the query image, preprocessed
  target: Target;
  limit: number;
  offset: number;
  filter: Filter | null;
  rerank: "itm" | "none";
  rerankK: number;
}

export interface SearchResult {
  id: string;
  score: number;
  itc: number;
  itm: number | null;
  metadata: Record<string, unknown>;
}

export async function searchCollection(
  app: FastifyInstance,
  collections: Collections,
  c: CollectionInfo,
  model: ServedModel,
  q: SearchQuery,
  signal: AbortSignal,
): Promise<SearchResult[]> {
  const rerank = q.rerank === "itm";
  if (rerank) {
    if (q.pixels && q.target === "image")
      throw invalidField('ITM scores image-text pairs: an image query re-ranks texts (target "text"), not images');
    if (!q.pixels && q.target === "text")
      throw invalidField('ITM scores image-text pairs: a text query re-ranks images (target "image"), not texts');
    if (q.target === "image" && !c.storeTokens && !c.storeImages)
      throw invalidField(
        `collection '${c.name}' keeps neither image tokens nor images, so ITM cannot re-rank its images; ` +
          'search with "rerank": "none", or create the collection with store_tokens or store_images',
      );
    if (q.offset + q.limit > q.rerankK)
      throw invalidField(
        `offset + limit (${q.offset + q.limit}) exceeds rerank_k (${q.rerankK}): only the top rerank_k are re-ranked; raise rerank_k`,
      );
  }
  // the query's ITC feature, and its image tokens when ITM will read them
  const max = model.manifest.tokenizer.max_text_tokens;
  const ids =
    q.text !== undefined ? model.tokenizer.encode(cleanText(model.manifest.source, q.text, "caption"), max) : null;
  let vector: number[];
  let queryTokens: Float32Array | null = null;
  if (ids) vector = l2normalise((await app.inference.texts(model, [ids], signal))[0]);
  else {
    const [row] = await app.inference.images(model, [q.pixels!], signal);
    vector = l2normalise(row.feat);
    queryTokens = row.embeds;
  }
  const k = rerank ? q.rerankK : q.offset + q.limit;
  const hits = await collections.use((s) => s.search(c, { target: q.target, vector, k, filter: q.filter }));
  if (!rerank) return hits.slice(q.offset).map((h) => ({ ...h, score: h.itc, itm: null }));

  const candidates = new Map(
    (
      await collections.use((s) =>
        s.candidates(
          c.name,
          hits.map((h) => h.id),
        ),
      )
    ).map((x) => [x.id, x]),
  );
  const live = hits.filter((h) => candidates.has(h.id)); // an item deleted between the two reads drops out
  let rows: FusedRow[];
  if (ids) {
    const encIds = withEnc(model, ids);
    const tokens = await candidateTokens(
      app,
      model,
      live.map((h) => candidates.get(h.id)!),
      signal,
    );
    rows = tokens.map((embeds) => ({ embeds, ids: encIds }));
  } else {
    rows = live.map((h) => {
      const text = candidates.get(h.id)!.text ?? "";
      return { embeds: queryTokens!, ids: withEnc(model, model.tokenizer.encode(text, max)) };
    });
  }
  const itm = rows.length ? await app.inference.itm(model, rows, signal) : [];
  const sims = live.map((h) => h.itc);
  return rankResults(
    sims,
    live.map((_, i) => i),
    itm,
  )
    .slice(q.offset, q.offset + q.limit)
    .map((r) => ({
      id: live[r.index].id,
      score: r.score,
      itc: r.itc_score,
      itm: r.itm_score,
      metadata: live[r.index].metadata,
    }));
}

/** Each candidate's image tokens: the kept fp16 tokens, else recomputed from the kept image by the vision graph. */
async function candidateTokens(
  app: FastifyInstance,
  model: ServedModel,
  candidates: { id: string; tokens: Buffer | null; image: Buffer | null }[],
  signal: AbortSignal,
): Promise<Float32Array[]> {
  const { image_tokens: N, vision_width: Dv } = model.manifest.model;
  const out: (Float32Array | null)[] = candidates.map((c) =>
    c.tokens && c.tokens.length === N * Dv * 2 ? decodeHalf(c.tokens) : null,
  );
  const recompute = candidates.flatMap((c, i) => (out[i] === null && c.image ? [i] : []));
  if (recompute.length) {
    const pixels = await Promise.all(
      recompute.map((i) => preprocessImage(candidates[i].image!, model.image, `item '${candidates[i].id}'`)),
    );
    const rows = await app.inference.images(model, pixels, signal);
    recompute.forEach((i, j) => (out[i] = rows[j].embeds));
  }
  const missing = candidates.filter((_, i) => out[i] === null).map((c) => c.id);
  if (missing.length)
    throw invalidField(
      `ITM cannot re-rank items ${missing.slice(0, 5).join(", ")}: neither their tokens nor their images are kept`,
    );
  return out as Float32Array[];
}
