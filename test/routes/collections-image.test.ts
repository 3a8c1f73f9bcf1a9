// GET /v1/collections/{name}/items/{id}/image (src/routes/collections-image.ts) on the embedded store: the bytes kept
// at upload come back as they were, with their media type; clear 404s for a collection without images, a missing
// item, an unknown collection; 400 for a bad id.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { ROOT, testApp } from "../helpers/app.js";

const PNG = readFileSync(path.join(ROOT, "test/parity/images/exact32.png"));
const JPEG = readFileSync(path.join(ROOT, "test/parity/images/rgb.jpg"));
let app: FastifyInstance;
let dir: string;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "dlip-coll-image-"));
  app = await testApp({ collectionsDataDir: path.join(dir, "store") });
  await app.ready();
  for (const [name, storeImages] of [
    ["kept", true],
    ["bare", false],
  ] as const)
    await request(app.server).post("/v1/collections").send({ name, store_images: storeImages }).expect(201);
  for (const name of ["kept", "bare"])
    await request(app.server)
      .put(`/v1/collections/${name}/items`)
      .send({
        items: [
          { id: "png", image: PNG.toString("base64") },
          { id: "jpeg", image: JPEG.toString("base64") },
          { id: "text-only", text: "a red circle" },
        ],
      })
      .expect(200);
});

after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the kept image comes back byte for byte, with its media type", async () => {
  for (const [id, bytes, type] of [
    ["png", PNG, "image/png"],
    ["jpeg", JPEG, "image/jpeg"],
  ] as const) {
    const res = await request(app.server)
      .get(`/v1/collections/kept/items/${id}/image`)
      .buffer(true)
      .parse((r, cb) => {
        const chunks: Buffer[] = [];
        r.on("data", (c: Buffer) => chunks.push(c));
        r.on("end", () => cb(null, Buffer.concat(chunks)));
      })
      .expect(200);
    assert.equal(res.headers["content-type"], type);
    assert.equal(res.headers["x-content-type-options"], "nosniff");
    assert.ok(Buffer.compare(res.body as Buffer, bytes) === 0, `${id}: the uploaded bytes`);
  }
});

test("404s say what is missing; a bad id is a 400", async () => {
  const cases: [string, RegExp][] = [
    ["/v1/collections/bare/items/png/image", /keeps no images/],
    ["/v1/collections/kept/items/nope/image", /no item 'nope'/],
    ["/v1/collections/kept/items/text-only/image", /has no image/],
    ["/v1/collections/missing/items/png/image", /missing/],
  ];
  for (const [url, message] of cases) {
    const res = await request(app.server).get(url).expect(404);
    assert.equal(res.body.error.code, "not_found", url);
    assert.match(res.body.error.message, message, url);
  }
  const bad = await request(app.server).get("/v1/collections/kept/items/a%20b/image");
  assert.equal(bad.status, 400);
});

test("the route is in the OpenAPI document, answering an image", async () => {
  const spec = (await request(app.server).get("/docs/json").expect(200)).body;
  const op = spec.paths["/v1/collections/{name}/items/{id}/image"]?.get;
  assert.ok(op, "documented");
  assert.ok(Object.keys(op.responses["200"].content).includes("image/png"));
});
