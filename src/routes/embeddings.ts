// POST /v1/embeddings: texts and/or images -> L2-normalised embeddings in the shared ITC space.
import type { FastifyInstance } from "fastify";
import Type, { type Static } from "typebox";
import type { Config } from "../config.js";
import { invalidField } from "../errors.js";
import { guard } from "./input.js";
import { imageBytes, l2normalise, prepareImages, prepareTexts, readInput } from "./common.js";
import {
  ImageString,
  MAX_IMAGES,
  MAX_TEXT_CHARS,
  charCount,
  MAX_TEXTS,
  ModelField,
  multipartNote,
  TASK_ERRORS,
} from "./schemas.js";

const Body = Type.Object(
  {
    texts: Type.Optional(Type.Array(Type.String({ maxLength: MAX_TEXT_CHARS }), { maxItems: MAX_TEXTS })),
    images: Type.Optional(Type.Array(ImageString, { maxItems: MAX_IMAGES })),
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

type Input = Omit<Static<typeof Body>, "images"> & { images?: (string | Buffer)[] };

export default async function embeddings(app: FastifyInstance, { config }: { config: Config }) {
  app.post(
    "/v1/embeddings",
    {
      schema: {
        summary: "Embed texts and images in the shared retrieval (ITC) space",
        description: multipartNote("`text` fields and/or `image` file parts (optional `model`)"),
        tags: ["tasks"],
        body: { content: { "application/json": { schema: Body } } },
        response: { 200: Reply, ...TASK_ERRORS },
      },
    },
    async (req) => {
      const input = await readInput<Input>(req, config, { fields: ["model", "text"], files: ["image"] }, (f) => ({
        texts: f.all("text"),
        images: f.files("image"),
        model: f.one("model"),
      }));
      const texts = input.texts ?? [];
      const images = input.images ?? [];
      if (texts.length === 0 && images.length === 0)
        throw invalidField("nothing to embed: send 'texts' and/or 'images'");
      if (texts.length > MAX_TEXTS) throw invalidField(`at most ${MAX_TEXTS} texts per request, got ${texts.length}`);
      if (images.length > MAX_IMAGES)
        throw invalidField(`at most ${MAX_IMAGES} images per request, got ${images.length}`);
      const long = texts.findIndex((t) => charCount(t) > MAX_TEXT_CHARS);
      if (long >= 0) throw invalidField(`texts[${long}] is longer than ${MAX_TEXT_CHARS} characters`);
      const model = app.models.get(input.model);
      const label = (i: number) => `images[${i}]`;
      const pixels = await prepareImages(app, req, model, imageBytes(images, label, config), label);
      const ids = prepareTexts(app, model, texts, model.manifest.tokenizer.max_text_tokens);
      const [textFeats, imageRows] = await guard(
        req.deadline,
        Promise.all([app.inference.texts(model, ids, req.deadline), app.inference.images(model, pixels, req.deadline)]),
      );
      return {
        model: model.name,
        dim: model.manifest.model.embed_dim,
        text_embeddings: textFeats.map(l2normalise),
        image_embeddings: imageRows.map((r) => l2normalise(r.feat)),
      };
    },
  );
}
