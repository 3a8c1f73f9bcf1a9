// POST /v1/embeddings (and /embeddings, for OpenAI clients whose base_url has no /v1): texts and/or images ->
// L2-normalised embeddings in the shared ITC space. Two bodies, told apart by their fields: ours (`texts` /
// `images`, JSON or multipart), answered in our form and our error dialect; OpenAI's (`input`, routes/openai/),
// answered in OpenAI's form and envelope. Both embed through the same step (routes/embed.ts).
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import Type from "typebox";
import { invalidField } from "../errors.js";
import { embed } from "./embed.js";
import {
  checkOpenAIBody,
  isOpenAIBody,
  OpenAIEmbeddingsBody,
  OpenAIEmbeddingsReply,
  openaiEmbeddings,
} from "./openai/embeddings.js";
import { openaiPaths } from "./openai/shared.js";
import { schemaErrorFormatter } from "../schema-errors.js";
import { at, requireTask, taskRoute } from "./task.js";
import { Image, MAX_IMAGES, MAX_TEXT_CHARS, MAX_TEXTS, ModelField, TASK_ERRORS } from "./schemas.js";

const Body = Type.Object(
  {
    texts: Type.Optional(Type.Array(Type.String({ maxLength: MAX_TEXT_CHARS }), { maxItems: MAX_TEXTS })),
    images: Type.Optional(Type.Array(Image, { maxItems: MAX_IMAGES })),
    model: ModelField,
  },
  { additionalProperties: false },
);

const Vectors = Type.Array(Type.Array(Type.Number()));
const Reply = Type.Object({
  model: Type.String(),
  dim: Type.Integer(),
  text_embeddings: Vectors,
  image_embeddings: Vectors,
});

/** An error in either dialect: ours {code, message}, or OpenAI's, which adds `type` and `param`. */
const EitherErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    type: Type.Optional(Type.String()),
    param: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  }),
});

const base = taskRoute({
  summary: "Embed texts and images in the shared retrieval (ITC) space",
  body: Body,
  reply: Reply,
  form: {
    fields: ["model", "text"],
    files: ["image"],
    parts: "`text` fields and/or `image` file parts (optional `model`)",
    toBody: (f) => ({ texts: f.all("text"), images: f.files("image"), model: f.one("model") }),
  },
});

const route = {
  schema: {
    ...base.schema,
    description:
      `Our body (\`texts\` / \`images\`): ${base.schema.description} ` +
      "Or OpenAI's body (`input`), answered in OpenAI's form; mixing both is a 400.",
    body: Type.Union([Body, OpenAIEmbeddingsBody]),
    response: {
      200: Type.Union([Reply, OpenAIEmbeddingsReply]),
      ...Object.fromEntries(Object.keys(TASK_ERRORS).map((s) => [s, EitherErrorBody])),
    },
  },
  /** Reads a form into our body; then picks the body's form and checks it, each in its own error dialect. */
  async preValidation(req: FastifyRequest) {
    await base.preValidation(req);
    if (isOpenAIBody(req.body)) {
      req.errorDialect = "openai";
      checkOpenAIBody(req, req.body);
      return;
    }
    const valid = req.compileValidationSchema(Body, "body");
    if (!valid(req.body)) throw schemaErrorFormatter((valid.errors ?? []) as never, "body");
  },
};

const embeddings: FastifyPluginAsyncTypebox = async (app) => {
  for (const url of openaiPaths("/embeddings")) {
    app.post(url, { ...route, config: { api: true } }, async (req) => {
      if ("input" in req.body) return openaiEmbeddings(req, req.body);
      const { texts = [], images = [] } = req.body;
      if (texts.length === 0 && images.length === 0)
        throw invalidField("nothing to embed: send 'texts' and/or 'images' (or OpenAI's 'input')");
      const model = app.models.get(req.body.model);
      requireTask(model, "embed");
      const out = await embed(req, model, texts, images, at("images"));
      return {
        model: model.name,
        dim: model.manifest.model.embed_dim,
        text_embeddings: out.texts,
        image_embeddings: out.images,
      };
    });
  }
};

export default embeddings;
