// Variants of the micro fixture bundle in a temporary MODELS_DIR: copies of test/fixtures/micro whose manifest.json
// has another name and `tasks`, without the graphs those tasks do not need (format 4: a bundle holds its tasks'
// graphs only; the manifest lists the other files' checksums, not its own).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GRAPHS, graphsForTasks } from "../../src/bundle/contract.js";
import type { Task } from "../../src/routes/task.js";
import { MICRO } from "./app.js";

/** A MODELS_DIR holding one micro copy per entry (bundle name -> its tasks); `remove()` deletes it. */
export function microVariants(variants: Record<string, Task[]>): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "dlip-tasks-"));
  for (const [name, tasks] of Object.entries(variants)) {
    const out = path.join(dir, name);
    cpSync(MICRO, out, { recursive: true });
    const file = path.join(out, "manifest.json");
    const manifest = JSON.parse(readFileSync(file, "utf8"));
    const keep = graphsForTasks(tasks);
    for (const g of GRAPHS.filter((x) => !keep.includes(x))) {
      const spec = manifest.graphs[g];
      rmSync(path.join(out, spec.file));
      delete manifest.files[spec.file];
      delete manifest.graphs[g];
    }
    writeFileSync(file, JSON.stringify({ ...manifest, name, tasks }, null, 2));
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
