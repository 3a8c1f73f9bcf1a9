// The storage contract: what every CollectionStore implementation must do, run against each (pglite.test.ts,
// postgres.test.ts) through the real implementation and a real database. Vectors are synthetic unit vectors with a
// brute-force reference; filters are checked against the same filter evaluated in JavaScript.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFilter, type Filter } from "../../src/collections/filter.js";
import type { CollectionStore, ItemWrite, NewCollection } from "../../src/collections/store.js";
import { rng } from "../../bench/load.js";

const DIM = 32;

export function unitVector(r: () => number, dim = DIM): number[] {
  const v = Array.from({ length: dim }, () => r() * 2 - 1);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);

export function newCollection(name: string, over: Partial<NewCollection> = {}): NewCollection {
  return { name, model: "micro", weights: "a".repeat(64), dim: DIM, storeImages: false, storeTokens: true, ...over };
}

function item(
  id: string,
  imageEmb: number[] | null,
  metadata: Record<string, unknown> = {},
  text: string | null = null,
): ItemWrite {
  return { id, text, metadata, image: null, tokens: null, imageEmb, textEmb: text ? imageEmb : null };
}

/** The filter evaluated in JavaScript: the reference the SQL must agree with. */
function matches(filter: Filter, metadata: Record<string, unknown>): boolean {
  return filter.every(({ key, cond }) => {
    const has = Object.prototype.hasOwnProperty.call(metadata, key);
    const v = metadata[key];
    if (cond.op === "eq") return has && v === cond.value;
    if (cond.op === "in") return has && cond.values.some((x) => x === v);
    if (typeof v !== "number") return false;
    const b = cond.bounds;
    return (
      (b.gt === undefined || v > b.gt) &&
      (b.gte === undefined || v >= b.gte) &&
      (b.lt === undefined || v < b.lt) &&
      (b.lte === undefined || v <= b.lte)
    );
  });
}

/** Registers the contract tests for the store `open()` returns (opened, empty). */
export function storeContract(label: string, open: () => Promise<CollectionStore>): void {
  let store: CollectionStore;
  const t = (name: string, fn: () => Promise<void>) =>
    test(`${label}: ${name}`, async () => {
      store ??= await open();
      await fn();
    });

  t("opening again migrates nothing and keeps the data (idempotent)", async () => {
    assert.equal(await store.createCollection(newCollection("reopen")), true);
    await store.open();
    assert.equal((await store.getCollection("reopen"))?.name, "reopen");
    await store.deleteCollection("reopen");
  });

  t("collections: create, duplicate refused, list, get, delete with items and jobs", async () => {
    assert.equal(await store.createCollection(newCollection("c1")), true);
    assert.equal(await store.createCollection(newCollection("c1")), false);
    await store.createCollection(newCollection("c0", { storeImages: true, storeTokens: false }));
    const list = await store.listCollections();
    assert.deepEqual(
      list.map((c) => [c.name, c.storeImages, c.storeTokens, c.items, c.dim]),
      [
        ["c0", true, false, 0, DIM],
        ["c1", false, true, 0, DIM],
      ],
    );
    const c1 = (await store.getCollection("c1"))!;
    await store.upsertItems(c1, [item("x", unitVector(rng(1)))]);
    assert.equal(await store.createJob({ job: "j", collection: "c1", kind: "import" }), true);
    assert.equal((await store.getCollection("c1"))!.items, 1);
    assert.equal(await store.deleteCollection("c1"), true);
    assert.equal(await store.deleteCollection("c1"), false);
    assert.equal(await store.getCollection("c1"), null);
    // a new collection of the same name starts empty: no item nor job of the old one comes back
    await store.createCollection(newCollection("c1"));
    assert.equal(await store.getItem("c1", "x"), null);
    assert.equal(await store.getJob("c1", "j"), null);
    await store.deleteCollection("c1");
    await store.deleteCollection("c0");
  });

  t("items: upsert inserts then replaces; get; delete by id; bytes round-trip", async () => {
    await store.createCollection(newCollection("items"));
    const c = (await store.getCollection("items"))!;
    const tokens = Buffer.from([1, 2, 3, 250]);
    await store.upsertItems(c, [
      { ...item("a", unitVector(rng(2)), { k: 1 }, "first"), tokens, image: Buffer.from("img") },
      item("b", null, { k: 2 }, "only text"),
    ]);
    const a = (await store.getItem("items", "a"))!;
    assert.deepEqual(
      [a.text, a.metadata, a.hasImage, a.model, a.weights],
      ["first", { k: 1 }, true, "micro", "a".repeat(64)],
    );
    assert.equal((await store.getItem("items", "b"))!.hasImage, false);
    const [cand] = await store.candidates("items", ["a"]);
    assert.deepEqual([cand.tokens, cand.image, cand.text], [tokens, Buffer.from("img"), "first"]);
    await store.upsertItems(c, [item("a", unitVector(rng(3)), { k: 9, s: "ü\"'; DROP TABLE x" }, "second")]);
    const a2 = (await store.getItem("items", "a"))!;
    assert.deepEqual([a2.text, a2.metadata], ["second", { k: 9, s: "ü\"'; DROP TABLE x" }]);
    assert.ok(a2.updated >= a.updated);
    assert.equal((await store.getCollection("items"))!.items, 2);
    assert.equal(await store.deleteItems("items", ["a", "nope"]), 1);
    assert.equal(await store.getItem("items", "a"), null);
    assert.equal(await store.getItem("other", "b"), null);
    await store.deleteCollection("items");
  });

  t(
    "search: the k nearest by cosine, best first, equal to a brute-force scan; text and image vectors apart",
    async () => {
      await store.createCollection(newCollection("knn"));
      const c = (await store.getCollection("knn"))!;
      const r = rng(4);
      const rows = Array.from({ length: 200 }, (_, i) => item(`i${i}`, unitVector(r), { i }, i % 2 ? `t${i}` : null));
      await store.upsertItems(c, rows);
      const q = unitVector(r);
      const hits = await store.search(c, { target: "image", vector: q, k: 10, filter: null });
      const exact = rows
        .map((x) => ({ id: x.id, s: dot(q, x.imageEmb!) }))
        .sort((x, y) => y.s - x.s)
        .slice(0, 10);
      assert.deepEqual(
        hits.map((h) => h.id),
        exact.map((e) => e.id),
      );
      hits.forEach((h, i) => assert.ok(Math.abs(h.itc - exact[i].s) < 1e-5, `${h.itc} vs ${exact[i].s}`));
      const texts = await store.search(c, { target: "text", vector: q, k: 200, filter: null });
      assert.equal(texts.length, 100); // only the items with a text
      assert.ok(texts.every((h) => Number(h.id.slice(1)) % 2 === 1));
      const self = await store.search(c, { target: "image", vector: rows[17].imageEmb!, k: 1, filter: null });
      assert.equal(self[0].id, "i17");
      assert.ok(Math.abs(self[0].itc - 1) < 1e-5);
      await store.deleteCollection("knn");
    },
  );

  t("filters: equality, in, ranges and several keys select exactly what the filter says", async () => {
    await store.createCollection(newCollection("filters"));
    const c = (await store.getCollection("filters"))!;
    const r = rng(5);
    const kinds = ["photo", "scan", "1", 1, true, null];
    const rows = Array.from({ length: 120 }, (_, i) => {
      const metadata: Record<string, unknown> = { kind: kinds[i % kinds.length], n: i % 10 };
      if (i % 7 === 0) metadata.n = String(i % 10); // a string never satisfies a range
      if (i % 11 === 0) delete metadata.kind;
      if (i % 13 === 0) metadata.score = i / 10;
      return item(`f${i}`, unitVector(r), metadata);
    });
    await store.upsertItems(c, rows);
    const filters = [
      { kind: "photo" },
      { kind: "1" },
      { kind: 1 },
      { kind: true },
      { kind: null },
      { kind: { in: ["scan", 1] } },
      { n: { gte: 3, lt: 6 } },
      { n: { gt: 8 } },
      { n: { lte: 0 } },
      { kind: "photo", n: { gte: 4 } },
      { score: { gt: 2.5 } },
      { missing: "x" },
    ];
    const q = unitVector(r);
    for (const raw of filters) {
      const filter = parseFilter(raw);
      const want = rows
        .filter((x) => matches(filter, x.metadata))
        .map((x) => x.id)
        .sort();
      const got = (await store.search(c, { target: "image", vector: q, k: 1000, filter })).map((h) => h.id).sort();
      assert.deepEqual(got, want, JSON.stringify(raw));
    }
    const filter = parseFilter({ kind: { in: ["photo", "scan"] }, n: { lt: 5 } });
    const want = rows.filter((x) => matches(filter, x.metadata)).length;
    assert.ok(want > 0);
    assert.equal(await store.deleteMatching("filters", filter), want);
    assert.equal((await store.getCollection("filters"))!.items, rows.length - want);
    await store.deleteCollection("filters");
  });

  t("a filtered search over the HNSW index still returns k rows when k match (iterative scan)", async () => {
    await store.createCollection(newCollection("sparse"));
    const c = (await store.getCollection("sparse"))!;
    const r = rng(6);
    // 3,000 rows, 1 in 100 passing the filter. A range filter, which the planner guesses keeps a third of the rows,
    // so that it walks the HNSW index (an equality it guesses keeps few, and sorts them exactly); with ef_search 40
    // and no iterative scan about 0.4 of the 20 asked for would come back
    const rows = Array.from({ length: 3000 }, (_, i) => item(`s${i}`, unitVector(r), { n: i }));
    for (let i = 0; i < rows.length; i += 500) await store.upsertItems(c, rows.slice(i, i + 500));
    const q = unitVector(r);
    const hits = await store.search(c, {
      target: "image",
      vector: q,
      k: 20,
      filter: parseFilter({ n: { gte: 2970 } }),
    });
    assert.equal(hits.length, 20);
    assert.ok(hits.every((h) => (h.metadata.n as number) >= 2970));
    for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].itc >= hits[i].itc, "best first");
    await store.deleteCollection("sparse");
  });

  t("model identity: stale items counted and listed by id, rebinding the collection", async () => {
    await store.createCollection(newCollection("stale", { storeImages: true }));
    const c = (await store.getCollection("stale"))!;
    await store.upsertItems(c, [
      { ...item("p", unitVector(rng(7))), image: Buffer.from("png") },
      item("q", unitVector(rng(8))), // an image not kept: cannot be re-embedded
      item("r", null, {}, "text only"),
    ]);
    const next = { model: "micro", weights: "b".repeat(64) };
    assert.deepEqual(await store.staleCount("stale", next), { stale: 3, unrecoverable: 1 });
    assert.deepEqual(
      (await store.staleItems("stale", next, "", 2)).map((x) => x.id),
      ["p", "q"],
    );
    assert.deepEqual(
      (await store.staleItems("stale", next, "q", 2)).map((x) => x.id),
      ["r"],
    );
    await store.updateEmbeddings(c, next, [{ id: "p", imageEmb: unitVector(rng(9)), textEmb: null, tokens: null }]);
    assert.equal((await store.getItem("stale", "p"))!.weights, next.weights);
    assert.deepEqual(await store.staleCount("stale", next), { stale: 2, unrecoverable: 1 });
    await store.rebindCollection("stale", next);
    assert.equal((await store.getCollection("stale"))!.weights, next.weights);
    await store.deleteCollection("stale");
  });

  t("jobs: created once per id, progress stored and read back", async () => {
    await store.createCollection(newCollection("jobs"));
    assert.equal(await store.createJob({ job: "imp-1", collection: "jobs", kind: "import" }), true);
    assert.equal(await store.createJob({ job: "imp-1", collection: "jobs", kind: "import" }), false);
    assert.equal(await store.createJob({ job: "x", collection: "no-such", kind: "import" }), false);
    const j = (await store.getJob("jobs", "imp-1"))!;
    assert.deepEqual([j.status, j.received, j.succeeded, j.failed, j.errors], ["running", 0, 0, 0, []]);
    await store.updateJob({
      ...j,
      status: "done",
      received: 10,
      succeeded: 9,
      failed: 1,
      errors: [{ line: 3, code: "invalid_json", message: "m" }],
    });
    const j2 = (await store.getJob("jobs", "imp-1"))!;
    assert.deepEqual(
      [j2.status, j2.received, j2.succeeded, j2.failed, j2.errors],
      ["done", 10, 9, 1, [{ line: 3, code: "invalid_json", message: "m" }]],
    );
    await store.deleteCollection("jobs");
  });

  test(`${label}: close`, async () => {
    await store?.close();
  });
}
