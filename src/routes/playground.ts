// GET / (and /playground): the playground, one static page (HTML, CSS, an ES module; no build step, nothing loaded
// from elsewhere) that tries the served models through the public API, as any client would. Its files live in
// static/playground/ and are read once at boot; PLAYGROUND=false registers none of these routes (404).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/**
 * static/playground/: two folders above this module both in src/routes/ (tsx) and in dist/routes/ (compiled), so the
 * same relative path serves both, and the image (/app/static/playground/).
 */
export const PLAYGROUND_DIR = new URL("../../static/playground/", import.meta.url);

const FILES = {
  "index.html": "text/html; charset=utf-8",
  "playground.css": "text/css; charset=utf-8",
  "playground.js": "text/javascript; charset=utf-8",
  "favicon.svg": "image/svg+xml",
} as const;
const ASSETS = ["playground.css", "playground.js", "favicon.svg"] as const; // what index.html loads

// Only this origin's scripts, styles and API; images also from blob: (the previews of files the user picked)
const CSP = [
  "default-src 'self'",
  "img-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function readAsset(name: keyof typeof FILES): Asset {
  const file = fileURLToPath(new URL(name, PLAYGROUND_DIR));
  let body: Buffer;
  try {
    body = readFileSync(file);
  } catch (err) {
    throw new Error(`${file}: the playground's file is unreadable (${(err as Error).message})`);
  }
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
  return { body, type: FILES[name], etag };
}

export default async function playground(app: FastifyInstance) {
  if (app.config.playground !== "true") return;
  const assets = Object.fromEntries(
    (Object.keys(FILES) as (keyof typeof FILES)[]).map((name) => [name, readAsset(name)]),
  ) as Record<keyof typeof FILES, Asset>;

  const hide = { schema: { hide: true } }; // not part of the API's OpenAPI document
  app.get("/", hide, send(assets["index.html"]));
  app.get("/playground", hide, send(assets["index.html"]));
  for (const name of ASSETS) app.get(`/playground/${name}`, hide, send(assets[name]));
}

/** A handler answering with the asset: the page's security headers, revalidated on each load (ETag, 304). */
function send(asset: Asset) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    reply
      .header("content-security-policy", CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("cache-control", "no-cache") // a new server version's page shows at once
      .header("etag", asset.etag);
    if (req.headers["if-none-match"] === asset.etag) return reply.status(304).send();
    return reply.type(asset.type).send(asset.body);
  };
}
