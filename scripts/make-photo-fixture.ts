// Writes test/fixtures/photos/seeding.jpg, the real photograph the preprocessing tests read (test/unit/photo.test.ts):
// "seeding" by Clemens Engelhardt (CC0-1.0), from Debian's lomiri-wallpapers-16.04 package, 5312x2988, reduced to
// 2304x1296 (3.0 MP, the size of a phone photo sent at reduced quality) and re-encoded as a baseline JPEG, 4:2:0, so
// that it stays under 1 MB. Deterministic for a given sharp / libvips.
// Usage: node --import tsx scripts/make-photo-fixture.ts   (as root: apt-get install -y lomiri-wallpapers-16.04)
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SOURCE = "/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg";
const OUT = path.join(ROOT, "test/fixtures/photos/seeding.jpg");
const MAX_BYTES = 1_000_000;

try {
  statSync(SOURCE);
} catch {
  process.stderr.write(`error: ${SOURCE} is missing: apt-get install -y lomiri-wallpapers-16.04\n`);
  process.exit(1);
}
mkdirSync(path.dirname(OUT), { recursive: true });
const info = await sharp(SOURCE)
  .resize(2304, 1296, { fit: "fill", kernel: "lanczos3" })
  .jpeg({ quality: 92, chromaSubsampling: "4:2:0", mozjpeg: false })
  .toFile(OUT);
if (info.size >= MAX_BYTES) {
  process.stderr.write(`error: ${OUT} is ${info.size} bytes; the fixture must stay under ${MAX_BYTES}\n`);
  process.exit(1);
}
process.stdout.write(`${path.relative(ROOT, OUT)}: ${info.width}x${info.height}, ${info.size} bytes\n`);
