// The scale-out implementation's driver: PostgreSQL with pgvector (>= 0.8 for iterative index scans) through `pg`,
// when DATABASE_URL is set, so that several replicas share one database. The pool reconnects by itself: a connection
// the server dropped (restart, failover) is discarded and the next query opens a new one. Until the database answers
// again, every call throws StoreUnavailable (the routes' 503 with Retry-After).
import pg from "pg";
import { sqlState, type Db, type Row, type Statement } from "./db.js";
import { StoreUnavailable } from "./store.js";

// connection-level failures: class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot
// connect now), 53300 (too many connections); node's socket errors; pg's own "Connection terminated" family
const UNAVAILABLE_STATES = /^(08...|57P0[123]|53300)$/;
const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN"]);

export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  const state = sqlState(err);
  if (state !== undefined && UNAVAILABLE_STATES.test(state)) return true;
  if (e?.code && UNAVAILABLE_ERRNO.has(e.code)) return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(
    String(e?.message ?? ""),
  );
}

export class PostgresDb implements Db {
  private readonly pool: pg.Pool;

  constructor(url: string, opts: { maxConnections?: number; connectTimeoutMs?: number } = {}) {
    this.pool = new pg.Pool({
      connectionString: url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 3000,
      idleTimeoutMillis: 30_000,
    });
    // an idle connection the server closed: the pool drops it and reports here; without a listener it would crash
    this.pool.on("error", () => {});
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isUnavailable(err)) throw new StoreUnavailable(String((err as Error).message ?? err));
      throw err;
    }
  }

  query(sql: string, params?: unknown[]): Promise<Row[]> {
    return this.guard(async () => (await this.pool.query(sql, params)).rows as Row[]);
  }

  transaction(statements: Statement[]): Promise<Row[][]> {
    return this.guard(async () => {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      // the server ending the connection between two statements is emitted on the client, not thrown: note it (the
      // next statement then fails) instead of letting it crash the process
      const onError = (err: Error) => (broken = err);
      client.on("error", onError);
      try {
        await client.query("BEGIN");
        const out: Row[][] = [];
        for (const s of statements) out.push((await client.query(s.sql, s.params)).rows as Row[]);
        await client.query("COMMIT");
        return out;
      } catch (err) {
        if (isUnavailable(err)) broken = err as Error;
        else await client.query("ROLLBACK").catch((e: Error) => (broken = e));
        throw err;
      } finally {
        client.off("error", onError);
        client.release(broken); // a broken connection is destroyed, not returned to the pool
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
