// The driver under the SQL module (collections/sql.ts): a way to run parameterised statements, alone or several in
// one transaction. Two drivers: PGlite in a worker thread (pglite.ts), PostgreSQL through `pg` (postgres.ts). A
// driver throws StoreUnavailable when the database cannot be reached; SQL errors pass through with their SQLSTATE.

export interface Statement {
  sql: string;
  params?: unknown[];
}

export type Row = Record<string, unknown>;

export interface Db {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Runs the statements in one transaction (all or nothing); each statement's rows, in order. */
  transaction(statements: Statement[]): Promise<Row[][]>;
  close(): Promise<void>;
}

/** A SQL error's SQLSTATE (e.g. 23505 unique_violation), where the driver gave one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Bytes as a Buffer, whatever form the driver returned them in (pg: Buffer, PGlite: Uint8Array). */
export function toBuffer(x: unknown): Buffer | null {
  if (x === null || x === undefined) return null;
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new Error(`expected bytes, got ${typeof x}`);
}

export function toIso(x: unknown): string {
  return (x instanceof Date ? x : new Date(String(x))).toISOString();
}
