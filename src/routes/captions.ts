// POST /v1/captions: images -> captions (greedy or beam search with the key/value cache), in input order.
import type { FastifyInstance } from "fastify";
import Type, { type Static } from "typebox";
import type { Config } from "../config.js";
import { invalidField } from "../errors.js";
import { guard } from "./input.js";
import { imageBytes, prepareImages, readInput } from "./common.js";
import { ImageString, MAX_IMAGES, ModelField, multipartNote, TASK_ERRORS } from "./schemas.js";

export const MAX_BEAMS = 8;

const Body = Type.Object(
  {
    images: Type.Array(ImageString, { minItems: 1, maxItems: MAX_IMAGES }),
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

type Input = Omit<Static<typeof Body>, "images"> & { images: (string | Buffer)[] };

export default async function captions(app: FastifyInstance, { config }: { config: Config }) {
  app.post(
    "/v1/captions",
    {
      schema: {
        summary: "Caption images",
        description: multipartNote(
          "one or more `image` file parts and optional `max_tokens`, `num_beams`, `model` fields",
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
        { fields: ["model", "max_tokens", "num_beams"], files: ["image"] },
        (f) => ({
          images: f.files("image"),
          model: f.one("model"),
          max_tokens: f.int("max_tokens", 1, 10_000),
          num_beams: f.int("num_beams", 1, MAX_BEAMS),
        }),
      );
      if (input.images.length === 0)
        throw invalidField("no images: send 'images' (JSON) or 'image' file parts (multipart)");
      if (input.images.length > MAX_IMAGES)
        throw invalidField(`at most ${MAX_IMAGES} images per request, got ${input.images.length}`);
      const model = app.models.get(input.model);
      const cap = model.manifest.tokenizer.max_caption_tokens;
      const maxTokens = input.max_tokens ?? cap;
      if (maxTokens > cap)
        throw invalidField(`max_tokens must be <= ${cap} for model '${model.name}', got ${maxTokens}`);
      const label = (i: number) => `images[${i}]`;
      const pixels = await prepareImages(app, req, model, imageBytes(input.images, label, config), label);
      const images = await guard(req.deadline, app.inference.images(model, pixels, req.deadline));
      const N = model.manifest.model.image_tokens;
      const row = { numBeams: input.num_beams ?? 1, maxTokens, minTokens: 1 }; // at least one word, as the Python evaluation
      const gen = await guard(
        req.deadline,
        app.inference.generate(
          model,
          images.map((im) => ({ hidden: im.embeds, length: N, row })),
          req.deadline,
        ),
      );
      app.metrics.generatedTokens.labels(model.name, "captioning").inc(gen.reduce((n, g) => n + g.ids.length, 0));
      return {
        model: model.name,
        captions: gen.map((g) => ({ text: model.tokenizer.decode(g.ids), tokens: g.ids.length })),
      };
    },
  );
}
