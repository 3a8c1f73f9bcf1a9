// Request input shared by the task routes: multipart/form-data parts (read here, converted by each route into its
// JSON body's shape), image strings to bytes (base64 / data URIs; never fetched from URLs), and the request's
// deadline and client-gone signal.
import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError, invalidField, invalidImage } from "../errors.js";
import type { Config } from "../config.js";

export interface FormInput {
  fields: Map<string, string[]>;
  files: Map<string, Buffer[]>;
}

/** Reads a multipart body: only the named fields and file parts are allowed; each file within FILE_LIMIT_BYTES. */
export async function readMultipart(
  req: FastifyRequest,
  cfg: Config,
  allow: { fields: string[]; files: string[] },
): Promise<FormInput> {
  const fields = new Map<string, string[]>();
  const files = new Map<string, Buffer[]>();
  let total = 0;
  const over = () =>
    new ApiError(
      "body_too_large",
      `multipart body is larger than the body limit of ${cfg.bodyLimitBytes} bytes (BODY_LIMIT_BYTES)`,
    );
  try {
    await readParts();
  } catch (err) {
    // limits (FST_* codes) and our own refusals keep their status; anything else the parser throws is the body's fault
    if (err instanceof ApiError || String((err as { code?: string })?.code ?? "").startsWith("FST_")) throw err;
    throw invalidField(`malformed multipart body: ${String((err as Error)?.message ?? err).slice(0, 200)}`);
  }
  return { fields, files };

  async function readParts(): Promise<void> {
    for await (const part of req.parts({ limits: { fileSize: cfg.fileLimitBytes } })) {
      if (part.type === "file") {
        if (!allow.files.includes(part.fieldname)) {
          part.file.resume(); // drain it, so the parser can go on to the next part
          throw invalidField(
            `unexpected file part '${part.fieldname.slice(0, 64)}' (file parts: ${allow.files.join(", ")})`,
          );
        }
        const data = await part.toBuffer(); // throws FST_REQ_FILE_TOO_LARGE past fileSize (-> 413)
        total += data.length;
        if (total > cfg.bodyLimitBytes) throw over();
        files.set(part.fieldname, [...(files.get(part.fieldname) ?? []), data]);
      } else {
        if (!allow.fields.includes(part.fieldname)) {
          throw invalidField(
            `unexpected field '${part.fieldname.slice(0, 64)}' (fields: ${allow.fields.join(", ") || "none"})`,
          );
        }
        const value = String(part.value);
        total += value.length;
        if (total > cfg.bodyLimitBytes) throw over();
        fields.set(part.fieldname, [...(fields.get(part.fieldname) ?? []), value]);
      }
    }
  }
}

/**
 * A multipart form's parts by name, for a route's conversion into its JSON body's shape. The conversion renames and
 * groups parts; the route's schema then validates the result as it validates JSON (types, ranges, counts, lengths).
 */
export class Form {
  constructor(private readonly input: FormInput) {}

  /** A field given at most once. */
  one(name: string): string | undefined {
    const v = this.input.fields.get(name);
    if (v && v.length > 1) throw invalidField(`field '${name}' is given ${v.length} times; give it once`);
    return v?.[0];
  }

  all(name: string): string[] {
    return this.input.fields.get(name) ?? [];
  }

  /** A file part given at most once. */
  file(name: string): Buffer | undefined {
    const v = this.files(name);
    if (v.length > 1) throw invalidField(`send one '${name}' file part, got ${v.length}`);
    return v[0];
  }

  files(name: string): Buffer[] {
    return this.input.files.get(name) ?? [];
  }

  /** A field holding an integer: a number when it reads as one, else the text, which the schema then refuses. */
  int(name: string): number | string | undefined {
    const raw = this.one(name);
    return raw !== undefined && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : raw;
  }
}

const DATA_URI = /^data:([\w.+-]+\/[\w.+-]+)?(;[\w.+-]+=[\w.+-]+)*;base64,/i;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** A JSON image string (base64, or a data URI with base64 payload) -> bytes. URLs are refused: nothing is fetched. */
export function decodeImageString(s: string, label: string, fileLimitBytes: number): Buffer {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s.slice(0, 16))) {
    throw invalidImage(`${label} is a URL; this server does not fetch images: send the bytes (base64 or multipart)`);
  }
  let payload = s;
  if (s.startsWith("data:")) {
    const m = DATA_URI.exec(s.slice(0, 256));
    if (!m) throw invalidImage(`${label} is a data URI without ';base64,'`);
    payload = s.slice(m[0].length);
  }
  payload = payload.replace(/\s+/g, "");
  if (payload.length === 0) throw invalidImage(`${label} is empty`);
  if (!BASE64.test(payload) || payload.length % 4 === 1) throw invalidImage(`${label} is not valid base64`);
  if (Math.floor((payload.length * 3) / 4) > fileLimitBytes + 3) {
    throw new ApiError(
      "file_too_large",
      `${label} is larger than the per-file limit of ${fileLimitBytes} bytes (FILE_LIMIT_BYTES)`,
    );
  }
  const bytes = Buffer.from(payload, payload.includes("-") || payload.includes("_") ? "base64url" : "base64");
  if (bytes.length > fileLimitBytes)
    throw new ApiError(
      "file_too_large",
      `${label} is larger than the per-file limit of ${fileLimitBytes} bytes (FILE_LIMIT_BYTES)`,
    );
  return bytes;
}

/**
 * The request's abort signal: aborted with 504 deadline_exceeded after REQUEST_TIMEOUT_MS, or with client_gone
 * when the client disconnects before the answer. Queued rows of an aborted request are dropped by the batcher.
 */
export function requestSignal(req: FastifyRequest, reply: FastifyReply, timeoutMs: number): AbortSignal {
  const ctl = new AbortController();
  const timer = setTimeout(
    () =>
      ctl.abort(
        new ApiError("deadline_exceeded", `the request did not finish within ${timeoutMs} ms (REQUEST_TIMEOUT_MS)`),
      ),
    timeoutMs,
  );
  timer.unref();
  reply.raw.once("close", () => {
    clearTimeout(timer);
    if (!reply.raw.writableFinished) ctl.abort(new ApiError("client_gone", "the client disconnected"));
  });
  req.log.debug({ timeoutMs }, "deadline set");
  return ctl.signal;
}
