// The error taxonomy: every failure a client can cause maps to one of these, and one handler (app.ts) turns them
// into an error body with the right status. 4xx messages say exactly what was wrong; 5xx are masked. The body's
// shape is the dialect of the API the request spoke (errorBody): ours {"error": {"code", "message"}}, OpenAI's
// {"error": {"message", "type", "param", "code"}}, or KServe v2's {"error": "message"}.

export type ErrorCode =
  | "invalid_json"
  | "invalid_field"
  | "invalid_image"
  | "unauthorized"
  | "unknown_model"
  | "unsupported_task"
  | "not_found"
  | "already_exists"
  | "model_changed"
  | "body_too_large"
  | "file_too_large"
  | "image_too_large"
  | "unsupported_media_type"
  | "unsupported_image_format"
  | "queue_full"
  | "not_ready"
  | "draining"
  | "worker_lost"
  | "store_unavailable"
  | "deadline_exceeded"
  | "client_gone"
  | "internal";

const STATUS: Record<ErrorCode, number> = {
  invalid_json: 400,
  invalid_field: 400,
  invalid_image: 400,
  unauthorized: 401,
  unknown_model: 404,
  unsupported_task: 400,
  not_found: 404,
  already_exists: 409, // a collection name or import job id taken
  model_changed: 409, // a collection's vectors came from weights the server no longer serves (re-embed it)
  body_too_large: 413,
  file_too_large: 413,
  image_too_large: 413,
  unsupported_media_type: 415,
  unsupported_image_format: 415,
  queue_full: 429,
  not_ready: 503,
  draining: 503,
  worker_lost: 503, // a row's inference worker was lost (exited or hung) twice: README, Reliability
  store_unavailable: 503, // the collections database is unreachable or restarting (Retry-After)
  deadline_exceeded: 504,
  client_gone: 499, // never sent (the client left); logged and counted
  internal: 500,
};

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterS?: number,
    readonly param?: string, // the request field at fault, where one is (OpenAI's error `param`)
  ) {
    super(message);
    this.status = STATUS[code];
  }
}

/** Why an inference worker was lost: it threw outside a run, it exited (terminate()), or its run hung (watchdog). */
export type LossReason = "error" | "exit" | "stuck";

/**
 * Not an answer: the worker running a job was lost (it exited, or hung and was replaced) before the job finished.
 * The batcher runs the job's rows again elsewhere, once; a row lost twice is answered 503 `worker_lost`.
 */
export class WorkerLost extends Error {
  constructor(
    readonly worker: number,
    readonly reason: LossReason,
    message: string,
  ) {
    super(message);
  }
}

/** The 503 for a row that cannot run again after its worker was lost (lost twice, or its tokens already streamed). */
export const workerLost = (why: string) => new ApiError("worker_lost", `${why}; the request can be retried`, 1);

export const invalidField = (message: string, param?: string) =>
  new ApiError("invalid_field", message, undefined, param);

/** `e` naming the request field at fault (OpenAI's `param`), unless it names one already. */
export const withParam = (e: ApiError, param: string): ApiError =>
  e.param ? e : new ApiError(e.code, e.message, e.retryAfterS, param);
export const invalidImage = (message: string) => new ApiError("invalid_image", message);

/** Maps errors thrown by Fastify and its plugins (by their code) onto the taxonomy; unknown errors become 500. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as {
    code?: string;
    statusCode?: number;
    message?: string;
    validation?: unknown;
    validationContext?: string;
  };
  const msg = e?.message ?? String(err);
  if (e?.validation) return new ApiError("invalid_field", msg);
  switch (e?.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ApiError("invalid_json", `invalid JSON body: ${msg}`);
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError("body_too_large", "request body is larger than the body limit (BODY_LIMIT_BYTES)");
    case "FST_REQ_FILE_TOO_LARGE":
      return new ApiError("file_too_large", "an uploaded file is larger than the per-file limit (FILE_LIMIT_BYTES)");
    case "FST_FILES_LIMIT":
    case "FST_PARTS_LIMIT":
    case "FST_FIELDS_LIMIT":
      return new ApiError("body_too_large", `too many multipart parts: ${msg}`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new ApiError(
        "unsupported_media_type",
        "unsupported content type: send application/json or multipart/form-data",
      );
    case "FST_PROTO_VIOLATION":
      return new ApiError("invalid_field", `multipart field name is not allowed: ${msg}`);
  }
  if (e instanceof SyntaxError) return new ApiError("invalid_json", `invalid JSON body: ${msg}`);
  const status = e?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    // any other client error Fastify or busboy raises (bad content-length, malformed multipart...)
    if (status === 413) return new ApiError("body_too_large", msg);
    if (status === 415) return new ApiError("unsupported_media_type", msg);
    return new ApiError("invalid_field", msg);
  }
  if (/Unexpected end of form|Malformed part header|Multipart: Boundary not found|Part terminated early/i.test(msg)) {
    return new ApiError("invalid_field", `malformed multipart body: ${msg}`);
  }
  return new ApiError("internal", "internal error");
}

/** The error body shapes, one per API surface; a route names its own (route config `dialect`). */
export type ErrorDialect = "dlip" | "openai" | "kserve";

/** OpenAI's error `type` for a status (what its SDKs map to exception classes by status anyway). */
function openaiType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 429) return "rate_limit_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

/** The body of an error answer in the request's dialect (the status is `e.status`, 499 sent as 400). */
export function errorBody(e: ApiError, dialect: ErrorDialect): unknown {
  switch (dialect) {
    case "openai":
      return { error: { message: e.message, type: openaiType(e.status), param: e.param ?? null, code: e.code } };
    case "kserve":
      return { error: e.message };
    default:
      return { error: { code: e.code, message: e.message } };
  }
}
