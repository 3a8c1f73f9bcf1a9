// What the collection routes check beyond their JSON schemas: names, ids, metadata and texts, each refusal a 400 that
// names the field. Names become part of no SQL text (values only), yet they are held to a strict pattern so that
// they read the same in URLs, logs and file names.
import { invalidField } from "../errors.js";

export const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
// at most 100 characters: Fastify matches path parameters up to 100 (maxParamLength), and ids are path parameters
export const ITEM_ID = /^[A-Za-z0-9][A-Za-z0-9._:@+=~-]{0,99}$/;
export const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_LIMIT = 1000; // results per search (and pgvector's largest hnsw.ef_search)
export const MAX_OFFSET = 10_000;
export const MAX_RERANK_K = 256;
export const DEFAULT_RERANK_K = 16;
export const MAX_DELETE_IDS = 1000;

export function checkName(name: string): string {
  if (!NAME.test(name))
    throw invalidField(
      `collection name '${name.slice(0, 80)}' must match ${NAME.source} (lower-case letters, digits, '_' and '-', 1-64 characters)`,
    );
  return name;
}

/** An item id's fault, or null when it is fine. */
export function idFault(id: string): string | null {
  return ITEM_ID.test(id)
    ? null
    : `id '${id.slice(0, 80)}' must match ${ITEM_ID.source} (letters, digits and . _ : @ + = ~ -, 1-100 characters)`;
}

export function checkId(id: string): string {
  const fault = idFault(id);
  if (fault) throw invalidField(fault);
  return id;
}

/** Metadata's fault (not an object, too large, a NUL that PostgreSQL cannot store), or null. */
export function metadataFault(metadata: unknown, maxBytes: number): string | null {
  if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata))
    return "metadata must be a JSON object";
  const json = JSON.stringify(metadata);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes)
    return `metadata is ${bytes} bytes as JSON; at most ${maxBytes} (COLLECTIONS_MAX_METADATA_BYTES)`;
  if (json.includes("\\u0000")) return "metadata holds a NUL character (\\u0000), which cannot be stored";
  if (LONE_SURROGATE.test(json)) return "metadata holds a lone UTF-16 surrogate, which is not Unicode text";
  return null;
}

// JSON.stringify writes a lone surrogate (half of a UTF-16 pair) as an escape, which PostgreSQL's jsonb refuses
export const LONE_SURROGATE = /(?<!\\)(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/i;

export function textFault(text: string): string | null {
  if (text.trim() === "") return "text is blank";
  if (text.includes("\u0000")) return "text holds a NUL character, which cannot be stored";
  return null;
}
