// Optional API keys (API_KEYS, API_KEYS_FILE): when any key is set, the API routes (every /v1 and /v2 route but
// the v2 health probes, and the bare OpenAI aliases /models, /embeddings, /chat/completions) require
// `Authorization: Bearer <key>`; probes, metrics and the docs stay open. The app's onRequest hook calls the check
// before admission, so a request without a valid key never takes a slot. Keys are compared in constant time: the
// given token and every key are hashed to equal-length SHA-256 digests, compared with timingSafeEqual, all of them.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ConfigError, type Config } from "./config.js";
import { ApiError } from "./errors.js";

/** OpenAI's routes also answer without /v1 (clients set base_url with or without it): these need a key too. */
const OPENAI_ALIASES = ["/models", "/embeddings", "/chat/completions"];

/** Whether a route (its URL pattern, e.g. /v1/models/:id, or the request path where no route matched) needs a key. */
export function needsKey(url: string): boolean {
  const under = (prefix: string) => url === prefix || url.startsWith(`${prefix}/`);
  if (under("/v2/health")) return false; // KServe's liveness and readiness probes
  return under("/v1") || under("/v2") || OPENAI_ALIASES.some(under);
}

/** The configured keys: API_KEYS (comma-separated) and API_KEYS_FILE (one per line, or comma-separated). */
export function apiKeys(config: Pick<Config, "apiKeys" | "apiKeysFile">): string[] {
  const keys = (config.apiKeys ?? "").split(",");
  if (config.apiKeysFile !== null) {
    let text: string;
    try {
      text = readFileSync(config.apiKeysFile, "utf8");
    } catch (err) {
      throw new ConfigError(`API_KEYS_FILE ${config.apiKeysFile} cannot be read: ${(err as Error).message}`);
    }
    const fromFile = text.split(/[\n,]/).filter((k) => k.trim() !== "");
    if (fromFile.length === 0) throw new ConfigError(`API_KEYS_FILE ${config.apiKeysFile} holds no key`);
    keys.push(...fromFile);
  }
  return keys.map((k) => k.trim()).filter((k) => k !== "");
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/** Whether `token` is one of the keys (as digests), in time that does not depend on where they differ. */
export function keyMatches(token: string, keyDigests: readonly Buffer[]): boolean {
  const given = digest(token);
  let ok = false;
  for (const k of keyDigests) ok = timingSafeEqual(given, k) || ok; // every key compared: no early exit
  return ok;
}

/**
 * The check the app's onRequest hook runs on every request, or null when no key is set. It throws 401 (in the
 * route's error dialect, with `WWW-Authenticate: Bearer`) for a route that needs a key and a request without one
 * of the keys. A route's `config.auth` overrides the path rule.
 */
export function apiKeyCheck(config: Config): ((req: FastifyRequest, reply: FastifyReply) => void) | null {
  const keys = apiKeys(config);
  if (keys.length === 0) return null;
  const digests = keys.map(digest);
  return (req, reply) => {
    if (!(req.routeOptions.config.auth ?? needsKey(req.routeOptions.url ?? req.url.split("?")[0]))) return;
    const header = req.headers.authorization;
    const m = typeof header === "string" ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) : null;
    if (m && keyMatches(m[1], digests)) return;
    reply.header("www-authenticate", "Bearer");
    throw new ApiError(
      "unauthorized",
      header === undefined
        ? "this server needs an API key: send 'Authorization: Bearer <key>'"
        : m
          ? "the API key is not valid"
          : "the Authorization header must be 'Bearer <key>'",
    );
  };
}

declare module "fastify" {
  interface FastifyContextConfig {
    auth?: boolean; // needs an API key when keys are set; default: /v1/*, /v2/* but /v2/health/*, the OpenAI aliases
  }
}
