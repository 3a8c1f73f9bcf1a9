// The storage contract on the embedded store: PGlite with pgvector in a worker thread, in a temporary directory.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { PgliteDb } from "../../src/collections/pglite.js";
import { SqlStore } from "../../src/collections/sql.js";
import { apiContract } from "./api-contract.js";
import { storeContract } from "./store-contract.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-pglite-"));
after(() => rmSync(dir, { recursive: true, force: true }));

storeContract("pglite", async () => {
  // what createStore() makes without DATABASE_URL, with one planner setting on PGlite's single session: sequential
  // scans off, so that the searches go through the HNSW index even on these small tables (the planner would scan
  // a few thousand rows exactly, and the iterative-scan test would prove nothing)
  const db = new PgliteDb(dir);
  const store = new SqlStore("pglite", db);
  await store.open();
  await db.query("SET enable_seqscan = off");
  return store;
});

apiContract("pglite api", async () => ({ collectionsDataDir: path.join(dir, "api") }));
