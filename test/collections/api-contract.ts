// The collection routes' contract, run against each store (pglite.test.ts, postgres.test.ts) through the real app on
// the micro fixture bundle: every answer checked against what the model's own routes say (/v1/embeddings for ITC
// cosines, /v1/rank for ITM re-ranking), and every refusal against its status and code.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import request from "supertest";
import type { Config } from "../../src/config.js";
import { modelIdentity } from "../../src/collections/service.js";
import { testApp } from "../helpers/app.js";
import { solid } from "../helpers/images.js";

const COLOURS = ["#d02020", "#20d020", "#2020d0", "#d0d020", "#d020d0", "#20d0d0", "#808080", "#202020"];
const TEXTS = ["a red circle", "a green square", "two blue stars", "a yellow triangle", "a purple diamond"];
const b64 = (b: Buffer) => b.toString("base64");
const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);

export function apiContract(label: string, config: () => Promise<Partial<Config>>): void {
  let app: FastifyInstance;
  let images: Buffer[];
  before(async () => {
    app = await testApp({ ...(await config()), collectionsMaxItems: 16, collectionsMaxMetadataBytes: 256 });
    images = await Promise.all(COLOURS.map((c, i) => solid(24 + i, 20 + 2 * i, c)));
  });
  after(() => app?.close());
  const api = () => request(app.server);
  const isError = (res: request.Response, status: number, code: string, message?: RegExp) => {
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error.code, code);
    if (message) assert.match(res.body.error.message, message);
  };
  const t = (name: string, fn: () => Promise<void>) => test(`${label}: ${name}`, fn);

  t(
    "collections: create (201, bound to the default model), 409 twice, list, get, delete, 404s, bad names",
    async () => {
      const created = await api().post("/v1/collections").send({ name: "photos" }).expect(201);
      const micro = modelIdentity(app.models.get());
      assert.deepEqual(
        { ...created.body, created: undefined },
        {
          name: "photos",
          model: "micro",
          weights: micro.weights,
          dimensions: 32,
          items: 0,
          store_images: false,
          store_tokens: true,
          created: undefined,
        },
      );
      isError(await api().post("/v1/collections").send({ name: "photos" }), 409, "already_exists");
      await api().post("/v1/collections").send({ name: "kept", store_images: true, store_tokens: false }).expect(201);
      const list = await api().get("/v1/collections").expect(200);
      assert.deepEqual(
        list.body.collections.map((c: { name: string }) => c.name),
        ["kept", "photos"],
      );
      assert.equal((await api().get("/v1/collections/kept").expect(200)).body.store_images, true);
      await api().delete("/v1/collections/kept").expect(200);
      isError(await api().get("/v1/collections/kept"), 404, "not_found", /kept/);
      isError(await api().delete("/v1/collections/kept"), 404, "not_found");
      for (const name of ["Photos", "-x", "a".repeat(65), "a b", "x;drop"])
        isError(await api().post("/v1/collections").send({ name }), 400, "invalid_field", /must match/);
      isError(await api().post("/v1/collections").send({ name: "m", model: "nope" }), 404, "unknown_model");
      isError(await api().post("/v1/collections").send({ name: "m", extra: 1 }), 400, "invalid_field");
      await api().delete("/v1/collections/photos").expect(200);
    },
  );

  t("PUT items: each item's outcome by index; one bad item does not sink the others; GET and DELETE one", async () => {
    await api().post("/v1/collections").send({ name: "items" }).expect(201);
    const res = await api()
      .put("/v1/collections/items/items")
      .send({
        items: [
          { id: "red", image: b64(images[0]), metadata: { colour: "red", n: 1 } },
          { id: "bad id!", text: "x" },
          { id: "txt", text: "a red circle", metadata: { n: 2 } },
          { id: "broken", image: b64(Buffer.from("not an image")) },
          { id: "red", text: "again" },
          { id: "empty" },
          { id: "big", text: "x", metadata: { blob: "y".repeat(300) } },
          { id: "nul", text: "a\u0000b" },
          { id: "url", image: "http://127.0.0.1:1/x.png" },
          { id: "both", image: `data:image/png;base64,${b64(images[1])}`, text: "a green square" },
        ],
      })
      .expect(200);
    assert.equal(res.body.upserted, 3);
    assert.equal(res.body.failed, 7);
    const byIndex = res.body.items.map((o: { status: string; error?: { code: string } }) => o.error?.code ?? o.status);
    assert.deepEqual(byIndex, [
      "ok",
      "invalid_field",
      "ok",
      "invalid_image",
      "invalid_field",
      "invalid_field",
      "invalid_field",
      "invalid_field",
      "invalid_image",
      "ok",
    ]);
    assert.match(res.body.items[1].error.message, /^items\[1\]\.id/);
    assert.match(res.body.items[4].error.message, /appears earlier/);
    assert.match(res.body.items[6].error.message, /256 \(COLLECTIONS_MAX_METADATA_BYTES\)/);
    assert.match(res.body.items[8].error.message, /IMAGE_URL_HOSTS/);
    // the longest id round-trips through its path
    const long = "L".repeat(100);
    await api()
      .put("/v1/collections/items/items")
      .send({ items: [{ id: long, text: "x" }] })
      .expect(200);
    assert.equal((await api().get(`/v1/collections/items/items/${long}`).expect(200)).body.id, long);
    await api().delete(`/v1/collections/items/items/${long}`).expect(200);
    const red = await api().get("/v1/collections/items/items/red").expect(200);
    assert.deepEqual([red.body.has_image, red.body.text, red.body.metadata], [true, null, { colour: "red", n: 1 }]);
    assert.equal((await api().get("/v1/collections/items").expect(200)).body.items, 3);
    isError(await api().get("/v1/collections/items/items/nope"), 404, "not_found", /no item 'nope'/);
    isError(await api().get("/v1/collections/nope/items/red"), 404, "not_found", /no collection 'nope'/);
    isError(await api().get("/v1/collections/items/items/bad%20id"), 400, "invalid_field");
    await api().delete("/v1/collections/items/items/red").expect(200);
    isError(await api().delete("/v1/collections/items/items/red"), 404, "not_found");
    // limits: items per request, schema shape
    const many = Array.from({ length: 17 }, (_, i) => ({ id: `t${i}`, text: "x" }));
    isError(
      await api().put("/v1/collections/items/items").send({ items: many }),
      400,
      "invalid_field",
      /COLLECTIONS_MAX_ITEMS/,
    );
    isError(await api().put("/v1/collections/items/items").send({ items: [] }), 400, "invalid_field");
    isError(
      await api()
        .put("/v1/collections/items/items")
        .send({ items: [{ id: 1 }] }),
      400,
      "invalid_field",
    );
    isError(
      await api()
        .put("/v1/collections/nope/items")
        .send({ items: [{ id: "a", text: "x" }] }),
      404,
      "not_found",
    );
    await api().delete("/v1/collections/items").expect(200);
  });

  t("PUT items as multipart: an `items` field and file parts named by item id", async () => {
    await api().post("/v1/collections").send({ name: "form" }).expect(201);
    const res = await api()
      .put("/v1/collections/form/items")
      .field(
        "items",
        JSON.stringify([
          { id: "p0", metadata: { k: 1 } },
          { id: "p1", text: "a green square" },
        ]),
      )
      .attach("p0", images[0], "p0.png")
      .attach("p1", images[1], "p1.png")
      .expect(200);
    assert.equal(res.body.upserted, 2);
    assert.equal((await api().get("/v1/collections/form/items/p1").expect(200)).body.has_image, true);
    const stray = await api()
      .put("/v1/collections/form/items")
      .field("items", JSON.stringify([{ id: "p2", text: "x" }]))
      .attach("zz", images[0], "zz.png");
    isError(stray, 400, "invalid_field", /named by no item id: zz/);
    isError(
      await api().put("/v1/collections/form/items").attach("p0", images[0], "a.png"),
      400,
      "invalid_field",
      /no 'items'/,
    );
    await api().delete("/v1/collections/form").expect(200);
  });

  t(
    "search: ITC cosines equal /v1/embeddings', best first; ITM re-ranking equals /v1/rank's (tokens kept, or images)",
    async () => {
      const emb = await api()
        .post("/v1/embeddings")
        .send({ texts: TEXTS, images: images.map(b64) })
        .expect(200);
      for (const [name, options] of [
        ["tokens", {}],
        ["images", { store_images: true, store_tokens: false }],
      ] as const) {
        await api()
          .post("/v1/collections")
          .send({ name, ...options })
          .expect(201);
        await api()
          .put(`/v1/collections/${name}/items`)
          .send({
            items: images.map((im, i) => ({ id: `im${i}`, image: b64(im), metadata: { i, even: i % 2 === 0 } })),
          })
          .expect(200);
        const q = TEXTS[0];
        const res = await api().post(`/v1/collections/${name}/search`).send({ text: q, limit: 8 }).expect(200);
        const exact = images
          .map((_, i) => ({ id: `im${i}`, s: dot(emb.body.text_embeddings[0], emb.body.image_embeddings[i]) }))
          .sort((a, b) => b.s - a.s);
        assert.equal(res.body.results.length, 8);
        res.body.results.forEach((r: { id: string; itc: number; score: number; itm: null }, i: number) => {
          assert.ok(Math.abs(r.itc - exact[i].s) < 1e-4, `${r.itc} vs ${exact[i].s}`);
          assert.equal(r.score, r.itc);
          assert.equal(r.itm, null);
        });
        // paging: offset skips the best
        const page = await api()
          .post(`/v1/collections/${name}/search`)
          .send({ text: q, limit: 3, offset: 2 })
          .expect(200);
        assert.deepEqual(
          page.body.results.map((r: { id: string }) => r.id),
          res.body.results.slice(2, 5).map((r: { id: string }) => r.id),
        );
        // ITM: the same candidates through /v1/rank
        const rr = await api()
          .post(`/v1/collections/${name}/search`)
          .send({ text: q, limit: 8, rerank: "itm", rerank_k: 8 })
          .expect(200);
        const rank = await api()
          .post("/v1/rank")
          .send({ query: { text: q }, candidates: images.map(b64), top_k: 8, rerank: "itm" })
          .expect(200);
        const tol = name === "tokens" ? 2e-2 : 1e-4; // fp16 tokens against the graph's float32
        const rankBy = new Map(
          rank.body.results.map((r: { index: number; itm_score: number; itc_score: number }) => [`im${r.index}`, r]),
        );
        for (const r of rr.body.results) {
          const want = rankBy.get(r.id) as { itm_score: number; itc_score: number };
          assert.ok(Math.abs(r.itm - want.itm_score) < tol, `${name} ${r.id}: itm ${r.itm} vs ${want.itm_score}`);
          assert.ok(Math.abs(r.itc - want.itc_score) < 1e-4);
          assert.ok(Math.abs(r.score - (r.itm + r.itc)) < 1e-9);
        }
        for (let i = 1; i < rr.body.results.length; i++)
          assert.ok(rr.body.results[i - 1].score >= rr.body.results[i].score);
        // a filter: only the even ones, still `limit` of them
        const even = await api()
          .post(`/v1/collections/${name}/search`)
          .send({ text: q, limit: 4, filter: { even: true } })
          .expect(200);
        assert.equal(even.body.results.length, 4);
        assert.ok(even.body.results.every((r: { metadata: { even: boolean } }) => r.metadata.even));
      }
      await api().delete("/v1/collections/tokens").expect(200);
      await api().delete("/v1/collections/images").expect(200);
    },
  );

  t("search by image: texts (re-ranked as /v1/rank's image query), or similar images with target image", async () => {
    await api().post("/v1/collections").send({ name: "mixed" }).expect(201);
    await api()
      .put("/v1/collections/mixed/items")
      .send({
        items: [
          ...TEXTS.map((text, i) => ({ id: `t${i}`, text })),
          ...images.slice(0, 3).map((im, i) => ({ id: `im${i}`, image: b64(im) })),
        ],
      })
      .expect(200);
    const texts = await api()
      .post("/v1/collections/mixed/search")
      .send({ image: b64(images[2]), rerank: "itm", limit: 5, rerank_k: 5 })
      .expect(200);
    const rank = await api()
      .post("/v1/rank")
      .send({ query: { image: b64(images[2]) }, candidates: TEXTS, top_k: 5 })
      .expect(200);
    assert.deepEqual(
      texts.body.results.map((r: { id: string }) => r.id),
      rank.body.results.map((r: { index: number }) => `t${r.index}`),
    );
    texts.body.results.forEach((r: { score: number }, i: number) =>
      assert.ok(Math.abs(r.score - rank.body.results[i].score) < 1e-4),
    );
    const similar = await api()
      .post("/v1/collections/mixed/search")
      .field("target", "image")
      .field("limit", "3")
      .attach("image", images[2], "q.png")
      .expect(200);
    assert.equal(similar.body.results[0].id, "im2");
    assert.ok(Math.abs(similar.body.results[0].itc - 1) < 1e-4);
    await api().delete("/v1/collections/mixed").expect(200);
  });

  t("search refusals: 400s that say what was wrong", async () => {
    await api().post("/v1/collections").send({ name: "bare", store_tokens: false }).expect(201);
    await api()
      .put("/v1/collections/bare/items")
      .send({ items: [{ id: "a", image: b64(images[0]) }] })
      .expect(200);
    const bad: [object, RegExp][] = [
      [{}, /exactly one of 'text'/],
      [{ text: "x", image: b64(images[0]) }, /exactly one/],
      [{ text: "x", limit: 0 }, /limit/],
      [{ text: "x", limit: 1001 }, /limit/],
      [{ text: "x", filter: { n: { foo: 1 } } }, /unknown operator 'foo'/],
      [{ text: "x", filter: { n: [1, 2] } }, /"in"/],
      [{ text: "x", filter: { n: { in: [] } } }, /in must be an array of 1/],
      [{ text: "x", filter: { n: { gt: "3" } } }, /gt must be a number/],
      [{ text: "x", filter: { n: { in: [1], gt: 2 } } }, /cannot be combined/],
      [{ text: "x", filter: { "bad key": 1 } }, /must match/],
      [{ text: "x", filter: {} }, /empty/],
      [{ text: "x", rerank: "itm" }, /neither image tokens nor images/],
      [{ image: b64(images[0]), target: "image", rerank: "itm" }, /image-text pairs/],
      [{ text: "x", target: "text", rerank: "itm" }, /image-text pairs/],
      [{ image: b64(images[0]), rerank: "itm", limit: 10, rerank_k: 5 }, /exceeds rerank_k/],
      [{ text: "x", extra: 1 }, /extra|additional/],
    ];
    for (const [body, message] of bad)
      isError(await api().post("/v1/collections/bare/search").send(body), 400, "invalid_field", message);
    isError(await api().post("/v1/collections/nope/search").send({ text: "x" }), 404, "not_found");
    await api().delete("/v1/collections/bare").expect(200);
  });

  t("delete many: by ids, by filter; filters validated", async () => {
    await api().post("/v1/collections").send({ name: "del" }).expect(201);
    await api()
      .put("/v1/collections/del/items")
      .send({ items: Array.from({ length: 10 }, (_, i) => ({ id: `d${i}`, text: `t${i}`, metadata: { i } })) })
      .expect(200);
    assert.equal(
      (
        await api()
          .post("/v1/collections/del/items/delete")
          .send({ ids: ["d0", "d1", "zz"] })
          .expect(200)
      ).body.deleted,
      2,
    );
    assert.equal(
      (
        await api()
          .post("/v1/collections/del/items/delete")
          .send({ filter: { i: { gte: 7 } } })
          .expect(200)
      ).body.deleted,
      3,
    );
    assert.equal((await api().get("/v1/collections/del").expect(200)).body.items, 5);
    isError(
      await api()
        .post("/v1/collections/del/items/delete")
        .send({ filter: { i: { nope: 1 } } }),
      400,
      "invalid_field",
    );
    isError(
      await api()
        .post("/v1/collections/del/items/delete")
        .send({ ids: ["ok", "no good"] }),
      400,
      "invalid_field",
      /ids\[1\]/,
    );
    isError(await api().post("/v1/collections/del/items/delete").send({}), 400, "invalid_field");
    await api().delete("/v1/collections/del").expect(200);
  });

  t(
    "bulk import: an NDJSON stream committed in batches, failures by line, progress readable; job ids once",
    async () => {
      await api().post("/v1/collections").send({ name: "bulk" }).expect(201);
      const lines = Array.from({ length: 70 }, (_, i) =>
        JSON.stringify({ id: `b${i}`, image: b64(images[i % 8]), metadata: { i } }),
      );
      lines.splice(10, 0, "{not json");
      lines.splice(20, 0, "");
      lines.splice(30, 0, JSON.stringify({ id: "bad", image: b64(Buffer.from("nope")) }));
      const res = await api()
        .put("/v1/collections/bulk/imports/first")
        .set("content-type", "application/x-ndjson")
        .send(lines.join("\n") + "\n")
        .expect(200);
      assert.deepEqual([res.body.status, res.body.received, res.body.succeeded, res.body.failed], ["done", 73, 70, 2]);
      assert.deepEqual(
        res.body.errors.map((e: { line: number; code: string }) => [e.line, e.code]),
        [
          [11, "invalid_json"],
          [31, "invalid_image"],
        ],
      );
      assert.match(res.body.errors[1].message, /^line 31: image is not an image/);
      const job = await api().get("/v1/collections/bulk/jobs/first").expect(200);
      assert.deepEqual({ ...job.body, updated: undefined }, { ...res.body, updated: undefined });
      assert.equal((await api().get("/v1/collections/bulk").expect(200)).body.items, 70);
      isError(
        await api().put("/v1/collections/bulk/imports/first").set("content-type", "application/x-ndjson").send("{}\n"),
        409,
        "already_exists",
      );
      isError(
        await api().put("/v1/collections/bulk/imports/second").send({ items: [] }),
        415,
        "unsupported_media_type",
      );
      isError(await api().get("/v1/collections/bulk/jobs/nope").send(), 404, "not_found");
      isError(await api().get("/v1/collections/bulk/jobs/bad%20id").send(), 400, "invalid_field");
      await api().delete("/v1/collections/bulk").expect(200);
    },
  );

  t("a collection whose model's weights changed answers 409 with the way out; one call re-embeds it", async () => {
    const store = app.collections.store;
    const old = { model: "micro", weights: "0".repeat(64) }; // vectors written by weights no longer served
    await app.collections.open();
    await store.createCollection({ name: "old", ...old, dim: 32, storeImages: true, storeTokens: true });
    const c = (await store.getCollection("old"))!;
    const junk = Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));
    await store.upsertItems(
      c,
      images.map((im, i) => ({
        id: `o${i}`,
        text: null,
        metadata: { i },
        image: im,
        tokens: null,
        imageEmb: junk,
        textEmb: null,
      })),
    );
    isError(
      await api().post("/v1/collections/old/search").send({ text: "x" }),
      409,
      "model_changed",
      /POST \/v1\/collections\/old\/reembed/,
    );
    isError(
      await api()
        .put("/v1/collections/old/items")
        .send({ items: [{ id: "n", text: "x" }] }),
      409,
      "model_changed",
    );
    await api().get("/v1/collections/old/items/o1").expect(200); // reading metadata needs no model
    const started = await api().post("/v1/collections/old/reembed").expect(202);
    assert.equal(started.body.kind, "reembed");
    let job = started.body;
    for (let i = 0; i < 200 && job.status === "running"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      job = (await api().get(`/v1/collections/old/jobs/${started.body.job}`).expect(200)).body;
    }
    assert.deepEqual([job.status, job.succeeded, job.failed], ["done", 8, 0]);
    const now = await api().get("/v1/collections/old").expect(200);
    assert.equal(now.body.weights, modelIdentity(app.models.get()).weights);
    const emb = await api()
      .post("/v1/embeddings")
      .send({ texts: ["x"], images: [b64(images[3])] })
      .expect(200);
    const res = await api().post("/v1/collections/old/search").send({ text: "x", limit: 8 }).expect(200);
    const o3 = res.body.results.find((r: { id: string }) => r.id === "o3");
    assert.ok(Math.abs(o3.itc - dot(emb.body.text_embeddings[0], emb.body.image_embeddings[0])) < 1e-4);
    // without kept images, re-embedding is refused, naming why
    await store.createCollection({ name: "lost", ...old, dim: 32, storeImages: false, storeTokens: true });
    const lost = (await store.getCollection("lost"))!;
    await store.upsertItems(lost, [
      { id: "x", text: null, metadata: {}, image: null, tokens: null, imageEmb: junk, textEmb: null },
    ]);
    isError(await api().post("/v1/collections/lost/reembed"), 409, "model_changed", /not kept/);
    await api().delete("/v1/collections/old").expect(200);
    await api().delete("/v1/collections/lost").expect(200);
  });

  t("OpenAPI: every collection route declares its body and its answers per status", async () => {
    const doc = (await api().get("/docs/json").expect(200)).body;
    const paths = Object.keys(doc.paths).filter((p) => p.startsWith("/v1/collections"));
    assert.deepEqual(paths.sort(), [
      "/v1/collections",
      "/v1/collections/{name}",
      "/v1/collections/{name}/imports/{job}",
      "/v1/collections/{name}/items",
      "/v1/collections/{name}/items/delete",
      "/v1/collections/{name}/items/{id}",
      "/v1/collections/{name}/items/{id}/image",
      "/v1/collections/{name}/jobs/{job}",
      "/v1/collections/{name}/reembed",
      "/v1/collections/{name}/search",
    ]);
    for (const p of paths)
      for (const [method, op] of Object.entries(doc.paths[p]) as [
        string,
        { responses: Record<string, unknown>; requestBody?: unknown },
      ][]) {
        for (const s of ["400", "404", "409", "503"]) assert.ok(op.responses[s], `${method} ${p}: ${s}`);
        if (method === "post" || method === "put") assert.ok(op.requestBody, `${method} ${p}: body`);
      }
  });
}
