// POST /v1/embeddings: texts and/or images -> L2-normalised embeddings in the shared ITC space.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { invalidField } from "../errors.js";
import { at, l2normalise, prepareImages, prepareTexts, taskRoute } from "./task.js";
import { Image, MAX_IMAGES, MAX_TEXT_CHARS, MAX_TEXTS, ModelField } from "./schemas.js";

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

const route = taskRoute({
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

const embeddings: FastifyPluginAsyncTypebox = async (app) => {
  app.post("/v1/embeddings", route, async (req) => {
    const { texts = [], images = [] } = req.body;
    if (texts.length === 0 && images.length === 0) throw invalidField("nothing to embed: send 'texts' and/or 'images'");
    const model = app.models.get(req.body.model);
    const pixels = await prepareImages(req, model, images, at("images"));
    const ids = prepareTexts(req, model, texts);
    const [textFeats, imageRows] = await Promise.all([
      app.inference.texts(model, ids, req.deadline),
      app.inference.images(model, pixels, req.deadline),
    ]);
    return {
      model: model.name,
      dim: model.manifest.model.embed_dim,
      text_embeddings: textFeats.map(l2normalise),
      image_embeddings: imageRows.map((r) => l2normalise(r.feat)),
    };
  });
};

export default embeddings;
