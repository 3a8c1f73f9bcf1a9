// The body of POST /v1/chat/completions, and what it asks of us. The schema types the fields we read and leaves the
// rest open (the SDKs add fields over time); `parseChat` reads the messages and options into one task:
//   - the LAST message whose role is "user" is read; earlier messages (system, developer, assistant, other user
//     turns) are accepted and not read: each request is one image and at most one text;
//   - its content: a string, or parts `{"type":"text","text"}` and `{"type":"image_url","image_url":{"url"}}`
//     (`image_url` may be a bare string; `detail` is ignored); exactly one image (none or several: 400);
//   - no text: a caption; text: a question (VQA); `task` overrides: "caption" with text makes the text the caption's
//     prompt (the decoder starts from [DEC] + its tokens), "vqa" needs text;
//   - sampling parameters are ignored (decoding is greedy or beam search, so temperature, top_p, seed, the
//     penalties and logit_bias change nothing); what we cannot honour is refused with a 400 naming it: stop
//     sequences, logprobs, tools/functions, non-text response formats or modalities.
import Type, { type Static } from "typebox";
import { ApiError } from "../../errors.js";
import { MAX_BEAMS } from "../captions.js";
import { MAX_TEXT_CHARS } from "../schemas.js";

const Opt = <T extends ReturnType<typeof Type.Integer | typeof Type.Boolean | typeof Type.String>>(t: T) =>
  Type.Optional(Type.Union([t, Type.Null()]));

export const ChatBody = Type.Object(
  {
    model: Opt(Type.String({ minLength: 1, maxLength: 128, description: "bundle name (default: the default model)" })),
    messages: Type.Array(
      Type.Object(
        {
          role: Type.String({
            description: "system, developer, user, assistant or tool; only the last user message is read",
          }),
          content: Type.Optional(Type.Unknown({ description: "a string or a list of text / image_url parts" })),
        },
        { additionalProperties: true },
      ),
      { minItems: 1, maxItems: 256 },
    ),
    task: Opt(Type.String({ description: "extension: caption or vqa (default: caption without text, vqa with text)" })),
    max_completion_tokens: Opt(Type.Integer({ minimum: 1 })),
    max_tokens: Opt(Type.Integer({ minimum: 1, description: "deprecated OpenAI name of max_completion_tokens" })),
    n: Opt(Type.Integer({ minimum: 1, description: `beam hypotheses, best first (at most ${MAX_BEAMS})` })),
    num_beams: Opt(Type.Integer({ minimum: 1, description: "extension: beam width (default n; 1 = greedy)" })),
    stream: Opt(Type.Boolean()),
    stream_options: Type.Optional(
      Type.Union([Type.Object({ include_usage: Opt(Type.Boolean()) }, { additionalProperties: true }), Type.Null()]),
    ),
  },
  { additionalProperties: true },
);
export type ChatBody = Static<typeof ChatBody>;

export interface ChatTask {
  task: "caption" | "vqa";
  image: string; // the image reference (data URI, base64 or URL)
  imageParam: string; // where it is: messages[i].content[j].image_url
  text: string | null; // the question (vqa) or the caption prompt; null: none
  maxTokens: number | null; // asked for; null: the model's cap
  maxTokensParam: string;
  n: number;
  numBeams: number;
  stream: boolean;
  includeUsage: boolean;
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool", "function"]);

const bad = (message: string, param: string) => new ApiError("invalid_field", message, undefined, param);

export function parseChat(body: ChatBody): ChatTask {
  refuseUnsupported(body as Record<string, unknown>);
  body.messages.forEach((m, i) => {
    if (!ROLES.has(m.role))
      throw bad(`messages[${i}].role must be one of ${[...ROLES].join(", ")}`, `messages[${i}].role`);
  });
  const at = body.messages.map((m) => m.role).lastIndexOf("user");
  if (at < 0) throw bad("messages has no user message: send the image (and a question) in a user message", "messages");
  const { images, texts } = contentParts(body.messages[at].content, `messages[${at}].content`);
  if (images.length === 0)
    throw bad(
      `messages[${at}] (the last user message, the one read) has no image: this server captions images and answers ` +
        "questions about them; add an image_url part (a data URI, base64 or an allowed URL)",
      `messages[${at}].content`,
    );
  if (images.length > 1)
    throw bad(
      `messages[${at}] has ${images.length} images; one image per request (send one request per image)`,
      images[1].param,
    );
  const text = texts.join(" ").trim() || null;
  if (text !== null && [...text].length > MAX_TEXT_CHARS)
    throw bad(`the text of messages[${at}] is longer than ${MAX_TEXT_CHARS} characters`, `messages[${at}].content`);
  const task = body.task ?? (text === null ? "caption" : "vqa");
  if (task !== "caption" && task !== "vqa") throw bad("task must be caption or vqa", "task");
  if (task === "vqa" && text === null)
    throw bad(`task vqa needs a question: add a text part to messages[${at}]`, `messages[${at}].content`);

  const n = body.n ?? 1;
  if (n > MAX_BEAMS) throw bad(`n must be <= ${MAX_BEAMS} (hypotheses of one beam search), got ${n}`, "n");
  const numBeams = body.num_beams ?? n;
  if (numBeams > MAX_BEAMS) throw bad(`num_beams must be <= ${MAX_BEAMS}, got ${numBeams}`, "num_beams");
  if (numBeams < n) throw bad(`num_beams (${numBeams}) must be >= n (${n}): the n choices are its best beams`, "n");
  const stream = body.stream === true;
  if (stream && numBeams > 1)
    throw bad(
      "stream: true sends greedy tokens as they are decoded; a beam search (n > 1 or num_beams > 1) knows its " +
        "answer only at the end: set stream false",
      "stream",
    );
  const given = body.max_completion_tokens ?? body.max_tokens ?? null;
  return {
    task,
    image: images[0].ref,
    imageParam: images[0].param,
    text,
    maxTokens: given,
    maxTokensParam: body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens",
    n,
    numBeams,
    stream,
    includeUsage: stream && body.stream_options?.include_usage === true,
  };
}

/** A message's content: its image references and texts, with where each one is. */
function contentParts(content: unknown, where: string): { images: { ref: string; param: string }[]; texts: string[] } {
  if (typeof content === "string") return { images: [], texts: [content] };
  if (!Array.isArray(content)) throw bad(`${where} must be a string or a list of content parts`, where);
  const images: { ref: string; param: string }[] = [];
  const texts: string[] = [];
  content.forEach((part: unknown, j) => {
    const p = part as Record<string, unknown> | null;
    const here = `${where}[${j}]`;
    if (typeof p !== "object" || p === null || Array.isArray(p)) throw bad(`${here} must be an object`, here);
    if (p.type === "text") {
      if (typeof p.text !== "string") throw bad(`${here}.text must be a string`, `${here}.text`);
      texts.push(p.text);
    } else if (p.type === "image_url") {
      const v = p.image_url as unknown;
      const url = typeof v === "string" ? v : (v as Record<string, unknown> | null)?.url;
      if (typeof url !== "string" || url.length === 0)
        throw bad(`${here}.image_url must be {"url": string} or a string`, `${here}.image_url`);
      images.push({ ref: url, param: `${here}.image_url` });
    } else
      throw bad(
        `${here}.type must be text or image_url, got ${JSON.stringify(p.type)?.slice(0, 40) ?? "nothing"}`,
        `${here}.type`,
      );
  });
  return { images, texts };
}

/** Options whose meaning we cannot honour: a 400 naming them, rather than an answer that ignores them. */
function refuseUnsupported(b: Record<string, unknown>): void {
  const present = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
  if (present(b.stop) && b.stop !== "")
    throw bad("stop sequences are not supported: captions and answers end at the model's own end token", "stop");
  if (b.logprobs === true || (typeof b.top_logprobs === "number" && b.top_logprobs > 0))
    throw bad("logprobs are not supported", b.logprobs === true ? "logprobs" : "top_logprobs");
  for (const k of ["tools", "functions"])
    if (present(b[k])) throw bad(`${k} are not supported: this model captions images and answers questions`, k);
  const tc = b.tool_choice ?? b.function_call;
  if (present(tc) && tc !== "none" && tc !== "auto")
    throw bad("tool calls are not supported", b.tool_choice !== undefined ? "tool_choice" : "function_call");
  const rf = b.response_format as { type?: unknown } | null | undefined;
  if (present(rf) && rf?.type !== "text")
    throw bad("response_format must be text: this model writes plain text", "response_format");
  const mod = b.modalities;
  if (present(mod) && !(Array.isArray(mod) && mod.every((x) => x === "text")))
    throw bad("modalities must be [text]", "modalities");
  if (present(b.audio)) throw bad("audio output is not supported", "audio");
}
