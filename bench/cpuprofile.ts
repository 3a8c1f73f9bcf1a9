// Where the server's threads spend their time: the .cpuprofile files `node --cpu-prof` writes (one per thread: the
// HTTP thread and each inference worker) summarised as the functions with the most self time.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number; // microseconds
  endTime: number;
  samples?: number[];
}

export interface ThreadProfile {
  file: string;
  seconds: number; // profiled wall time
  idle_share: number; // samples in (idle) / (program) / (garbage collector) are reported apart
  gc_share: number;
  top: { function: string; where: string; self_share: number }[]; // by self time, busiest first
}

/** `where` as a short path: node_modules/pkg/file or src/file, with the line. */
function shortUrl(url: string, line: number): string {
  if (!url) return "(native)";
  const p = url.replace(/^file:\/\//, "");
  const i = p.lastIndexOf("node_modules/");
  const rel = i >= 0 ? p.slice(i) : p.includes("/dist/") ? p.slice(p.lastIndexOf("/dist/") + 1) : path.basename(p);
  return `${rel}:${line + 1}`;
}

export function summariseProfile(file: string, topN = 12): ThreadProfile {
  const prof = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const total = prof.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0) || 1;
  const byFn = new Map<string, { function: string; where: string; hits: number }>();
  let idle = 0;
  let gc = 0;
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0;
    const name = n.callFrame.functionName || "(anonymous)";
    if (name === "(idle)") idle += hits;
    if (name === "(garbage collector)") gc += hits;
    const where = shortUrl(n.callFrame.url, n.callFrame.lineNumber);
    const key = `${name}@${where}`;
    const e = byFn.get(key) ?? { function: name, where, hits: 0 };
    e.hits += hits;
    byFn.set(key, e);
  }
  const top = [...byFn.values()]
    .filter((e) => e.function !== "(idle)")
    .sort((a, b) => b.hits - a.hits)
    .slice(0, topN)
    .map((e) => ({ function: e.function, where: e.where, self_share: Math.round((1000 * e.hits) / total) / 1000 }));
  return {
    file: path.basename(file),
    seconds: Math.round((prof.endTime - prof.startTime) / 1e4) / 100,
    idle_share: Math.round((1000 * idle) / total) / 1000,
    gc_share: Math.round((1000 * gc) / total) / 1000,
    top,
  };
}

export function summariseDir(dir: string): ThreadProfile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .map((f) => summariseProfile(path.join(dir, f)));
}
