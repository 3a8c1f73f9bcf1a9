// POST /v1/vqa: an image and a question -> a generated answer, BLIP's way: the question is encoded with
// cross-attention over the image ([ENC] question), then the decoder generates the answer greedily from it.
import type { FastifyInstance } from "fastify";
import Type, { type Static } from "typebox";
import type { Config } from "../config.js";
import { invalidField } from "../errors.js";
import { guard } from "./input.js";
import { imageBytes, prepareImages, prepareTexts, readInput } from "./common.js";
import { answerContext } from "../inference/graphs.js";
import { charCount, ImageString, MAX_TEXT_CHARS, ModelField, multipartNote, TASK_ERRORS } from "./schemas.js";

const Body = Type.Object(
  {
    image: ImageString,
    question: Type.String({ minLength: 1, maxLength: MAX_TEXT_CHARS }),
    model: ModelField,
  },
  { additionalProperties: false },
);

const Reply = Type.Object({
  model: Type.String(),
  answer: Type.String(),
  score: Type.Number({ description: "probability of the generated answer under the decoder (its [SEP] included)" }),
});

type Input = Omit<Static<typeof Body>, "image"> & { image: string | Buffer | undefined };

export default async function vqa(app: FastifyInstance, { config }: { config: Config }) {
  app.post(
    "/v1/vqa",
    {
      schema: {
        summary: "Answer a question about an image",
        description: multipartNote("one `image` file part and a `question` field (optional `model`)"),
        tags: ["tasks"],
        body: { content: { "application/json": { schema: Body } } },
        response: { 200: Reply, ...TASK_ERRORS },
      },
    },
    async (req) => {
      const input = await readInput<Input>(req, config, { fields: ["model", "question"], files: ["image"] }, (f) => {
        const files = f.files("image");
        if (files.length > 1) throw invalidField(`send one 'image' file part, got ${files.length}`);
        return { image: files[0], question: f.one("question") ?? "", model: f.one("model") };
      });
      if (input.image === undefined)
        throw invalidField("no image: send 'image' (JSON) or an 'image' file part (multipart)");
      if (input.question.trim() === "") throw invalidField("'question' must be a non-empty string");
      if (charCount(input.question) > MAX_TEXT_CHARS)
        throw invalidField(`'question' is longer than ${MAX_TEXT_CHARS} characters`);
      const model = app.models.get(input.model);
      const tk = model.manifest.tokenizer;
      const [pixels] = await prepareImages(
        app,
        req,
        model,
        imageBytes([input.image], () => "image", config),
        () => "image",
      );
      const [ids] = prepareTexts(app, model, [input.question], tk.max_text_tokens, tk.special_tokens.enc);
      const [image] = await guard(req.deadline, app.inference.images(model, [pixels], req.deadline));
      const [q] = await guard(
        req.deadline,
        app.inference.questions(model, [{ embeds: image.embeds, ids }], req.deadline),
      );
      const row = { numBeams: 1, maxTokens: tk.max_answer_tokens, minTokens: 0 }; // greedy, as the Python evaluation
      const context = answerContext(q, image, model.manifest.model.vqa_decoder_reads_image === true);
      const [answer] = await guard(req.deadline, app.inference.generate(model, [{ ...context, row }], req.deadline));
      app.metrics.generatedTokens.labels(model.name, "vqa").inc(answer.ids.length);
      return { model: model.name, answer: model.tokenizer.decode(answer.ids), score: Math.exp(answer.logprob) };
    },
  );
}
