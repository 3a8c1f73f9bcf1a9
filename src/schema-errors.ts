// Schema validation errors as one sentence naming the field, for every route's compiled schema (Fastify's
// schemaErrorFormatter) and for routes that validate a body against a schema of their own (embeddings' two forms).
import { NON_BLANK } from "./routes/schemas.js";

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Schema errors as one sentence naming the field: "body.images[2] must be string". */
export function schemaErrorFormatter(errors: AjvError[], dataVar: string): Error {
  const where = (path: string) =>
    dataVar +
    path
      .split("/")
      .slice(1)
      .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
      .join("");
  // a rank query matches neither form: the error inside the field it gives ("body.query.text is blank"), else what
  // the two forms are (an image slot's anyOf, a string or multipart bytes, puts the string branch's error first)
  const query = errors.find((e) => e.keyword === "anyOf" && e.instancePath.endsWith("/query"));
  const inQuery = query && errors.find((e) => e.instancePath.startsWith(`${query.instancePath}/`));
  const e = inQuery ?? query ?? errors[0];
  let msg: string;
  if (e === query) msg = `${where(e.instancePath)} must be {"text": string} or {"image": base64 string}`;
  else if (e.keyword === "additionalProperties")
    msg = `${where(e.instancePath)} has an unknown field '${String(e.params.additionalProperty).slice(0, 64)}'`;
  else if (e.keyword === "required")
    msg = `${where(e.instancePath)} is missing the field '${String(e.params.missingProperty)}'`;
  else if (e.keyword === "maxLength") msg = `${where(e.instancePath)} is longer than ${e.params.limit} characters`;
  else if (e.keyword === "pattern" && e.params.pattern === NON_BLANK) msg = `${where(e.instancePath)} is blank`;
  else if (e.keyword === "enum")
    msg = `${where(e.instancePath)} must be one of ${(e.params.allowedValues as unknown[]).join(", ")}`;
  else msg = `${where(e.instancePath)} ${e.message ?? "is invalid"}`;
  return Object.assign(new Error(msg), { validation: errors });
}
