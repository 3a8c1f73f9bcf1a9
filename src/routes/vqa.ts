// POST /v1/vqa: an image and a question -> a generated answer, BLIP's way: the question is encoded with
// cross-attention over the image ([ENC] question), then the decoder generates the answer greedily from it.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { answerQuestions, imageUses } from "./generation.js";
import { prepareImages, requireTask, taskRoute } from "./task.js";
import { Image, ModelField, Text } from "./schemas.js";

const Body = Type.Object({ image: Image, question: Text, model: ModelField }, { additionalProperties: false });

const Reply = Type.Object({
  model: Type.String(),
  answer: Type.String(),
  score: Type.Number({ description: "probability of the generated answer under the decoder (its [SEP] included)" }),
});

const route = taskRoute({
  summary: "Answer a question about an image",
  body: Body,
  reply: Reply,
  form: {
    fields: ["model", "question"],
    files: ["image"],
    parts: "one `image` file part and a `question` field (optional `model`)",
    toBody: (f) => ({ image: f.file("image"), question: f.one("question"), model: f.one("model") }),
  },
});

const vqa: FastifyPluginAsyncTypebox = async (app) => {
  app.post("/v1/vqa", route, async (req) => {
    const model = app.models.get(req.body.model);
    requireTask(model, "answer");
    const [pixels] = await prepareImages(req, model, [req.body.image], () => "image");
    const [image] = await app.inference.keptImages(model, [pixels], imageUses(model, "answer"), req.deadline);
    const [answer] = await answerQuestions(req, model, [image], [req.body.question]);
    return { model: model.name, ...answer };
  });
};

export default vqa;
