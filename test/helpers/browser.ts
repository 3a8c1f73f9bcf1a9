// Debian's chromium driven by playwright-core (which never downloads a browser): found on the PATH or where
// scripts/get-chromium.sh (run by `npm test`) unpacked it, launched headless with a fresh profile in a temp folder.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { ROOT } from "./app.js";

/** The chromium binary's absolute path: on the PATH, else .cache/chromium/bin/chromium (scripts/get-chromium.sh). */
export function findChromium(): string | null {
  const onPath = (process.env.PATH ?? "").split(path.delimiter).filter(Boolean);
  const candidates = [
    ...["chromium", "chromium-browser"].flatMap((name) => onPath.map((dir) => path.join(dir, name))),
    path.join(ROOT, ".cache/chromium/bin/chromium"),
  ];
  for (const file of candidates.filter((f) => path.isAbsolute(f) && existsSync(f))) {
    const r = spawnSync(file, ["--headless", "--no-sandbox", "--version"], { encoding: "utf8" });
    if (r.status === 0 && /chrom/i.test(r.stdout)) return file;
  }
  return null;
}

export const NO_CHROMIUM =
  "chromium not found: run `bash scripts/get-chromium.sh` (npm test does) or install Debian's chromium";

// As root (no sandbox), with no network but the page's server: nothing fetched in the background, no GPU
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Browser {
  context: BrowserContext;
  close: () => Promise<void>;
}

/** A headless chromium with a fresh user data dir (removed on close); viewport in CSS pixels. */
export async function launchChromium(
  executablePath: string,
  viewport = { width: 1200, height: 900 },
  deviceScaleFactor = 1,
): Promise<Browser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), "dlip-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: FLAGS,
    viewport,
    deviceScaleFactor,
    timeout: 60_000,
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
