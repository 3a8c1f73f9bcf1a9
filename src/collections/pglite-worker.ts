// The PGlite worker thread: PostgreSQL (WASM) with pgvector, persisted in a data directory, run off the main thread so
// that a query never blocks the event loop (PGlite runs synchronously in the thread that hosts it). One message at a
// time per statement or transaction; PGlite itself serialises them on its single connection.
import { parentPort, workerData } from "node:worker_threads";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import type { Row } from "./db.js";
import type { PgliteReply, PgliteRequest } from "./pglite.js";

const port = parentPort!;
const { dataDir } = workerData as { dataDir: string };

const errorOf = (err: unknown) => ({
  message: String((err as Error)?.message ?? err),
  code: (err as { code?: string })?.code,
});

let db: PGlite;
try {
  db = await PGlite.create({ dataDir, extensions: { vector } });
  port.postMessage({ id: 0, rows: [] } satisfies PgliteReply);
} catch (err) {
  port.postMessage({ id: 0, error: errorOf(err) } satisfies PgliteReply);
  process.exit(1);
}

port.on("message", async (m: PgliteRequest) => {
  try {
    if (m.type === "query") {
      const r = await db.query(m.sql, m.params ?? []);
      port.postMessage({ id: m.id, rows: r.rows as Row[] } satisfies PgliteReply);
    } else if (m.type === "tx") {
      const out = await db.transaction(async (tx) => {
        const results: Row[][] = [];
        for (const s of m.statements) results.push((await tx.query(s.sql, s.params ?? [])).rows as Row[]);
        return results;
      });
      port.postMessage({ id: m.id, results: out } satisfies PgliteReply);
    } else {
      await db.close();
      port.postMessage({ id: m.id, rows: [] } satisfies PgliteReply);
      port.close();
    }
  } catch (err) {
    port.postMessage({ id: m.id, error: errorOf(err) } satisfies PgliteReply);
  }
});
