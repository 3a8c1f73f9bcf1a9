// POST /v1/rank: retrieval. A text query ranks candidate images, an image query ranks candidate texts: ITC cosine
// first, then (rerank "itm", the default) the top k re-ranked by ITM, BLIP's protocol.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import Type from "typebox";
import { fusionFirstToken } from "../bundle/contract.js";
import { invalidField } from "../errors.js";
import type { FusedRow } from "../inference/graphs.js";
import { dot, rankResults, topK } from "../postprocess/rank.js";
import type { ServedModel } from "../services/models.js";
import type { Form } from "./input.js";
import { at, prepareImages, prepareTexts, requireTask, taskRoute } from "./task.js";
import { Image, MAX_TEXTS, ModelField, Text } from "./schemas.js";

const DEFAULT_TOP_K = 10;

const Body = Type.Object(
  {
    query: Type.Union([
      Type.Object({ text: Text }, { additionalProperties: false }),
      Type.Object({ image: Image }, { additionalProperties: false }),
    ]),
    candidates: Type.Array(Image, {
      minItems: 1,
      maxItems: MAX_TEXTS,
      description: "texts for an image query, images (base64 / data URI) for a text query",
    }),
    rerank: Type.Optional(Type.Enum(["itm", "none"], { description: "itm (default): ITC top-k re-ranked by ITM" })),
    top_k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_TEXTS,
        description: `results returned (and re-ranked); default ${DEFAULT_TOP_K}`,
      }),
    ),
    model: ModelField,
  },
  {
    additionalProperties: false,
    // an image query ranks texts: its candidates are texts
    if: { properties: { query: { type: "object", required: ["image"] } } },
    then: { properties: { candidates: { type: "array", items: Text } } },
  },
);

const Reply = Type.Object({
  model: Type.String(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      score: Type.Number(),
      itc_score: Type.Number(),
      itm_score: Type.Union([Type.Number(), Type.Null()]),
    }),
  ),
});

const route = taskRoute({
  summary: "Rank candidates of the other modality against a text or image query",
  body: Body,
  reply: Reply,
  form: {
    fields: ["model", "query", "text", "rerank", "top_k"],
    files: ["query_image", "image"],
    parts:
      "a `query_image` file part with `text` fields as candidates, or a `query` text field with `image` file parts as candidates (optional `rerank`, `top_k`, `model` fields)",
    toBody,
  },
});

/** A query's ITC cosine with every candidate, and the ITM input of (query, candidate i). */
interface Scored {
  sims: number[];
  pair: (i: number) => FusedRow;
}

const rank: FastifyPluginAsyncTypebox = async (app) => {
  app.post("/v1/rank", route, async (req) => {
    const { query, candidates, top_k = DEFAULT_TOP_K, rerank = "itm" } = req.body;
    const model = app.models.get(req.body.model);
    requireTask(model, "rank");
    const scored =
      "text" in query
        ? await textQuery(req, model, query.text, candidates)
        : await imageQuery(req, model, query.image, candidates as string[]); // texts: the schema's `then`
    const top = topK(scored.sims, top_k);
    const itm = rerank === "itm" ? await app.inference.itm(model, top.map(scored.pair), req.deadline) : null;
    return { model: model.name, results: rankResults(scored.sims, top, itm) };
  });
};

export default rank;

async function textQuery(
  req: FastifyRequest,
  model: ServedModel,
  text: string,
  images: (string | Buffer)[],
): Promise<Scored> {
  const pixels = await prepareImages(req, model, images, at("candidates"));
  const [ids] = prepareTexts(req, model, [text]);
  const { inference } = req.server;
  const [[q], feats] = await Promise.all([
    inference.texts(model, [ids], req.deadline),
    inference.images(model, pixels, req.deadline),
  ]);
  const encIds = withEnc(model, ids);
  return {
    sims: feats.map((im) => dot(q, im.feat)),
    pair: (i) => ({ embeds: feats[i].embeds, ids: encIds }),
  };
}

async function imageQuery(
  req: FastifyRequest,
  model: ServedModel,
  image: string | Buffer,
  texts: string[],
): Promise<Scored> {
  const [pixels] = await prepareImages(req, model, [image], () => "query.image");
  const ids = prepareTexts(req, model, texts);
  const { inference } = req.server;
  const [[q], feats] = await Promise.all([
    inference.images(model, [pixels], req.deadline),
    inference.texts(model, ids, req.deadline),
  ]);
  return {
    sims: feats.map((f) => dot(q.feat, f)),
    pair: (i) => ({ embeds: q.embeds, ids: withEnc(model, ids[i]) }),
  };
}

/** The ITM input's token row: [ENC] in place of [CLS] (also the v2 `itm_score` output's). */
export function withEnc(model: ServedModel, ids: number[]): number[] {
  return [fusionFirstToken(model.manifest), ...ids.slice(1)];
}

/** The form as a body: a `query_image` file with `text` candidates, or a `query` field with `image` candidates. */
function toBody(f: Form): Record<string, unknown> {
  const queryImage = f.file("query_image");
  const query = f.one("query");
  const options = { rerank: f.one("rerank"), top_k: f.int("top_k"), model: f.one("model") };
  if (queryImage !== undefined && query !== undefined)
    throw invalidField("send either a 'query_image' file part or a 'query' field, not both");
  if (queryImage !== undefined) {
    if (f.files("image").length)
      throw invalidField("an image query takes 'text' fields as candidates, not 'image' files");
    return { query: { image: queryImage }, candidates: f.all("text"), ...options };
  }
  if (query === undefined) throw invalidField("no query: send a 'query_image' file part or a 'query' text field");
  if (f.all("text").length)
    throw invalidField("a text query takes 'image' file parts as candidates, not 'text' fields");
  return { query: { text: query }, candidates: f.files("image"), ...options };
}
