// The real PostgreSQL test server (test/helpers/postgres.ts) that the collection store's contract and database-fault
// tests run against: it starts as an unprivileged user on loopback, pgvector's HNSW index works, data survives a
// restart on the same URL, and a stopped server refuses connections.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg?.cleanup();
});

test("the server listens on 127.0.0.1 and pgvector's HNSW cosine index answers", async () => {
  assert.match(pg.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
  assert.equal(await pg.psql("SHOW listen_addresses"), "127.0.0.1");
  assert.match(await pg.psql("SHOW server_version"), /^18\./);
  const url = await pg.createDatabase("harness");
  assert.match(url, /\/harness$/);
  const out = await pg.psql(
    `SELECT extversion FROM pg_extension WHERE extname = 'vector';
     CREATE TABLE items (id int PRIMARY KEY, emb vector(3));
     INSERT INTO items SELECT i, ARRAY[cos(i), sin(i), 1]::vector FROM generate_series(1, 200) i;
     CREATE INDEX ON items USING hnsw (emb vector_cosine_ops);
     SET enable_seqscan = off;
     SELECT id FROM items ORDER BY emb <=> '[1, 0, 1]' LIMIT 1;`,
    "harness",
  );
  const [version, nearest] = out.split("\n");
  assert.match(version, /^0\.8\./);
  assert.equal(nearest, "44"); // i = 44 rad is the nearest angle to 0 (mod 2*pi) among 1..200
});

test("the server's processes do not run as root", async () => {
  const pid = pg.pid;
  assert.equal(String(pid), (await pg.psql("SELECT pg_read_file('postmaster.pid')")).split("\n")[0]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
  assert.ok(uid !== undefined && uid !== "0", `postmaster ${pid} runs as uid ${uid}`);
  if (process.getuid?.() !== 0) assert.equal(Number(uid), process.getuid?.());
});

test("stop() refuses connections; start() brings the same URL back with the data", async () => {
  await pg.psql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)");
  const url = pg.url;
  await pg.stop();
  assert.equal(pg.running, false);
  await assert.rejects(pg.psql("SELECT 1"));
  await pg.start();
  assert.equal(pg.url, url);
  assert.equal(await pg.psql("SELECT v FROM kept"), "7");
  await pg.restart("immediate"); // crash-like: recovery replays the WAL
  assert.equal(await pg.psql("SELECT v FROM kept"), "7");
});
