// Schemas shared by the routes: the error body, the error statuses every task route declares, the fields and limits
// task bodies share, and the multipart limits that follow from them.
import Type from "typebox";

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: "machine-readable error code, e.g. invalid_field, queue_full" }),
      message: Type.String({ description: "what was wrong (5xx messages are masked)" }),
    }),
  },
  { $id: "ErrorBody", description: "Every error answer" },
);

/** Error statuses of a task route (besides 200). */
export const TASK_ERRORS = {
  400: ErrorBody,
  404: ErrorBody,
  413: ErrorBody,
  415: ErrorBody,
  429: ErrorBody,
  500: ErrorBody,
  503: ErrorBody,
  504: ErrorBody,
};

export const MAX_IMAGES = 32; // images per captions / embeddings request
export const MAX_TEXTS = 256; // texts per embeddings request, candidates per rank request
export const MAX_TEXT_CHARS = 2000; // characters per text (tokens are truncated to the model's maximum anyway)

export const ModelField = Type.Optional(
  Type.String({ minLength: 1, maxLength: 128, description: "model name (default: the server's default model)" }),
);

/** Ajv's `pattern` for "not blank": JavaScript's \s is exactly what String.prototype.trim removes. */
export const NON_BLANK = "\\S";

/** A text to encode: 1 to MAX_TEXT_CHARS characters (Unicode code points, as Ajv counts them), not all blank. */
export const Text = Type.String({ minLength: 1, maxLength: MAX_TEXT_CHARS, pattern: NON_BLANK });

// no minLength: Ajv would count an image's characters one code point at a time (a scan of every base64 image);
// the handlers refuse an empty image with their own 400 invalid_image
export const ImageString = Type.String({
  description: "image bytes as base64 or a data URI (data:image/png;base64,...); URLs are not fetched",
});

/** The `bytes` keyword (registered with Ajv in app.ts): a Buffer, which only a converted multipart form holds. */
export const BYTES_KEYWORD = {
  keyword: "bytes",
  schemaType: "boolean" as const,
  validate: (_schema: boolean, data: unknown) => Buffer.isBuffer(data),
  errors: false,
};

/**
 * An image slot of a task body: a string in a JSON body; in a multipart form, converted to the JSON body's shape
 * (routes/task.ts), the bytes of a file part, kept as they are (JSON cannot produce a Buffer).
 */
export const Image = Type.Union([
  ImageString,
  Type.Unsafe<Buffer>({ bytes: true, description: "multipart only: the bytes of an image file part" }),
]);

// Multipart limits (busboy), from the most parts a route takes: /v1/rank, MAX_TEXTS candidates (image file parts or
// text fields), its query and three option fields. The slack lets a form a few parts over a route's limit get that
// route's 400 naming the limit rather than the parser's 413 "too many parts".
const FORM_SLACK = 44;
export const FORM_LIMITS = {
  files: MAX_TEXTS + FORM_SLACK,
  fields: MAX_TEXTS + FORM_SLACK,
  parts: 2 * (MAX_TEXTS + FORM_SLACK),
  // busboy truncates a longer field silently; 64 KiB is well past 4 UTF-8 bytes x (MAX_TEXT_CHARS + 1), so a
  // truncated text still fails the schema's maxLength instead of passing as a shorter one
  fieldSize: 64 * 1024,
  headerPairs: 64,
};
