// POST /v1/chat/completions (and /chat/completions, for clients whose base URL has no /v1): captions and VQA
// answers in OpenAI's chat format, for the openai SDKs and everything built on them. The request's last user message
// holds one image and maybe a text (chat-request.ts says how it is read); the answer comes from the same steps as
// /v1/captions and /v1/vqa (routes/generation.ts), so it is the same text for the same input. `n` choices are the
// n best hypotheses of one beam search. `stream: true` sends Server-Sent Events: a role chunk, one chunk per token as
// the worker decodes it (greedy only), a finish chunk, a usage chunk when asked, `data: [DONE]`, end.
import { randomUUID } from "node:crypto";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import Type from "typebox";
import { continuation, TextStream } from "../../decode/detokenize.js";
import type { GenResult, GenRow, Hypothesis } from "../../decode/search.js";
import type { GenInput } from "../../inference/graphs.js";
import { ApiError, errorBody, toApiError, withParam } from "../../errors.js";
import { imageSourceBytes, urlPolicy } from "../../preprocess/fetch.js";
import type { ServedModel } from "../../services/models.js";
import { answerInputs, captionInputs, imageUses } from "../generation.js";
import { prepareImages, requireTask } from "../task.js";
import { ChatBody, parseChat, type ChatTask } from "./chat-request.js";
import { namedModel, OpenAIErrorBody } from "./shared.js";
import { EventStream } from "./sse.js";

const Usage = Type.Object({
  prompt_tokens: Type.Integer({ description: "the model's image tokens + the text tokens the model read" }),
  completion_tokens: Type.Integer({ description: "generated tokens over all choices ([SEP] not counted)" }),
  total_tokens: Type.Integer(),
});

const ChatCompletion = Type.Object({
  id: Type.String(),
  object: Type.Literal("chat.completion"),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(
    Type.Object({
      index: Type.Integer(),
      message: Type.Object({ role: Type.Literal("assistant"), content: Type.String(), refusal: Type.Null() }),
      logprobs: Type.Null(),
      finish_reason: Type.Union([Type.Literal("stop"), Type.Literal("length")]),
    }),
  ),
  usage: Usage,
});

const ERRORS = Object.fromEntries([400, 401, 404, 413, 415, 429, 500, 503, 504].map((s) => [s, OpenAIErrorBody]));

/** What one request decodes: the decoder input, its prompt prefix (captions) and its prompt token count. */
interface Prepared {
  input: GenInput;
  prefix: number[];
  promptTokens: number;
}

const chat: FastifyPluginAsyncTypebox = async (app) => {
  const policy = urlPolicy(app.config);

  const handler = async (req: FastifyRequest<{ Body: ChatBody }>, reply: FastifyReply) => {
    const task = parseChat(req.body);
    const model = namedModel(app, req.body.model ?? undefined);
    requireTask(model, task.task === "caption" ? "caption" : "answer");
    const { prefix, maxTokens } = budget(model, task);
    const bytes = await blaming(
      imageSourceBytes(task.image, task.imageParam, {
        policy,
        fileLimitBytes: app.config.fileLimitBytes,
        signal: req.deadline,
      }),
      task.imageParam,
    );
    const [pixels] = await blaming(
      prepareImages(req, model, [bytes], () => task.imageParam),
      task.imageParam,
    );
    const row: GenRow = {
      numBeams: task.numBeams,
      maxTokens,
      minTokens: task.task === "caption" ? 1 : 0, // as /v1/captions (at least one word) and /v1/vqa
      numReturn: task.n,
      ...(prefix.length ? { prefix } : {}),
      ...(task.stream ? { stream: true } : {}),
    };
    const N = model.manifest.model.image_tokens;
    let prepared: Prepared;
    if (task.task === "caption") {
      const images = await app.inference.keptImages(model, [pixels], imageUses(model, "caption"), req.deadline);
      const [input] = captionInputs(model, images, row);
      prepared = { input, prefix, promptTokens: N + 1 + prefix.length }; // image tokens, [DEC] and the prompt
    } else {
      const images = await app.inference.keptImages(model, [pixels], imageUses(model, "answer"), req.deadline);
      const [{ input, ids }] = await answerInputs(req, model, images, [task.text!], row);
      prepared = { input, prefix: [], promptTokens: N + ids.length }; // image tokens, [ENC] question [SEP]
    }
    const head = {
      id: `chatcmpl-${randomUUID()}`,
      created: Math.floor(Date.now() / 1000),
      model: model.name,
    };
    if (task.stream) return streamAnswer(req, reply, model, task, prepared, head);
    const [gen] = await app.inference.generate(model, [prepared.input], req.deadline);
    const hyps = hypotheses(gen);
    count(req, model, task, hyps);
    const completion = hyps.reduce((n, h) => n + h.ids.length, 0);
    return {
      ...head,
      object: "chat.completion" as const,
      choices: hyps.map((h, index) => ({
        index,
        message: {
          role: "assistant" as const,
          content: continuation(model.tokenizer, h.ids, prepared.prefix),
          refusal: null,
        },
        logprobs: null,
        finish_reason: finishReason(h),
      })),
      usage: usage(prepared.promptTokens, completion),
    };
  };

  const route = {
    config: { api: true, dialect: "openai" as const },
    schema: {
      summary: "Caption an image or answer a question about it (OpenAI chat completions)",
      description:
        "The last user message is read: one image_url part and optional text (a question; with task caption, the " +
        "caption's prompt). stream: true sends Server-Sent Events (text/event-stream); the schema shown is the " +
        "non-streamed answer.",
      tags: ["openai"],
      body: ChatBody,
      response: { 200: ChatCompletion, ...ERRORS },
    },
  };
  app.post("/v1/chat/completions", route, handler);
  app.post("/chat/completions", route, handler);
};

/** The streamed answer: chunks as the worker reports tokens; errors after the start as an `error` event. */
async function streamAnswer(
  req: FastifyRequest,
  reply: FastifyReply,
  model: ServedModel,
  task: ChatTask,
  prepared: Prepared,
  head: { id: string; created: number; model: string },
): Promise<FastifyReply> {
  const es = new EventStream();
  const chunk = (choices: unknown[], usage?: unknown) => ({
    ...head,
    object: "chat.completion.chunk",
    choices,
    ...(task.includeUsage ? { usage: usage ?? null } : {}),
  });
  const delta = (d: Record<string, string>, finish: string | null = null) =>
    chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }]);
  es.start(reply);
  es.send(delta({ role: "assistant", content: "" }));
  const text = new TextStream(model.tokenizer, prepared.prefix);
  void req.server.inference
    .generate(model, [prepared.input], req.deadline, (_, token) => es.send(delta({ content: text.push(token) })))
    .then(([gen]) => {
      count(req, model, task, [gen]);
      es.send(delta({}, finishReason(gen)));
      if (task.includeUsage) es.send(chunk([], usage(prepared.promptTokens, gen.ids.length)));
    })
    .catch((err: unknown) => {
      const e = toApiError(err);
      if (e.code === "internal") req.log.error({ err }, "stream failed");
      else req.log.info({ code: e.code, msg: e.message }, "stream ended early");
      if (e.code === "client_gone") req.server.metrics.rejected.labels(e.code).inc();
      es.send(errorBody(e, "openai"));
    })
    .finally(() => es.done());
  return reply;
}

/**
 * The prompt prefix (captions with text: its tokens without [CLS] and [SEP]) and the token budget: the request's,
 * or the model's cap (max_caption_tokens / max_answer_tokens). [DEC], prompt and caption stay within the
 * decoder's max_text_tokens positions, the longest sequence the bundle's text stacks are known to take.
 */
function budget(model: ServedModel, task: ChatTask): { prefix: number[]; maxTokens: number } {
  const tk = model.manifest.tokenizer;
  const bad = (msg: string, param: string) => new ApiError("invalid_field", msg, undefined, param);
  let prefix: number[] = [];
  let cap = task.task === "caption" ? tk.max_caption_tokens : tk.max_answer_tokens;
  let why = `the model's ${task.task === "caption" ? "max_caption_tokens" : "max_answer_tokens"}`;
  if (task.task === "caption" && task.text !== null) {
    prefix = model.tokenizer.encode(task.text, tk.max_text_tokens).slice(1, -1);
    const room = tk.max_text_tokens - 1 - prefix.length;
    if (room < 1)
      throw bad(`the caption prompt is ${prefix.length} tokens; at most ${tk.max_text_tokens - 2}`, "messages");
    if (room < cap) [cap, why] = [room, `what the ${prefix.length}-token prompt leaves of max_text_tokens`];
  }
  const maxTokens = task.maxTokens ?? cap;
  if (maxTokens > cap)
    throw bad(
      `${task.maxTokensParam} must be <= ${cap} (${why}) for model '${model.name}', got ${maxTokens}`,
      task.maxTokensParam,
    );
  return { prefix, maxTokens };
}

function hypotheses(gen: GenResult): Hypothesis[] {
  return gen.nbest ?? [gen];
}

function finishReason(h: Hypothesis): "stop" | "length" {
  return h.finish === "length" ? "length" : "stop";
}

function usage(prompt: number, completion: number) {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function count(req: FastifyRequest, model: ServedModel, task: ChatTask, hyps: Hypothesis[]): void {
  const n = hyps.reduce((s, h) => s + h.ids.length, 0);
  req.server.metrics.generatedTokens.labels(model.name, task.task === "caption" ? "captioning" : "vqa").inc(n);
}

/** Client errors of one request field's step carry the field's name (OpenAI's error `param`). */
async function blaming<T>(p: Promise<T>, param: string): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw err instanceof ApiError && err.status < 500 ? withParam(err, param) : err;
  }
}

export default chat;
