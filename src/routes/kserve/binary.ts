// The binary tensor data extension of the KServe v2 / Open Inference Protocol (Triton's
// docs/protocol/extension_binary_data.md): a body is a JSON header, its byte length in the
// `Inference-Header-Content-Length` header, followed by raw tensors in input order (little-endian, row-major, no
// padding); a BYTES element is a 4-byte little-endian length and that many bytes. Pure functions: request bodies
// split and checked, tensors decoded and encoded, JSON `data` flattened.
import { ApiError, invalidField } from "../../errors.js";

export const HEADER_LENGTH = "inference-header-content-length";

/** A request body as its JSON header and the binary part after it (empty without the header-length header). */
export function splitBody(
  body: Buffer,
  headerLength: string | string[] | undefined,
): { json: unknown; binary: Buffer } {
  let jsonBytes = body;
  let binary: Buffer = Buffer.alloc(0);
  if (headerLength !== undefined) {
    const raw = Array.isArray(headerLength) ? headerLength.join(",") : headerLength;
    if (!/^\d{1,15}$/.test(raw.trim()))
      throw invalidField(`Inference-Header-Content-Length must be a byte count, got '${raw.slice(0, 32)}'`);
    const n = Number(raw.trim());
    if (n > body.length)
      throw invalidField(
        `Inference-Header-Content-Length is ${n} but the body has only ${body.length} bytes: the JSON header cannot end past the body`,
      );
    jsonBytes = body.subarray(0, n);
    binary = body.subarray(n);
  }
  if (jsonBytes.length === 0) throw new ApiError("invalid_json", "the request has no JSON header");
  let json: unknown;
  try {
    json = JSON.parse(jsonBytes.toString("utf8"));
  } catch (err) {
    const where = headerLength === undefined ? "" : " (the first Inference-Header-Content-Length bytes)";
    throw new ApiError("invalid_json", `invalid JSON header${where}: ${(err as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ApiError("invalid_json", "the JSON header must be an object");
  return { json, binary };
}

/** Cuts the binary part into consecutive pieces of the given sizes, which must add up to exactly its length. */
export function slicePieces(binary: Buffer, pieces: { label: string; size: number }[]): Buffer[] {
  const total = pieces.reduce((n, p) => n + p.size, 0);
  if (total !== binary.length) {
    const sizes = pieces.map((p) => `${p.label}: ${p.size}`).join(", ") || "none";
    throw invalidField(
      `the binary data is ${binary.length} bytes but the inputs' binary_data_size add up to ${total} (${sizes})`,
    );
  }
  let at = 0;
  return pieces.map((p) => binary.subarray(at, (at += p.size)));
}

/** A BYTES tensor's binary data: elements of a 4-byte little-endian length then the bytes. */
export function decodeBytes(data: Buffer, label: string): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 4 > data.length)
      throw invalidField(
        `${label}: BYTES element ${out.length} has a truncated length prefix (${data.length - at} of 4 bytes)`,
      );
    const n = data.readUInt32LE(at);
    if (at + 4 + n > data.length)
      throw invalidField(
        `${label}: BYTES element ${out.length} claims ${n} bytes but only ${data.length - at - 4} remain in its binary_data_size`,
      );
    out.push(data.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** Elements of a BYTES tensor in the binary encoding. */
export function encodeBytes(items: Buffer[]): Buffer {
  const out = Buffer.alloc(items.reduce((n, b) => n + 4 + b.length, 0));
  let at = 0;
  for (const b of items) {
    out.writeUInt32LE(b.length, at);
    b.copy(out, at + 4);
    at += 4 + b.length;
  }
  return out;
}

/** FP32 values, little-endian, in the binary encoding. */
export function encodeFp32(values: ArrayLike<number>): Buffer {
  const out = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i], i * 4);
  return out;
}

/** FP32 binary data back to numbers (used by tests and clients of this module). */
export function decodeFp32(data: Buffer): number[] {
  if (data.length % 4 !== 0) throw invalidField(`FP32 binary data of ${data.length} bytes is not a multiple of 4`);
  return Array.from({ length: data.length / 4 }, (_, i) => data.readFloatLE(i * 4));
}

/** A tensor's JSON `data`, flat (row-major) or nested, as its flat list of elements. */
export function flattenData(data: unknown, label: string): unknown[] {
  if (!Array.isArray(data)) throw invalidField(`${label}: 'data' must be an array`);
  const out: unknown[] = [];
  const walk = (x: unknown[], depth: number) => {
    if (depth > 8) throw invalidField(`${label}: 'data' is nested deeper than 8 levels`);
    for (const e of x) {
      if (Array.isArray(e)) walk(e, depth + 1);
      else out.push(e);
    }
  };
  walk(data, 0);
  return out;
}

/** A response body in the binary form: the JSON header, then the outputs' binary data in order. */
export function encodeBody(header: unknown, parts: Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  return { body: Buffer.concat([json, ...parts]), headerLength: json.length };
}
