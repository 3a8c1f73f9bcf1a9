// Metadata filters: `{"key": value}` (equality), `{"key": {"in": [...]}}`, `{"key": {"gte": x, "lt": y}}` (also
// `gt`, `lte`; numbers only); several keys all hold. Validated into a Filter (clear 400s naming the fault), then
// compiled into parameterised SQL over the items' `metadata` jsonb (keys and values are parameters, never SQL text).
import { invalidField } from "../errors.js";

export const MAX_FILTER_KEYS = 16;
export const MAX_IN_VALUES = 256;
const KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const RANGE_OPS = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;
type RangeOp = keyof typeof RANGE_OPS;

type Scalar = string | number | boolean | null;
export type Condition =
  | { op: "eq"; value: Scalar }
  | { op: "in"; values: Scalar[] }
  | { op: "range"; bounds: Partial<Record<RangeOp, number>> };
export type Filter = { key: string; cond: Condition }[];

// a string must be well-formed Unicode (no lone surrogate): PostgreSQL's jsonb refuses the escape JSON.stringify writes
const isScalar = (v: unknown): v is Scalar =>
  v === null ||
  (typeof v === "string" && !/[\ud800-\udfff]/.test(v.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ""))) ||
  typeof v === "boolean" ||
  (typeof v === "number" && Number.isFinite(v));

/** A request's `filter` as a Filter; throws 400 invalid_field naming the key and what was wrong. */
export function parseFilter(raw: unknown, label = "filter"): Filter {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw invalidField(`${label} must be an object of metadata keys, e.g. {"kind": "photo"}`, label);
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) throw invalidField(`${label} is empty: give at least one metadata key`, label);
  if (entries.length > MAX_FILTER_KEYS)
    throw invalidField(`${label} has ${entries.length} keys; at most ${MAX_FILTER_KEYS}`, label);
  return entries.map(([key, v]) => {
    const at = `${label}.${key.slice(0, 64)}`;
    if (!KEY.test(key)) throw invalidField(`${label} key '${key.slice(0, 64)}' must match ${KEY.source}`, label);
    if (isScalar(v)) return { key, cond: { op: "eq", value: v } };
    if (typeof v === "number") throw invalidField(`${at} must be a finite number`, label);
    if (Array.isArray(v))
      throw invalidField(`${at} is an array; to match any of several values write {"in": [...]}`, label);
    if (typeof v !== "object") throw invalidField(`${at} must be a value, {"in": [...]} or a range`, label);
    const ops = Object.entries(v as Record<string, unknown>);
    if (ops.length === 0) throw invalidField(`${at} is an empty object; give "in" or gt/gte/lt/lte`, label);
    if (ops.some(([op]) => op === "in")) {
      if (ops.length !== 1) throw invalidField(`${at}: "in" cannot be combined with other operators`, label);
      const values = (v as { in: unknown }).in;
      if (!Array.isArray(values) || values.length === 0 || values.length > MAX_IN_VALUES)
        throw invalidField(`${at}.in must be an array of 1 to ${MAX_IN_VALUES} values`, label);
      if (!values.every(isScalar))
        throw invalidField(`${at}.in values must be strings, finite numbers, booleans or null`, label);
      return { key, cond: { op: "in", values } };
    }
    const bounds: Partial<Record<RangeOp, number>> = {};
    for (const [op, b] of ops) {
      if (!(op in RANGE_OPS))
        throw invalidField(`${at}: unknown operator '${op.slice(0, 32)}' (use in, gt, gte, lt, lte)`, label);
      if (typeof b !== "number" || !Number.isFinite(b)) throw invalidField(`${at}.${op} must be a number`, label);
      bounds[op as RangeOp] = b;
    }
    if (bounds.gt !== undefined && bounds.gte !== undefined)
      throw invalidField(`${at}: give gt or gte, not both`, label);
    if (bounds.lt !== undefined && bounds.lte !== undefined)
      throw invalidField(`${at}: give lt or lte, not both`, label);
    return { key, cond: { op: "range", bounds } };
  });
}

/**
 * The filter as SQL conditions over `metadata`, each joined with AND, its values appended to `params` ($n refers to
 * params[n - 1]). A range matches numbers only: a key holding a string or missing never satisfies it.
 */
export function filterSql(filter: Filter, params: unknown[]): string {
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  return filter
    .map(({ key, cond }) => {
      const k = p(key);
      switch (cond.op) {
        case "eq":
          return `metadata -> ${k} = ${p(JSON.stringify(cond.value))}::jsonb`;
        case "in":
          return `metadata -> ${k} IN (SELECT jsonb_array_elements(${p(JSON.stringify(cond.values))}::jsonb))`;
        case "range": {
          const num = `(CASE WHEN jsonb_typeof(metadata -> ${k}) = 'number' THEN (metadata ->> ${k})::numeric END)`;
          return Object.entries(cond.bounds)
            .map(([op, b]) => `${num} ${RANGE_OPS[op as RangeOp]} ${p(String(b))}::numeric`)
            .join(" AND ");
        }
      }
    })
    .map((c) => `(${c})`)
    .join(" AND ");
}
