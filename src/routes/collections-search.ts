// POST /v1/collections/{name}/search: a text finds images (or texts, target "text"); an image finds texts (or
// similar images, target "image"). ITC cosine over the ANN index, then with rerank "itm" the top rerank_k re-ranked
// by the ITM head (score = ITM logit + ITC cosine, as /v1/rank). JSON, or multipart with an `image` file part.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import Type from "typebox";
import { ApiError, invalidField } from "../errors.js";
import { parseFilter } from "../collections/filter.js";
import { searchCollection } from "../collections/search.js";
import { checkName, DEFAULT_RERANK_K, MAX_LIMIT, MAX_OFFSET, MAX_RERANK_K } from "../collections/validate.js";
import { imageSourceBytes, urlPolicy } from "../preprocess/fetch.js";
import { preprocessImage } from "../preprocess/image.js";
import { COLLECTION_ERRORS, Metadata, NameParams } from "./collections-schemas.js";
import { Form, readMultipart } from "./input.js";
import { Image, Text } from "./schemas.js";

const DEFAULT_LIMIT = 10;

const Body = Type.Object(
  {
    text: Type.Optional(Text),
    image: Type.Optional(Image),
    target: Type.Optional(
      Type.Enum(["image", "text"], { description: "what is searched: default image for a text, text for an image" }),
    ),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_LIMIT, description: `results (default ${DEFAULT_LIMIT})` }),
    ),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_OFFSET, description: "results skipped (paging)" })),
    filter: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description:
          'metadata conditions, all holding: {"key": value} (equality), {"key": {"in": [...]}}, {"key": {"gte": 1, "lt": 5}} (also gt, lte; numbers)',
      }),
    ),
    rerank: Type.Optional(
      Type.Enum(["itm", "none"], { description: "itm: re-rank the top rerank_k by ITM (default none)" }),
    ),
    rerank_k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_RERANK_K,
        description: `candidates re-ranked (default ${DEFAULT_RERANK_K}); offset + limit must not exceed it`,
      }),
    ),
  },
  { additionalProperties: false },
);

const Reply = Type.Object({
  results: Type.Array(
    Type.Object({
      id: Type.String(),
      score: Type.Number({ description: "itm + itc when re-ranked, else itc" }),
      itc: Type.Number({ description: "cosine similarity of the ITC features" }),
      itm: Type.Union([Type.Number(), Type.Null()], { description: "ITM match logit (null without re-ranking)" }),
      metadata: Metadata,
    }),
    { description: "best first" },
  ),
});

const FIELDS = ["text", "target", "limit", "offset", "filter", "rerank", "rerank_k"];

/** The multipart form as the JSON body: an `image` file part or a `text` field, the options as fields. */
async function formBody(req: FastifyRequest): Promise<Record<string, unknown>> {
  const f = new Form(await readMultipart(req, req.server.config, { fields: FIELDS, files: ["image"] }));
  let filter: unknown;
  const rawFilter = f.one("filter");
  if (rawFilter !== undefined) {
    try {
      filter = JSON.parse(rawFilter);
    } catch {
      throw invalidField("the 'filter' field must be a JSON object");
    }
  }
  return {
    text: f.one("text"),
    image: f.file("image"),
    target: f.one("target"),
    limit: f.int("limit"),
    offset: f.int("offset"),
    filter,
    rerank: f.one("rerank"),
    rerank_k: f.int("rerank_k"),
  };
}

const search: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    "/v1/collections/:name/search",
    {
      schema: {
        summary: "Search a collection by text or image; optionally re-rank by ITM",
        description:
          "JSON body as described (exactly one of `text`, `image`), or multipart/form-data with an `image` file part or a `text` field and the options as fields (`filter` as JSON).",
        tags: ["collections"],
        params: NameParams,
        body: Body,
        response: { 200: Reply, ...COLLECTION_ERRORS },
      },
      async preValidation(req) {
        if (req.isMultipart()) {
          const body = await formBody(req);
          req.body = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
        } else if (req.body === undefined) throw new ApiError("invalid_json", "the request has no body");
      },
    },
    async (req) => {
      const b = req.body;
      if ((b.text === undefined) === (b.image === undefined))
        throw invalidField(
          "give exactly one of 'text' (finds images) and 'image' (finds texts, or images with target \"image\")",
        );
      const filter = b.filter === undefined ? null : parseFilter(b.filter);
      const c = await app.collections.get(checkName(req.params.name));
      const model = app.collections.modelFor(c);
      let pixels: Float32Array | undefined;
      if (b.image !== undefined) {
        const cfg = app.config;
        const bytes =
          typeof b.image === "string"
            ? await imageSourceBytes(b.image, "image", {
                policy: urlPolicy(cfg),
                fileLimitBytes: cfg.fileLimitBytes,
                signal: req.deadline,
              })
            : b.image;
        pixels = await preprocessImage(bytes, model.image, "image");
      }
      const results = await searchCollection(
        app,
        app.collections,
        c,
        model,
        {
          text: b.text,
          pixels,
          target: b.target ?? (b.text !== undefined ? "image" : "text"),
          limit: b.limit ?? DEFAULT_LIMIT,
          offset: b.offset ?? 0,
          filter,
          rerank: b.rerank ?? "none",
          rerankK: b.rerank_k ?? DEFAULT_RERANK_K,
        },
        req.deadline,
      );
      return { results };
    },
  );
};

export default search;
