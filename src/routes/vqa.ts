// POST /v1/vqa: an image and a question -> a generated answer, BLIP's way: the question is encoded with
// cross-attention over the image ([ENC] question), then the decoder generates the answer greedily from it.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import Type from "typebox";
import { answerContext, type ImageRow } from "../inference/graphs.js";
import type { ServedModel } from "../services/models.js";
import { prepareImages, prepareTexts, taskRoute } from "./task.js";
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
    const [pixels] = await prepareImages(req, model, [req.body.image], () => "image");
    const [image] = await app.inference.images(model, [pixels], req.deadline);
    const [answer] = await answerQuestions(req, model, [image], [req.body.question]);
    return { model: model.name, ...answer };
  });
};

export default vqa;

/** Answers to questions, question i about encoded image i (the step /v1/vqa and the v2 `answer` output share). */
export async function answerQuestions(
  req: FastifyRequest,
  model: ServedModel,
  images: ImageRow[],
  questions: string[],
): Promise<{ answer: string; score: number }[]> {
  const { inference, metrics } = req.server;
  const tk = model.manifest.tokenizer;
  const ids = prepareTexts(req, model, questions, tk.special_tokens.enc);
  const states = await inference.questions(
    model,
    images.map((im, i) => ({ embeds: im.embeds, ids: ids[i] })),
    req.deadline,
  );
  const readsImage = model.manifest.model.vqa_decoder_reads_image === true;
  const row = { numBeams: 1, maxTokens: tk.max_answer_tokens, minTokens: 0 }; // greedy, as the Python evaluation
  const answers = await inference.generate(
    model,
    states.map((q, i) => ({ ...answerContext(q, images[i], readsImage), row })),
    req.deadline,
  );
  metrics.generatedTokens.labels(model.name, "vqa").inc(answers.reduce((n, a) => n + a.ids.length, 0));
  return answers.map((a) => ({ answer: model.tokenizer.decode(a.ids), score: Math.exp(a.logprob) }));
}
