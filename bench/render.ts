// Writes results.md again from a results folder's JSON (models.json, server.json, full.json) and the plots it holds, without
// measuring anything: `npm run bench:report [-- DIR]` (default bench/results), after a change to the report's code.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderCollections } from "./collections-report.js";
import { PLOTS, renderReport } from "./report.js";

const dir = path.resolve(process.argv[2] ?? "bench/results");
const read = (name: string) => {
  const file = path.join(dir, name);
  return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : null;
};
const models = read("models.json");
const server = read("server.json");
const full = read("full.json");
const gpu = read("gpu.json");
const collections = read("collections.json");
if (!models && !server && !full && !collections) {
  console.error(`${dir}: no models.json, server.json, full.json or collections.json to render`);
  process.exit(2);
}
if (collections) {
  writeFileSync(path.join(dir, "collections.md"), renderCollections(collections));
  console.log(`wrote ${path.join(dir, "collections.md")}`);
}
if (models || server || full) {
  const plots = Object.keys(PLOTS).filter((p) => existsSync(path.join(dir, p)));
  writeFileSync(path.join(dir, "results.md"), renderReport(models, server, plots, full, gpu));
  console.log(`wrote ${path.join(dir, "results.md")}`);
}
