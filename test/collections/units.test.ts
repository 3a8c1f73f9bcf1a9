// Pure parts of the collections code: filter parsing and its SQL (values only ever as parameters), fp16 token
// packing against hand-computed half-precision values, and the name/id/metadata checks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { filterSql, parseFilter } from "../../src/collections/filter.js";
import { decodeHalf, encodeHalf } from "../../src/collections/tokens.js";
import { checkName, idFault, metadataFault } from "../../src/collections/validate.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { ApiError } from "../../src/errors.js";

test("filters: parsed per key; SQL carries keys and values as parameters only", () => {
  const f = parseFilter({
    kind: "photo'; DROP TABLE dlip_items; --",
    n: { gte: 1, lt: 5 },
    tag: { in: ["a", 2, null] },
  });
  const params: unknown[] = ["collection"];
  const sql = filterSql(f, params);
  assert.ok(!sql.includes("DROP") && !sql.includes("photo") && !sql.includes("kind"), sql);
  assert.deepEqual(params, [
    "collection",
    "kind",
    JSON.stringify("photo'; DROP TABLE dlip_items; --"),
    "n",
    "1",
    "5",
    "tag",
    JSON.stringify(["a", 2, null]),
  ]);
  assert.match(
    sql,
    /^\(metadata -> \$2 = \$3::jsonb\) AND \(.*>= \$5::numeric AND .*< \$6::numeric\) AND \(metadata -> \$7 IN/,
  );
});

test("filters: every malformed form is a 400 naming the key", () => {
  const bad: [unknown, RegExp][] = [
    [[1], /must be an object/],
    [null, /must be an object/],
    [{}, /empty/],
    [Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 1])), /at most 16/],
    [{ "a b": 1 }, /must match/],
    [{ n: Infinity }, /finite/],
    [{ n: [1] }, /"in"/],
    [{ n: {} }, /empty object/],
    [{ n: { in: "x" } }, /in must be an array/],
    [{ n: { in: [{}] } }, /values must be/],
    [{ n: { in: Array(257).fill(1) } }, /1 to 256/],
    [{ n: { in: [1], gt: 0 } }, /cannot be combined/],
    [{ n: { between: [1, 2] } }, /unknown operator 'between'/],
    [{ n: { gt: "1" } }, /n\.gt must be a number/],
    [{ n: { gt: 1, gte: 2 } }, /gt or gte/],
    [{ n: { lt: 1, lte: 2 } }, /lt or lte/],
  ];
  for (const [raw, message] of bad)
    assert.throws(
      () => parseFilter(raw),
      (e: unknown) => e instanceof ApiError && e.status === 400 && message.test(e.message),
      JSON.stringify(raw),
    );
});

test("fp16 tokens: exact where half precision is, nearest even otherwise, specials kept", () => {
  const values = [0, -0, 1, -2, 0.5, 65504, 1 / 1024, 2 ** -24, 1.0009765625, 3.14159, 1e-8, 70000, -70000];
  const back = decodeHalf(encodeHalf(new Float32Array(values)));
  assert.deepEqual(Array.from(back.slice(0, 9)), [0, -0, 1, -2, 0.5, 65504, 1 / 1024, 2 ** -24, 1.0009765625]);
  assert.equal(back[9], 3.140625); // 3.14159 -> nearest half: 3 + 145/1024
  assert.equal(back[10], 0); // below half's smallest subnormal
  assert.deepEqual([back[11], back[12]], [Infinity, -Infinity]);
  assert.ok(Number.isNaN(decodeHalf(encodeHalf(new Float32Array([NaN])))[0]));
  // ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10
  assert.equal(decodeHalf(encodeHalf(new Float32Array([1 + 2 ** -11])))[0], 1);
  assert.equal(decodeHalf(encodeHalf(new Float32Array([1 + 3 * 2 ** -11])))[0], 1 + 2 * 2 ** -10);
  // relative error within half's 2^-11 on activations of the usual range
  const r = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 8);
  decodeHalf(encodeHalf(r)).forEach((x, i) => assert.ok(Math.abs(x - r[i]) <= Math.abs(r[i]) * 2 ** -11 + 2 ** -24));
});

test("names, ids and metadata: what is refused and why", () => {
  for (const ok of ["a", "photos_2024-x", "0".repeat(64)]) assert.equal(checkName(ok), ok);
  for (const bad of ["", "A", "_a", "a".repeat(65), "a/b", "a.b", "ü"])
    assert.throws(() => checkName(bad), /must match/);
  assert.equal(idFault("img-001.jpg"), null);
  assert.equal(idFault("x".repeat(100)), null);
  assert.equal(idFault("s3:bucket@v=2~x+y"), null);
  for (const bad of ["", ".x", "a b", "a/b", "x".repeat(101), "é"]) assert.match(idFault(bad)!, /must match/);
  assert.equal(metadataFault({ a: [1, { b: null }] }, 100), null);
  assert.match(metadataFault([1], 100)!, /JSON object/);
  assert.match(metadataFault("x", 100)!, /JSON object/);
  assert.match(metadataFault({ a: "x".repeat(200) }, 100)!, /at most 100/);
  assert.match(metadataFault({ a: "x\u0000" }, 100)!, /NUL/);
  assert.match(metadataFault({ a: "x\ud800y" }, 100)!, /lone UTF-16 surrogate/);
  assert.match(metadataFault({ ["k\udc00"]: 1 }, 100)!, /lone UTF-16 surrogate/);
  assert.equal(metadataFault({ a: "\\ud800 is text", b: "😀" }, 100), null); // a backslash, and a whole pair
  assert.throws(() => parseFilter({ a: "x\ud800" }), /a value/);
  assert.throws(() => parseFilter({ a: { in: ["\udfff"] } }), /values must be/);
  assert.equal(parseFilter({ a: "😀" }).length, 1);
});

test("collection settings: read once with the others, refused when they cannot work", () => {
  const cfg = loadConfig({ DATABASE_URL: "postgres://u@127.0.0.1:5432/db", COLLECTIONS_MAX_ITEMS: "8" }, [
    "--collections-data-dir",
    "/srv/store",
  ]);
  assert.deepEqual(
    [cfg.databaseUrl, cfg.collectionsDataDir, cfg.collectionsMaxItems, cfg.collectionsMaxMetadataBytes],
    ["postgres://u@127.0.0.1:5432/db", "/srv/store", 8, 8192],
  );
  const refused = (env: Record<string, string>, message: RegExp) =>
    assert.throws(
      () => loadConfig(env, []),
      (e: unknown) => e instanceof ConfigError && message.test((e as Error).message),
    );
  refused({ COLLECTIONS_MAX_ITEMS: "0" }, /COLLECTIONS_MAX_ITEMS must be an integer >= 1/);
  refused({ COLLECTIONS_MAX_ITEMS: "300" }, /must not exceed MAX_QUEUE \(256\)/);
  refused({ COLLECTIONS_MAX_METADATA_BYTES: "1" }, /COLLECTIONS_MAX_METADATA_BYTES must be an integer >= 2/);
});
