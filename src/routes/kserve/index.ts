// KServe v2 / Open Inference Protocol (REST) under /v2: server metadata, the health probes, each bundle as one
// model (metadata, readiness, infer) in JSON or with the binary tensor data extension. Errors in the protocol's
// {"error": "..."} body. Versions: a model's one version is its manifest's `version`; any other is a 404.
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyRequest } from "fastify";
import Type from "typebox";
import { ApiError } from "../../errors.js";
import type { ServedModel } from "../../services/models.js";
import { assertLive, assertReady } from "../health.js";
import { HEADER_LENGTH, encodeBody, splitBody } from "./binary.js";
import { encodeOutputs, runOutputs } from "./infer.js";
import { InferRequest, ModelMetadata, modelMetadata, readRequest } from "./tensors.js";

const VERSION = (
  JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

export const EXTENSIONS = ["binary_tensor_data"];

const KServeError = Type.Object({ error: Type.String() }, { description: "Every v2 error answer" });
const ERRORS = Object.fromEntries([400, 404, 413, 415, 429, 500, 503, 504].map((s) => [s, KServeError]));
const PROBE = { api: false, dialect: "kserve" } as const; // answered while not ready (503), never admitted
const API = { api: true, dialect: "kserve" } as const; // admitted by the lifecycle, given a deadline

const ModelParams = Type.Object({ model: Type.String(), version: Type.Optional(Type.String()) });

const InferResponse = Type.Object({
  model_name: Type.String(),
  model_version: Type.String(),
  id: Type.Optional(Type.String()),
  outputs: Type.Array(
    Type.Object({
      name: Type.String(),
      datatype: Type.String(),
      shape: Type.Array(Type.Integer()),
      data: Type.Optional(Type.Union([Type.Array(Type.String()), Type.Array(Type.Number())])),
      parameters: Type.Optional(Type.Object({ binary_data_size: Type.Integer() })),
    }),
  ),
});

declare module "fastify" {
  interface FastifyRequest {
    v2Binary: Buffer; // an infer request's binary part (after Inference-Header-Content-Length bytes of JSON)
  }
}

/** The model a path names, at the version it names (the manifest's version, or none). */
function pathModel(app: FastifyInstance, req: FastifyRequest): ServedModel {
  const { model: name, version } = req.params as { model: string; version?: string };
  const model = app.models.get(name);
  if (version !== undefined && version !== model.manifest.version)
    throw new ApiError(
      "unknown_model",
      `model '${model.name}' has no version '${version.slice(0, 64)}' (versions: ${model.manifest.version})`,
    );
  return model;
}

export default async function kserve(app: FastifyInstance) {
  // tritonclient sends no Content-Type on infer: every body (none, octet-stream, JSON) is a JSON header, possibly
  // followed by binary tensors; the body limit is the server's BODY_LIMIT_BYTES as for every other route
  app.removeAllContentTypeParsers();
  app.decorateRequest("v2Binary", null as unknown as Buffer);
  app.addContentTypeParser("*", { parseAs: "buffer" }, (req, body, done) => {
    try {
      const { json, binary } = splitBody(body as Buffer, req.headers[HEADER_LENGTH]);
      req.v2Binary = binary;
      done(null, json);
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  app.addHook("onRequest", async (req) => {
    // an empty Content-Type header means none (Fastify would refuse it as malformed before any parser runs)
    if (req.headers["content-type"]?.trim() === "") delete req.headers["content-type"];
  });

  app.setNotFoundHandler(async (req) => {
    req.errorDialect = "kserve";
    throw new ApiError("not_found", `no route ${req.method} ${req.url.split("?")[0].slice(0, 200)}`);
  });

  const tags = ["kserve v2"];
  app.get(
    "/",
    {
      config: PROBE,
      schema: {
        summary: "Server metadata",
        tags,
        response: {
          200: Type.Object({ name: Type.String(), version: Type.String(), extensions: Type.Array(Type.String()) }),
        },
      },
    },
    async () => ({ name: "dlip-serve", version: VERSION, extensions: EXTENSIONS }),
  );

  const Live = Type.Object({ live: Type.Boolean() });
  app.get(
    "/health/live",
    { config: PROBE, schema: { summary: "Liveness (as /healthz)", tags, response: { 200: Live, ...ERRORS } } },
    async () => {
      assertLive(app);
      return { live: true };
    },
  );

  const Ready = Type.Object({ ready: Type.Boolean() });
  app.get(
    "/health/ready",
    { config: PROBE, schema: { summary: "Readiness (as /readyz)", tags, response: { 200: Ready, ...ERRORS } } },
    async () => {
      assertReady(app);
      return { ready: true };
    },
  );

  for (const base of ["/models/:model", "/models/:model/versions/:version"]) {
    app.get(
      base,
      {
        config: API,
        schema: { summary: "Model metadata", tags, params: ModelParams, response: { 200: ModelMetadata, ...ERRORS } },
      },
      async (req) => modelMetadata(pathModel(app, req)),
    );

    const ModelReady = Type.Object({ name: Type.String(), ready: Type.Boolean() });
    app.get(
      `${base}/ready`,
      {
        config: API, // admitted: 503 while the server is not ready
        schema: { summary: "Model readiness", tags, params: ModelParams, response: { 200: ModelReady, ...ERRORS } },
      },
      async (req) => ({ name: pathModel(app, req).name, ready: true }),
    );

    app.post(
      `${base}/infer`,
      {
        config: API,
        schema: {
          summary: "Infer",
          description:
            "A JSON inference request, or (binary tensor data extension) a JSON header of " +
            "Inference-Header-Content-Length bytes followed by the inputs' binary data. Any Content-Type.",
          tags,
          params: ModelParams,
          body: InferRequest,
          response: { 200: InferResponse, ...ERRORS },
        },
        async preValidation(req: FastifyRequest) {
          if (req.body === undefined) throw new ApiError("invalid_json", "the request has no body");
        },
      },
      async (req, reply) => {
        const model = pathModel(app, req);
        const body = req.body as InferRequest;
        const { inputs, outputs } = readRequest(body, req.v2Binary ?? Buffer.alloc(0), app.config.fileLimitBytes);
        const tensors = await runOutputs(req, model, inputs, outputs);
        const { json, pieces } = encodeOutputs(outputs, tensors);
        const id = body.id === undefined ? {} : { id: body.id };
        const header = { model_name: model.name, model_version: model.manifest.version, ...id, outputs: json };
        if (pieces.length === 0) return header;
        const { body: out, headerLength } = encodeBody(header, pieces);
        reply.header("inference-header-content-length", String(headerLength));
        return reply.type("application/octet-stream").send(out);
      },
    );
  }
}
