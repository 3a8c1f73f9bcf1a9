// Photographs through the server's preprocessing (src/preprocess/image.ts). A 3 MP JPEG photo
// (test/fixtures/photos/seeding.jpg, made by scripts/make-photo-fixture.ts) is pre-shrunk by libvips, then resized
// exactly: the result stays within the tolerance the README states (Image preprocessing) of Pillow's resize of the
// whole decoded image, at the sizes bundles use. EXIF orientation is applied: exif6.jpg (exact path) pixel for pixel,
// the photo stored sideways with orientation 6 (pre-shrunk path) within the tolerance.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { exactRgb, pixelDiff } from "../../bench/preprocess.js";
import { decodeToRgb, preShrinkSize, type ImageSpec } from "../../src/preprocess/image.js";
import { resize } from "../../src/preprocess/resample.js";
import { FIXTURES, ROOT } from "../helpers/app.js";

const PHOTO = readFileSync(path.join(FIXTURES, "photos/seeding.jpg"));
const EXIF6 = readFileSync(path.join(ROOT, "test/parity/images/exif6.jpg"));

// README, Image preprocessing: the pre-shrunk result against Pillow's resize of the full decode, in levels of 255
const TOLERANCE = {
  large: { max: 4, mean: 0.5 }, // S >= 224
  small: { max: 16, mean: 1 }, // S < 224
};
const tolerance = (size: number) => (size >= 224 ? TOLERANCE.large : TOLERANCE.small);

const spec = (size: number): ImageSpec => ({
  size,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  resample: "bicubic",
  maxPixels: 50_000_000,
});

function within(ours: Uint8Array, exact: Uint8Array, size: number, what: string) {
  const d = pixelDiff(exact, ours);
  const tol = tolerance(size);
  assert.ok(d.max <= tol.max, `${what}, S=${size}: max abs difference ${d.max} > ${tol.max} levels`);
  assert.ok(d.mean <= tol.mean, `${what}, S=${size}: mean abs difference ${d.mean.toFixed(3)} > ${tol.mean} levels`);
}

/** RGB (HWC) pixels of a `w` x `h` image rotated 90 degrees clockwise (EXIF orientation 6's display): h x w. */
function rotateCW(rgb: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let y = 0; y < w; y++)
    // upright (h wide, w tall): U(x, y) = stored(y, h - 1 - x)
    for (let x = 0; x < h; x++)
      out.set(rgb.subarray(((h - 1 - x) * w + y) * 3, ((h - 1 - x) * w + y) * 3 + 3), (y * h + x) * 3);
  return out;
}

/** The stored pixels as they are (no orientation applied). */
async function storedRgb(bytes: Buffer): Promise<{ rgb: Uint8Array; w: number; h: number }> {
  const { data, info } = await sharp(bytes, { autoOrient: false })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data), w: info.width, h: info.height };
}

test("a 3 MP photo: pre-shrunk, then resized exactly, within the stated tolerance of the exact resize", async () => {
  for (const size of [384, 224, 64]) {
    assert.ok(preShrinkSize(2304, 1296, size), `S=${size}: the photo takes the pre-shrink path`);
    within(await decodeToRgb(PHOTO, spec(size)), await exactRgb(PHOTO, size), size, "seeding.jpg");
  }
});

test("EXIF orientation 6: exif6.jpg pixel for pixel as rotating its stored pixels, then Pillow's resize", async () => {
  const { rgb, w, h } = await storedRgb(EXIF6);
  assert.deepEqual([w, h], [56, 40]);
  const upright = rotateCW(rgb, w, h); // 40 x 56
  const want = resize(upright, h, w, 3, 32, 32, "bicubic");
  assert.deepEqual(await decodeToRgb(EXIF6, spec(32)), want);
});

test("EXIF orientation 6 on the photo (stored sideways): as the upright photo, within the tolerance", async () => {
  const sideways = await sharp(PHOTO).rotate(-90).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer();
  const { rgb, w, h } = await storedRgb(sideways);
  assert.deepEqual([w, h], [1296, 2304], "stored 90 degrees counter-clockwise");
  const upright = rotateCW(rgb, w, h);
  for (const size of [384, 64]) {
    const want = resize(upright, h, w, 3, size, size, "bicubic");
    const ours = await decodeToRgb(sideways, spec(size));
    within(ours, want, size, "sideways seeding.jpg");
    // the check can fail: the stored pixels resized without the rotation are far off
    const unrotated = resize(rgb, w, h, 3, size, size, "bicubic");
    assert.ok(pixelDiff(unrotated, ours).mean > 10, "orientation matters for this photo");
  }
});
