// POST /v1/captions: images -> captions (greedy or beam search with the key/value cache), in input order.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { invalidField } from "../errors.js";
import { captionImages, imageUses } from "./generation.js";
import { at, prepareImages, requireTask, taskRoute } from "./task.js";
import { Image, MAX_IMAGES, ModelField } from "./schemas.js";

export const MAX_BEAMS = 8;

const Body = Type.Object(
  {
    images: Type.Array(Image, { minItems: 1, maxItems: MAX_IMAGES }),
    max_tokens: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: "generated tokens at most (default and cap: the model's max_caption_tokens)",
      }),
    ),
    num_beams: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BEAMS, description: "1 = greedy (default)" })),
    model: ModelField,
  },
  { additionalProperties: false },
);

const Reply = Type.Object({
  model: Type.String(),
  captions: Type.Array(
    Type.Object({ text: Type.String(), tokens: Type.Integer({ description: "number of generated tokens" }) }),
  ),
});

const route = taskRoute({
  summary: "Caption images",
  body: Body,
  reply: Reply,
  form: {
    fields: ["model", "max_tokens", "num_beams"],
    files: ["image"],
    parts: "one or more `image` file parts and optional `max_tokens`, `num_beams`, `model` fields",
    toBody: (f) => ({
      images: f.files("image"),
      max_tokens: f.int("max_tokens"),
      num_beams: f.int("num_beams"),
      model: f.one("model"),
    }),
  },
});

const captions: FastifyPluginAsyncTypebox = async (app) => {
  app.post("/v1/captions", route, async (req) => {
    const { images, max_tokens, num_beams = 1 } = req.body;
    const model = app.models.get(req.body.model);
    requireTask(model, "caption");
    const cap = model.manifest.tokenizer.max_caption_tokens;
    const maxTokens = max_tokens ?? cap;
    if (maxTokens > cap) throw invalidField(`max_tokens must be <= ${cap} for model '${model.name}', got ${maxTokens}`);
    const pixels = await prepareImages(req, model, images, at("images"));
    const encoded = await app.inference.keptImages(model, pixels, imageUses(model, "caption"), req.deadline);
    return {
      model: model.name,
      captions: await captionImages(req, model, encoded, { numBeams: num_beams, maxTokens }),
    };
  });
};

export default captions;
