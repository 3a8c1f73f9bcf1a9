// POST /v1/rank: retrieval. A text query ranks candidate images, an image query ranks candidate texts: ITC cosine
// first, then (rerank "itm", the default) the top k re-ranked by ITM, BLIP's protocol.
import type { FastifyInstance, FastifyRequest } from "fastify";
import Type from "typebox";
import type { Config } from "../config.js";
import { invalidField } from "../errors.js";
import { dot, rankResults, topK } from "../postprocess/rank.js";
import type { ServedModel } from "../plugins/sessions.js";
import { guard, type Form } from "./input.js";
import { imageBytes, prepareImages, prepareTexts, readInput } from "./common.js";
import {
  charCount,
  ImageString,
  MAX_TEXT_CHARS,
  MAX_TEXTS,
  ModelField,
  multipartNote,
  TASK_ERRORS,
} from "./schemas.js";

const DEFAULT_TOP_K = 10;
const RERANK = ["itm", "none"] as const;

const Body = Type.Object(
  {
    query: Type.Union([
      Type.Object({ text: Type.String({ minLength: 1, maxLength: MAX_TEXT_CHARS }) }, { additionalProperties: false }),
      Type.Object({ image: ImageString }, { additionalProperties: false }),
    ]),
    candidates: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      maxItems: MAX_TEXTS,
      description: "texts for an image query, images (base64 / data URI) for a text query",
    }),
    rerank: Type.Optional(
      Type.Union([Type.Literal("itm"), Type.Literal("none")], {
        description: "itm (default): ITC top-k re-ranked by ITM",
      }),
    ),
    top_k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_TEXTS,
        description: `results returned (and re-ranked); default ${DEFAULT_TOP_K}`,
      }),
    ),
    model: ModelField,
  },
  { additionalProperties: false },
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

interface Input {
  query: { text?: string; image?: string | Buffer };
  candidates: (string | Buffer)[];
  rerank?: (typeof RERANK)[number];
  top_k?: number;
  model?: string;
}

export default async function rank(app: FastifyInstance, { config }: { config: Config }) {
  app.post(
    "/v1/rank",
    {
      schema: {
        summary: "Rank candidates of the other modality against a text or image query",
        description: multipartNote(
          "a `query_image` file part with `text` fields as candidates, or a `query` text field with `image` file parts as candidates (optional `rerank`, `top_k`, `model` fields)",
        ),
        tags: ["tasks"],
        body: { content: { "application/json": { schema: Body } } },
        response: { 200: Reply, ...TASK_ERRORS },
      },
    },
    async (req) => {
      const input = await readInput<Input>(
        req,
        config,
        { fields: ["model", "query", "text", "rerank", "top_k"], files: ["query_image", "image"] },
        fromForm,
      );
      const model = app.models.get(input.model);
      const k = input.top_k ?? DEFAULT_TOP_K;
      const rerank = (input.rerank ?? "itm") === "itm";
      const results =
        input.query.text !== undefined
          ? await textQuery(app, req, model, input.query.text, input.candidates, k, rerank)
          : await imageQuery(app, req, model, input.query.image!, input.candidates as string[], k, rerank);
      return { model: model.name, results };
    },
  );

  function fromForm(f: Form): Input {
    const queryImages = f.files("query_image");
    const query = f.one("query");
    const common = { rerank: f.choice("rerank", RERANK), top_k: f.int("top_k", 1, MAX_TEXTS), model: f.one("model") };
    if (queryImages.length > 1) throw invalidField(`send one 'query_image' file part, got ${queryImages.length}`);
    if (queryImages.length === 1 && query !== undefined)
      throw invalidField("send either a 'query_image' file part or a 'query' field, not both");
    if (queryImages.length === 1) {
      if (f.files("image").length)
        throw invalidField("an image query takes 'text' fields as candidates, not 'image' files");
      return { query: { image: queryImages[0] }, candidates: f.all("text"), ...common };
    }
    if (query === undefined) throw invalidField("no query: send a 'query_image' file part or a 'query' text field");
    if (f.all("text").length)
      throw invalidField("a text query takes 'image' file parts as candidates, not 'text' fields");
    return { query: { text: query }, candidates: f.files("image"), ...common };
  }

  function checkCandidates(n: number) {
    if (n === 0) throw invalidField("no candidates");
    if (n > MAX_TEXTS) throw invalidField(`at most ${MAX_TEXTS} candidates, got ${n}`);
  }

  async function textQuery(
    app: FastifyInstance,
    req: FastifyRequest,
    model: ServedModel,
    text: string,
    cands: (string | Buffer)[],
    k: number,
    rerank: boolean,
  ) {
    checkCandidates(cands.length);
    if (text.trim() === "" || charCount(text) > MAX_TEXT_CHARS)
      throw invalidField(`'query' text must have 1 to ${MAX_TEXT_CHARS} characters`);
    const tk = model.manifest.tokenizer;
    const label = (i: number) => `candidates[${i}]`;
    const pixels = await prepareImages(app, req, model, imageBytes(cands, label, config), label);
    const [ids] = prepareTexts(app, model, [text], tk.max_text_tokens);
    const [[qFeat], images] = await guard(
      req.deadline,
      Promise.all([app.inference.texts(model, [ids], req.deadline), app.inference.images(model, pixels, req.deadline)]),
    );
    const sims = images.map((im) => dot(qFeat, im.feat));
    const top = topK(sims, k);
    if (!rerank) return rankResults(sims, top, null);
    const encIds = [tk.special_tokens.enc, ...ids.slice(1)];
    const itm = await guard(
      req.deadline,
      app.inference.itm(
        model,
        top.map((i) => ({ embeds: images[i].embeds, ids: encIds })),
        req.deadline,
      ),
    );
    return rankResults(sims, top, itm);
  }

  async function imageQuery(
    app: FastifyInstance,
    req: FastifyRequest,
    model: ServedModel,
    image: string | Buffer,
    texts: string[],
    k: number,
    rerank: boolean,
  ) {
    checkCandidates(texts.length);
    const long = texts.findIndex((t) => charCount(t) > MAX_TEXT_CHARS || t.trim() === "");
    if (long >= 0)
      throw invalidField(
        `candidates[${long}] must be a text of 1 to ${MAX_TEXT_CHARS} characters (an image query ranks texts)`,
      );
    const tk = model.manifest.tokenizer;
    const [pixels] = await prepareImages(
      app,
      req,
      model,
      imageBytes([image], () => "query.image", config),
      () => "query.image",
    );
    const ids = prepareTexts(app, model, texts, tk.max_text_tokens);
    const [[q], feats] = await guard(
      req.deadline,
      Promise.all([app.inference.images(model, [pixels], req.deadline), app.inference.texts(model, ids, req.deadline)]),
    );
    const sims = feats.map((f) => dot(q.feat, f));
    const top = topK(sims, k);
    if (!rerank) return rankResults(sims, top, null);
    const itm = await guard(
      req.deadline,
      app.inference.itm(
        model,
        top.map((i) => ({ embeds: q.embeds, ids: [tk.special_tokens.enc, ...ids[i].slice(1)] })),
        req.deadline,
      ),
    );
    return rankResults(sims, top, itm);
  }
}
