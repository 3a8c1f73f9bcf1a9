// The database goes away under requests: the real test PostgreSQL (test/helpers/postgres.ts) is stopped, then
// started again (a clean stop, then a crash), while collection requests keep coming. Collection routes answer 503
// store_unavailable with Retry-After (never a 500), /readyz says why while staying 200 for inference, inference
// routes keep working, and the server reconnects by itself once the database is back.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";

let pg: TestPostgres;
let app: FastifyInstance;
let image: string;
before(async () => {
  pg = await startPostgres();
  app = await testApp({ databaseUrl: await pg.createDatabase("faults") });
  image = (await solid(20, 20, "#20a040")).toString("base64");
});
after(async () => {
  await app?.close();
  await pg?.cleanup();
});

/** Collection traffic until `stop` resolves: every answer's status and error code. */
async function traffic(stop: Promise<void>): Promise<{ status: number; code?: string; retryAfter?: string }[]> {
  const seen: { status: number; code?: string; retryAfter?: string }[] = [];
  let done = false;
  void stop.then(() => (done = true));
  for (let i = 0; !done; i++) {
    const res =
      i % 2
        ? await request(app.server).post("/v1/collections/f/search").send({ text: "a green square", limit: 3 })
        : await request(app.server)
            .put("/v1/collections/f/items")
            .send({ items: [{ id: `t${i}`, image, metadata: { i } }] });
    seen.push({ status: res.status, code: res.body?.error?.code, retryAfter: res.headers["retry-after"] });
  }
  return seen;
}

async function until(fn: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const mode of ["fast", "immediate"] as const) {
  test(`database stopped (${mode}) and started under requests: 503 with Retry-After meanwhile, reconnected after`, async () => {
    if (mode === "fast") {
      await request(app.server).post("/v1/collections").send({ name: "f" }).expect(201);
      await request(app.server)
        .put("/v1/collections/f/items")
        .send({ items: [{ id: "kept", image }] })
        .expect(200);
    }
    let downPhase!: () => void;
    const phaseOver = new Promise<void>((r) => (downPhase = r));
    const during = traffic(phaseOver);
    await new Promise((r) => setTimeout(r, 200)); // some answers while the database is up
    await pg.stop(mode);

    // while it is down
    const refused = await request(app.server).get("/v1/collections/f");
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, "store_unavailable");
    assert.ok(Number(refused.headers["retry-after"]) > 0);
    const ready = await request(app.server).get("/readyz").expect(200);
    assert.equal(ready.body.status, "ready");
    assert.equal(ready.body.collections.status, "unavailable");
    assert.equal(ready.body.collections.store, "postgres");
    assert.match(ready.body.collections.reason, /database is unavailable/);
    const emb = await request(app.server)
      .post("/v1/embeddings")
      .send({ texts: ["still serving"] })
      .expect(200);
    assert.equal(emb.body.text_embeddings.length, 1);

    await pg.start();
    await until(async () => (await request(app.server).get("/v1/collections/f")).status === 200, "a reconnect");
    downPhase();
    const seen = await during;
    assert.ok(
      seen.some((s) => s.status === 503),
      "some requests met the database down",
    );
    for (const s of seen) {
      assert.ok(s.status === 200 || s.status === 503, `status ${s.status} (${s.code})`);
      if (s.status === 503) {
        assert.equal(s.code, "store_unavailable");
        assert.ok(Number(s.retryAfter) > 0);
      }
    }
    // back: what was acknowledged before is there, new writes and searches work, readiness says ok
    await request(app.server).get("/v1/collections/f/items/kept").expect(200);
    await request(app.server)
      .put("/v1/collections/f/items")
      .send({ items: [{ id: `after-${mode}`, text: "back" }] })
      .expect(200);
    await request(app.server).post("/v1/collections/f/search").send({ text: "x" }).expect(200);
    assert.equal((await request(app.server).get("/readyz").expect(200)).body.collections.status, "ok");
  });
}
