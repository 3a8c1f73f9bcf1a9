// Writes src/bundle/manifest.types.ts, the TypeScript types of manifest.json, from the JSON Schema both halves
// validate manifests with (training/dlip/export/manifest.schema.json), so the types are not written by hand a
// second time. test/unit/manifest.test.ts fails when the committed file differs from what this produces.
//   node --import tsx scripts/manifest-types.ts          (npm run --silent gen:types)
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compile, type JSONSchema } from "json-schema-to-typescript";
import prettier from "prettier";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SCHEMA_FILE = path.join(ROOT, "training/dlip/export/manifest.schema.json");
export const TYPES_FILE = path.join(ROOT, "src/bundle/manifest.types.ts");

const BANNER = `// Generated from training/dlip/export/manifest.schema.json by scripts/manifest-types.ts: do not edit, run
// \`npm run --silent gen:types\` after changing the schema (test/unit/manifest.test.ts checks this file is current).
// Objects list only the keys the schema names: a manifest may carry more, the server relies on none of them.`;

/** The contents TYPES_FILE should have for the schema as it is now. */
export async function manifestTypes(): Promise<string> {
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as JSONSchema;
  // allOf holds only the format-version rules (if/then between two fields), which no TypeScript type expresses;
  // compiled, they would turn Manifest into an intersection with an index signature that types nothing.
  delete schema.allOf;
  const ts = await compile(schema, "Manifest", {
    bannerComment: BANNER,
    additionalProperties: false, // see BANNER: the schema leaves objects open, the types list what it defines
    format: false,
  });
  const options = await prettier.resolveConfig(TYPES_FILE);
  return prettier.format(ts, { ...options, filepath: TYPES_FILE });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(TYPES_FILE, await manifestTypes());
  console.log(`wrote ${path.relative(ROOT, TYPES_FILE)}`);
}
