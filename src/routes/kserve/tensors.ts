// The v2 model every bundle is: its input and output tensors (the metadata lists exactly these), and an inference
// request's tensors checked against them (names, datatypes, shapes, pairing, limits) and decoded from JSON `data`
// or the binary part (binary.ts) into what the shared task steps take: image files, texts, questions.
import Type, { type Static } from "typebox";
import { ApiError, invalidField } from "../../errors.js";
import type { ServedModel } from "../../services/models.js";
import { MAX_IMAGES, MAX_TEXT_CHARS, MAX_TEXTS } from "../schemas.js";
import { TASK_OF, type Operation } from "../task.js";
import { decodeBytes, flattenData, slicePieces } from "./binary.js";

export const INPUTS = ["image", "text", "question"] as const;
export type InputName = (typeof INPUTS)[number];

export const OUTPUTS = ["caption", "answer", "image_embedding", "text_embedding", "itm_score"] as const;
export type OutputName = (typeof OUTPUTS)[number];

/** The inputs an output is computed from; `pairs` are read row by row together, so their N must agree. */
const NEEDS: Record<OutputName, { inputs: InputName[]; paired: boolean }> = {
  caption: { inputs: ["image"], paired: false },
  answer: { inputs: ["image", "question"], paired: true }, // question i about image i
  image_embedding: { inputs: ["image"], paired: false },
  text_embedding: { inputs: ["text"], paired: false },
  itm_score: { inputs: ["image", "text"], paired: true }, // image i with text i
};

/** The operation (and so the bundle task, routes/task.ts) each output is: a bundle offers only those it serves. */
export const OPERATION_OF: Record<OutputName, Operation> = {
  caption: "caption",
  answer: "answer",
  image_embedding: "embed",
  text_embedding: "embed",
  itm_score: "rank",
};

/** The outputs a model serves (its bundle's tasks), in OUTPUTS order. */
export function servedOutputs(model: ServedModel): OutputName[] {
  return OUTPUTS.filter((o) => model.manifest.tasks.includes(TASK_OF[OPERATION_OF[o]].task));
}

/** Most elements per input: images as /v1/captions and /v1/embeddings, texts as /v1/embeddings. */
const MAX_ELEMENTS: Record<InputName, number> = { image: MAX_IMAGES, text: MAX_TEXTS, question: MAX_IMAGES };

const Parameters = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]));

const TensorMeta = Type.Object({
  name: Type.String(),
  datatype: Type.String(),
  shape: Type.Array(Type.Integer()),
});

export const ModelMetadata = Type.Object({
  name: Type.String(),
  versions: Type.Array(Type.String()),
  platform: Type.String(),
  inputs: Type.Array(TensorMeta),
  outputs: Type.Array(TensorMeta),
  // the protocol's optional model parameters (as MLServer's metadata): which graphs serve the model
  parameters: Type.Object({
    precision: Type.Enum(["fp32", "int8", "fp16"], {
      description:
        "the bundle's float graphs (fp32), its dynamic-quantised ones (int8) or its float16 ones (fp16): PRECISION",
    }),
    tasks: Type.String({
      description: "the bundle's tasks, comma-separated (retrieval, captioning, vqa): outputs lists only theirs",
    }),
  }),
});

/**
 * GET /v2/models/{model}: the tensors of the model a bundle serves (-1: a variable dimension, N): the outputs of its
 * tasks, and the inputs they read.
 */
export function modelMetadata(model: ServedModel): Static<typeof ModelMetadata> {
  const D = model.manifest.model.embed_dim;
  const shape: Record<OutputName, number[]> = {
    caption: [-1],
    answer: [-1],
    image_embedding: [-1, D],
    text_embedding: [-1, D],
    itm_score: [-1],
  };
  const outputs = servedOutputs(model);
  const read = new Set(outputs.flatMap((o) => NEEDS[o].inputs));
  return {
    name: model.name,
    versions: [model.manifest.version],
    platform: "dlip_onnx",
    inputs: INPUTS.filter((i) => read.has(i)).map((name) => ({ name, datatype: "BYTES", shape: [-1] })),
    outputs: outputs.map((name) => ({ name, datatype: datatypeOf(name), shape: shape[name] })),
    parameters: { precision: model.precision, tasks: model.manifest.tasks.join(",") },
  };
}

export function datatypeOf(name: OutputName): "BYTES" | "FP32" {
  return name === "caption" || name === "answer" ? "BYTES" : "FP32";
}

export const InferRequest = Type.Object(
  {
    id: Type.Optional(Type.String({ maxLength: 256 })),
    parameters: Type.Optional(Parameters),
    inputs: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          shape: Type.Array(Type.Integer({ minimum: 0 })),
          datatype: Type.String(),
          parameters: Type.Optional(Parameters),
          data: Type.Optional(Type.Unknown()),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: INPUTS.length },
    ),
    outputs: Type.Optional(
      Type.Array(
        Type.Object({ name: Type.String(), parameters: Type.Optional(Parameters) }, { additionalProperties: false }),
        { maxItems: OUTPUTS.length },
      ),
    ),
  },
  { additionalProperties: false },
);
export type InferRequest = Static<typeof InferRequest>;

/** A request's decoded inputs: images as files (Buffers) or base64 strings (JSON), texts and questions as text. */
export interface Inputs {
  image?: (string | Buffer)[];
  text?: string[];
  question?: string[];
}

/** A requested output and whether it is answered in the binary part. */
export interface Wanted {
  name: OutputName;
  binary: boolean;
}

const list = (xs: readonly string[]) => xs.join(", ");

/** The request's outputs (in order) and inputs, checked against the model and decoded. */
export function readRequest(
  body: InferRequest,
  binary: Buffer,
  fileLimitBytes: number,
): { inputs: Inputs; outputs: Wanted[] } {
  const outputs = readOutputs(body);
  const given = new Map<InputName, InferRequest["inputs"][number]>();
  for (const t of body.inputs) {
    if (!(INPUTS as readonly string[]).includes(t.name))
      throw invalidField(`unknown input '${t.name.slice(0, 64)}' (inputs: ${list(INPUTS)})`);
    if (given.has(t.name as InputName)) throw invalidField(`input '${t.name}' is given twice`);
    given.set(t.name as InputName, t);
  }
  const needed = new Set(outputs.flatMap((o) => NEEDS[o.name].inputs));
  for (const o of outputs) {
    const missing = NEEDS[o.name].inputs.filter((i) => !given.has(i));
    if (missing.length) throw invalidField(`output '${o.name}' needs the input(s) ${list(missing)}`);
  }
  for (const name of given.keys()) {
    if (!needed.has(name))
      throw invalidField(
        `input '${name}' is not used by the requested outputs (${list(outputs.map((o) => o.name))}); leave it out or request an output that reads it`,
      );
  }

  // the binary part holds, in input order, the data of every input that has a binary_data_size
  const pieces = body.inputs.map((t) => ({ label: `input '${t.name}'`, size: binarySize(t) }));
  const data = slicePieces(
    binary,
    pieces.filter((p): p is { label: string; size: number } => p.size !== undefined),
  );
  const inputs: Inputs = {};
  let next = 0;
  body.inputs.forEach((t, i) => {
    const name = t.name as InputName;
    const elements = readElements(t, pieces[i].size === undefined ? undefined : data[next++]);
    if (name === "image") inputs.image = elements.map((e, j) => image(e, j, fileLimitBytes));
    else inputs[name] = elements.map((e, j) => text(name, e, j));
  });

  for (const o of outputs) {
    const [a, b] = NEEDS[o.name].inputs;
    if (NEEDS[o.name].paired && inputs[a]!.length !== inputs[b]!.length)
      throw invalidField(
        `output '${o.name}' pairs ${a} i with ${b} i: got ${inputs[a]!.length} ${a} and ${inputs[b]!.length} ${b} elements`,
      );
  }
  return { inputs, outputs };
}

function readOutputs(body: InferRequest): Wanted[] {
  const params = body.parameters ?? {};
  for (const k of Object.keys(params))
    if (k !== "binary_data_output")
      throw invalidField(`request parameter '${k.slice(0, 64)}' is not supported (supported: binary_data_output)`);
  const all = bool(params.binary_data_output, "parameters.binary_data_output") ?? false;
  if (!body.outputs?.length) throw invalidField(`name the outputs to compute in 'outputs' (outputs: ${list(OUTPUTS)})`);
  const seen = new Set<string>();
  return body.outputs.map((o) => {
    if (!(OUTPUTS as readonly string[]).includes(o.name))
      throw invalidField(`unknown output '${o.name.slice(0, 64)}' (outputs: ${list(OUTPUTS)})`);
    if (seen.has(o.name)) throw invalidField(`output '${o.name}' is requested twice`);
    seen.add(o.name);
    for (const k of Object.keys(o.parameters ?? {}))
      if (k !== "binary_data")
        throw invalidField(
          `output '${o.name}': parameter '${k.slice(0, 64)}' is not supported (supported: binary_data)`,
        );
    const own = bool(o.parameters?.binary_data, `output '${o.name}' parameters.binary_data`);
    return { name: o.name as OutputName, binary: own ?? all };
  });
}

function bool(v: unknown, label: string): boolean | undefined {
  if (v !== undefined && typeof v !== "boolean") throw invalidField(`${label} must be a boolean`);
  return v;
}

function binarySize(t: InferRequest["inputs"][number]): number | undefined {
  const params = t.parameters ?? {};
  for (const k of Object.keys(params))
    if (k !== "binary_data_size")
      throw invalidField(
        `input '${t.name}': parameter '${k.slice(0, 64)}' is not supported (supported: binary_data_size)`,
      );
  const size = params.binary_data_size;
  if (size === undefined) return undefined;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 0)
    throw invalidField(`input '${t.name}': parameters.binary_data_size must be a byte count`);
  return size;
}

/** An input's elements: checked against its datatype and shape [N], from its binary piece or its JSON data. */
function readElements(t: InferRequest["inputs"][number], piece: Buffer | undefined): (string | Buffer)[] {
  const name = t.name as InputName;
  if (t.datatype !== "BYTES")
    throw invalidField(`input '${name}' has datatype ${t.datatype.slice(0, 16)}; it must be BYTES`);
  if (t.shape.length !== 1) throw invalidField(`input '${name}' has shape [${t.shape}]; it must be [N]`);
  const n = t.shape[0];
  if (n < 1) throw invalidField(`input '${name}' has no elements (shape [0])`);
  if (n > MAX_ELEMENTS[name])
    throw invalidField(`input '${name}' has ${n} elements; at most ${MAX_ELEMENTS[name]} per request`);
  let elements: (string | Buffer)[];
  if (piece) {
    if (t.data !== undefined) throw invalidField(`input '${name}' has both binary_data_size and JSON 'data'`);
    elements = decodeBytes(piece, `input '${name}'`);
  } else {
    if (t.data === undefined) throw invalidField(`input '${name}' has no 'data' (and no binary_data_size)`);
    elements = flattenData(t.data, `input '${name}'`).map((e, j) => {
      if (typeof e !== "string")
        throw invalidField(`input '${name}' data[${j}] is ${typeof e}; BYTES elements in JSON are strings`);
      return e;
    });
  }
  if (elements.length !== n) throw invalidField(`input '${name}' has shape [${n}] but ${elements.length} elements`);
  return elements;
}

function image(e: string | Buffer, j: number, fileLimitBytes: number): string | Buffer {
  // strings (JSON) are base64 / data URIs, decoded and size-checked by prepareImages as on the /v1 routes
  if (Buffer.isBuffer(e) && e.length > fileLimitBytes)
    throw new ApiError(
      "file_too_large",
      `image[${j}] is larger than the per-file limit of ${fileLimitBytes} bytes (FILE_LIMIT_BYTES)`,
    );
  return e;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function text(name: InputName, e: string | Buffer, j: number): string {
  let s: string;
  try {
    s = typeof e === "string" ? e : utf8.decode(e);
  } catch {
    throw invalidField(`${name}[${j}] is not valid UTF-8`);
  }
  let chars = 0;
  for (const _ of s) if (++chars > MAX_TEXT_CHARS) break; // code points, as the /v1 schemas count them
  if (chars > MAX_TEXT_CHARS) throw invalidField(`${name}[${j}] is longer than ${MAX_TEXT_CHARS} characters`);
  if (name === "question" && s.trim() === "") throw invalidField(`${name}[${j}] is blank`);
  return s;
}
