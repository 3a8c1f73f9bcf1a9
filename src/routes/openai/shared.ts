// What the OpenAI-compatible routes share: their paths (each answers under /v1 and without it, since clients set
// base_url either way), their route config (API routes whose errors are in OpenAI's envelope), the envelope's
// schema, and the model a request names with the field at fault on a 404.
import type { FastifyInstance } from "fastify";
import Type from "typebox";
import { ApiError, withParam } from "../../errors.js";
import type { ServedModel } from "../../services/models.js";

/** `owned_by` of every model in GET /v1/models: the server that serves it. */
export const OWNED_BY = "dlip-serve";

/** An OpenAI route's paths: `/v1/embeddings` and `/embeddings` for "/embeddings"; one handler serves both. */
export const openaiPaths = (path: string): string[] => [`/v1${path}`, path];

/** Route config of an OpenAI route: admitted and given a deadline as /v1 routes are; errors in OpenAI's envelope. */
export const OPENAI_ROUTE = { api: true, dialect: "openai" } as const;

export const OpenAIErrorBody = Type.Object(
  {
    error: Type.Object({
      message: Type.String({ description: "what was wrong (5xx messages are masked)" }),
      type: Type.String({ description: "invalid_request_error, authentication_error, rate_limit_error, server_error" }),
      param: Type.Union([Type.String(), Type.Null()], { description: "the request field at fault, where one is" }),
      code: Type.Union([Type.String(), Type.Null()], { description: "our error code (README, Errors)" }),
    }),
  },
  { description: "OpenAI's error envelope" },
);

/** The model a request names (or the default); 404 with `param: "model"` for one not served. */
export function namedModel(app: FastifyInstance, name: string | undefined): ServedModel {
  try {
    return app.models.get(name);
  } catch (e) {
    throw e instanceof ApiError ? withParam(e, "model") : e;
  }
}
