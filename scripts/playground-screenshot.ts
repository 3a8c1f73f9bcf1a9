// Makes the README's playground screenshot (docs/playground.png): serves the shipped default model
// (models/dlip-student) on 127.0.0.1, drives the page in Debian's chromium (scripts/get-chromium.sh) with Shapes test
// images from the Python generator (training/.venv), and writes a small palette PNG.
//   node --import tsx scripts/playground-screenshot.ts [--out docs/playground.png] [--query 3]
// --query picks which of the first four Shapes test images is the captioned and questioned one (the others are the
// ranking candidates and the search images); the README says which one its screenshot shows.
import { rmSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { buildApp } from "../src/app.js";
import { defaultConfig } from "../src/config.js";
import { ROOT } from "../test/helpers/app.js";
import { findChromium, launchChromium, NO_CHROMIUM } from "../test/helpers/browser.js";
import { synthShapesTest } from "../test/helpers/shapes.js";

const { values } = parseArgs({
  options: { out: { type: "string", default: "docs/playground.png" }, query: { type: "string", default: "0" } },
});
const queryIndex = Number(values.query);
if (!Number.isInteger(queryIndex) || queryIndex < 0 || queryIndex > 3) throw new Error("--query must be 0, 1, 2 or 3");
const out = path.resolve(ROOT, values.out!);
const chromium = findChromium();
if (!chromium) throw new Error(NO_CHROMIUM);

const { dir, images } = synthShapesTest(4);
const app = await buildApp(
  { ...defaultConfig(), modelsDir: path.join(ROOT, "models"), device: "cpu", workers: 1, logLevel: "warn" },
  { logger: false },
);
const browser = await launchChromium(chromium, { width: 1100, height: 900 });
try {
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const page = await browser.context.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.locator("#model:not([disabled])").waitFor();

  const query = images[queryIndex];
  const others = images.filter((_, i) => i !== queryIndex);
  const settled = (id: string) =>
    page.waitForFunction((s) => !["", "working..."].includes(document.getElementById(s)?.textContent ?? ""), id);
  await page.setInputFiles("#image-file", query.file);
  await page.fill("#num-beams", "3");
  await page.click("#caption-btn");
  await settled("caption-time");
  await page.fill("#question", query.questions[0].question);
  await page.click("#vqa-btn");
  await settled("vqa-time");
  await page.fill("#candidates", [others[0].captions[0], query.captions[0], others[2].captions[0]].join("\n"));
  await page.click("#rank-btn");
  await settled("rank-time");
  await page.setInputFiles(
    "#image-files",
    images.map((im) => im.file),
  );
  await page.fill("#query", others[1].captions[0]);
  await page.click("#search-btn");
  await settled("search-time");

  const png = await page.screenshot({ fullPage: true });
  await sharp(png).png({ palette: true, colours: 128, compressionLevel: 9 }).toFile(out);
  console.log(out);
} finally {
  await browser.close();
  await app.close();
  rmSync(dir, { recursive: true, force: true });
}
