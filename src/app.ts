// The application as a testable plugin: plugins (metrics, sessions, batching), routes per task, one error handler.
// `buildApp(config)` gives a ready-to-listen Fastify instance; server.ts alone listens and handles signals.
import { randomUUID } from "node:crypto";
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from "fastify";
import fp from "fastify-plugin";
import multipart from "@fastify/multipart";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { apiKeyCheck } from "./auth.js";
import type { Config } from "./config.js";
import { ApiError, errorBody, type ErrorDialect, toApiError } from "./errors.js";
import batching from "./plugins/batching.js";
import metrics from "./plugins/metrics.js";
import models from "./plugins/models.js";
import captions from "./routes/captions.js";
import collectionsPlugin from "./plugins/collections.js";
import collections from "./routes/collections.js";
import collectionItems from "./routes/collections-items.js";
import collectionSearch from "./routes/collections-search.js";
import collectionImage from "./routes/collections-image.js";
import chat from "./routes/openai/chat.js";
import embeddings from "./routes/embeddings.js";
import health from "./routes/health.js";
import kserve from "./routes/kserve/index.js";
import modelList from "./routes/openai/models.js";
import playground from "./routes/playground.js";
import rank from "./routes/rank.js";
import { requestSignal } from "./routes/input.js";
import { registerTimings } from "./routes/timing.js";
import { BYTES_KEYWORD, ErrorBody, FORM_LIMITS } from "./routes/schemas.js";
import { schemaErrorFormatter } from "./schema-errors.js";
import vqa from "./routes/vqa.js";

const REQUEST_ID = /^[\w.:-]{1,64}$/;

export const app = fp<{ config: Config }>(
  async (app, { config }) => {
    app.removeContentTypeParser(["text/plain"]); // JSON and multipart only: anything else is 415
    app.addSchema(ErrorBody);
    app.decorate("config", config);
    await app.register(multipart, {
      limits: { ...FORM_LIMITS, fileSize: config.fileLimitBytes },
      throwFileSizeLimit: true,
    });
    await app.register(swagger, {
      openapi: {
        info: {
          title: "DLIP serve",
          version: "1",
          description: "Captioning, VQA, embeddings and retrieval with distilled BLIP-style models",
        },
      },
    });
    await app.register(swaggerUi, { routePrefix: "/docs" });

    await app.register(metrics);
    await app.register(models, { config });
    await app.register(batching, { config });
    await app.register(collectionsPlugin, { config });

    registerTimings(app); // x-queue-time, x-inference-time: each request's timing record
    app.decorateRequest("deadline", null as unknown as AbortSignal);
    app.decorateRequest("errorDialect", "dlip");
    const authorize = apiKeyCheck(config); // null when no API key is set
    app.addHook("onRequest", async (req, reply) => {
      reply.header("x-request-id", req.id);
      const route = req.routeOptions.config;
      req.errorDialect = route.dialect ?? "dlip";
      authorize?.(req, reply); // 401 before admission: a request without a key never takes a slot
      if (!(route.api ?? req.url.startsWith("/v1/"))) return; // probes, metrics and docs are not admitted
      reply.raw.once("close", app.lifecycle.admit()); // 503 unless open; a drain waits for it until answered
      req.deadline = requestSignal(req, reply, config.requestTimeoutMs);
    });

    app.setErrorHandler(async (err, req, reply) => {
      const e = toApiError(err);
      if (e.status >= 500 && e.code === "internal") req.log.error({ err }, "request failed");
      else req.log.info({ code: e.code, status: e.status, msg: e.message }, "request refused");
      if (e.status === 429 || e.status === 503 || e.status === 504) app.metrics.rejected.labels(e.code).inc();
      if (e.code === "client_gone") app.metrics.rejected.labels(e.code).inc();
      if (e.retryAfterS !== undefined) reply.header("retry-after", String(e.retryAfterS));
      // the OpenAI SDKs retry by status unless told not to; a 4xx other than 408/409/429 fails again as it is
      if (e.status >= 400 && e.status < 500 && ![408, 409, 429].includes(e.status))
        reply.header("x-should-retry", "false");
      return reply.status(e.status === 499 ? 400 : e.status).send(errorBody(e, req.errorDialect));
    });
    app.setNotFoundHandler(async (req) => {
      throw new ApiError("not_found", `no route ${req.method} ${req.url.split("?")[0].slice(0, 200)}`);
    });

    await app.register(captions);
    await app.register(vqa);
    await app.register(embeddings);
    await app.register(rank);
    await app.register(modelList);
    await app.register(health);
    await app.register(chat);
    await app.register(kserve, { prefix: "/v2" }); // KServe v2 / Open Inference Protocol
    await app.register(playground);
    await app.register(collections);
    await app.register(collectionItems);
    await app.register(collectionSearch);
    await app.register(collectionImage);
  },
  { name: "dlip-app" },
);

declare module "fastify" {
  interface FastifyInstance {
    config: Config;
  }
  interface FastifyRequest {
    errorDialect: ErrorDialect; // the shape of this request's error body: the route's `dialect`, or a handler's choice
  }
  interface FastifyContextConfig {
    api?: boolean; // admitted by the lifecycle (503 while not ready or draining) and given a deadline; default: /v1/*
    dialect?: ErrorDialect; // the error body shape of this route (default "dlip")
  }
}

type AjvPlugin = NonNullable<NonNullable<FastifyServerOptions["ajv"]>["plugins"]>[number];

/** The `bytes` keyword of an image slot (routes/schemas.ts). */
const bytesKeyword: AjvPlugin = (ajv) => ajv.addKeyword(BYTES_KEYWORD);

/** A configured Fastify instance with the app registered and loaded (sessions up, warmed), not listening. */
export async function buildApp(
  config: Config,
  opts: { logger?: FastifyServerOptions["logger"] } = {},
): Promise<FastifyInstance> {
  const fastify = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: false, // genReqId reads x-request-id itself, keeping only well-formed ids
    logController: new LogController({ requestIdLogLabel: "request_id" }),
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false }, plugins: [bytesKeyword] },
    schemaErrorFormatter,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    // creating and warming up every bundle's sessions (the sessions plugin) takes well over Fastify's default 10 s
    // for big bundles or on a busy machine; a load that truly hangs is the orchestrator's to kill (readiness)
    pluginTimeout: 300_000,
  });
  await fastify.register(app, { config });
  await fastify.ready();
  return fastify;
}
