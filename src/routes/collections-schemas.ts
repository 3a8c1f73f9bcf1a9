// Schemas the collection routes share: the collection and item answers, the error statuses they declare.
import Type from "typebox";
import { ErrorBody, TASK_ERRORS } from "./schemas.js";
import type { CollectionInfo, JobRecord } from "../collections/store.js";

/** Error statuses of a collection route: a task route's, and 401 (no or wrong API key) and 409 (conflict). */
export const COLLECTION_ERRORS = { ...TASK_ERRORS, 401: ErrorBody, 409: ErrorBody };

export const NameParams = Type.Object({ name: Type.String({ maxLength: 200, description: "collection name" }) });
export const ItemParams = Type.Object({
  name: Type.String({ maxLength: 200, description: "collection name" }),
  id: Type.String({ maxLength: 300, description: "item id" }),
});
export const JobParams = Type.Object({
  name: Type.String({ maxLength: 200, description: "collection name" }),
  job: Type.String({ maxLength: 200, description: "job id" }),
});

export const Metadata = Type.Record(Type.String(), Type.Unknown(), { description: "a JSON object" });

export const Collection = Type.Object({
  name: Type.String(),
  model: Type.String({ description: "the model that embeds the collection" }),
  weights: Type.String({ description: "sha256 identifying the model's weights that wrote the vectors" }),
  dimensions: Type.Integer(),
  items: Type.Integer(),
  store_images: Type.Boolean(),
  store_tokens: Type.Boolean(),
  created: Type.String({ format: "date-time" }),
});

export function collectionBody(c: CollectionInfo) {
  return {
    name: c.name,
    model: c.model,
    weights: c.weights,
    dimensions: c.dim,
    items: c.items,
    store_images: c.storeImages,
    store_tokens: c.storeTokens,
    created: c.created,
  };
}

export const Job = Type.Object({
  job: Type.String(),
  kind: Type.Enum(["import", "reembed"]),
  status: Type.Enum(["running", "done", "failed"]),
  received: Type.Integer({
    description: "import: lines handled, each committed or failed (resume from the next); reembed: items visited",
  }),
  succeeded: Type.Integer({ description: "items committed" }),
  failed: Type.Integer(),
  errors: Type.Array(
    Type.Object({
      line: Type.Optional(Type.Integer()),
      id: Type.Optional(Type.String()),
      code: Type.String(),
      message: Type.String(),
    }),
    { description: "the first 100 failures" },
  ),
  created: Type.String({ format: "date-time" }),
  updated: Type.String({ format: "date-time" }),
});

export function jobBody(j: JobRecord) {
  const { collection: _, ...rest } = j;
  return rest;
}

export const Outcomes = Type.Array(
  Type.Object({
    index: Type.Integer({ description: "the item's position in the request" }),
    id: Type.Union([Type.String(), Type.Null()]),
    status: Type.Enum(["ok", "error"]),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  }),
);
