// Schemas shared by the routes: the error body and the error statuses every task route declares.
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

export const ModelField = Type.Optional(
  Type.String({ minLength: 1, maxLength: 128, description: "model name (default: the server's default model)" }),
);

// no minLength: Ajv would count an image's characters one code point at a time (a scan of every base64 image);
// the handlers refuse an empty image with their own 400 invalid_image
export const ImageString = Type.String({
  description: "image bytes as base64 or a data URI (data:image/png;base64,...); URLs are not fetched",
});

export const MAX_IMAGES = 32; // images per captions / embeddings request
export const MAX_TEXTS = 256; // texts per embeddings request, candidates per rank request
export const MAX_TEXT_CHARS = 2000; // characters per text (tokens are truncated to the model's maximum anyway)

/** Characters as the JSON schema's maxLength counts them (Unicode code points), for the multipart path's checks. */
export function charCount(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** The multipart variant of a route, for the OpenAPI description (validated in the handler, not by Ajv). */
export function multipartNote(parts: string): string {
  return `JSON body as described, or multipart/form-data with ${parts}.`;
}
