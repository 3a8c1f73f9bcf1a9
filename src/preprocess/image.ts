// Image bytes -> normalised Float32 NCHW pixels, mirroring training/dlip/data/transforms.py (ImagePreprocess):
// EXIF orientation applied, alpha composited over white, gray replicated to RGB, resized to (S, S) ignoring the
// aspect ratio with the manifest's filter, scaled to [0, 1], normalised per channel with mean/std.
import sharp, { type Metadata } from "sharp";
import { ApiError } from "../errors.js";
import type { Preprocessing } from "../bundle/manifest.js";
import { resize } from "./resample.js";

export const SUPPORTED_FORMATS = ["jpeg", "png", "webp", "gif", "tiff", "avif"] as const;
export type ImageFormat = (typeof SUPPORTED_FORMATS)[number];

export interface ImageSpec {
  size: number; // output side S
  mean: readonly number[]; // per RGB channel, on [0, 1] values
  std: readonly number[];
  resample: "bicubic" | "bilinear";
  maxPixels: number; // decoded width * height limit (decompression bombs)
}

export function imageSpec(p: Preprocessing, maxPixels: number): ImageSpec {
  return { size: p.image_size, mean: p.mean, std: p.std, resample: p.resample, maxPixels };
}

// PIL's BICUBIC is the a = -0.5 Catmull-Rom cubic, as libvips' "cubic"; both widen the kernel when downscaling.
const KERNEL = { bicubic: "cubic", bilinear: "linear" } as const;

/**
 * Every image is resized to S x S by the Pillow port (resample.ts), which reads at most PRE_SHRINK_FACTOR x S pixels
 * per axis: a longer axis is first reduced by libvips to PRE_SHRINK_FACTOR x S (its cubic or linear kernel, off the
 * main thread), a JPEG decoded at 1/2, 1/4 or 1/8 scale on the way where the decoded image keeps at least twice that
 * (libvips' shrink-on-load; sharp's `fastShrinkOnLoad: false`). Images with no axis over the bound are resized
 * exactly as Pillow would. bench/preprocess.ts measures the pre-shrunk result against Pillow's resize of the full
 * image on photographs; README (Image preprocessing) states the tolerance and test/unit/photo.test.ts checks it.
 */
export const PRE_SHRINK_FACTOR = 4;

/**
 * The size libvips pre-shrinks an upright `width` x `height` image to before the exact resize to `size` x `size`:
 * each axis capped at `factor` x `size`; null where no axis is over the cap (no pre-shrink: the exact resize).
 */
export function preShrinkSize(
  width: number,
  height: number,
  size: number,
  factor = PRE_SHRINK_FACTOR,
): { width: number; height: number } | null {
  const cap = Math.ceil(factor * size);
  if (width <= cap && height <= cap) return null;
  return { width: Math.min(width, cap), height: Math.min(height, cap) };
}

sharp.cache(false); // inputs are one-off request bodies; caching them only holds memory
sharp.concurrency(1); // libvips threads per image: requests already run in parallel

/** What the first bytes say: a supported format, a known image format we do not take (415), or nothing known. */
export function sniffFormat(b: Uint8Array): { format: ImageFormat } | { unsupported: string } | null {
  const ascii = (start: number, end: number) => String.fromCharCode(...b.subarray(start, end));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { format: "jpeg" };
  if (b.length >= 8 && ascii(1, 4) === "PNG" && b[0] === 0x89) return { format: "png" };
  if (b.length >= 6 && (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a")) return { format: "gif" };
  if (b.length >= 12 && ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return { format: "webp" };
  if (
    b.length >= 4 &&
    ((ascii(0, 2) === "II" && b[2] === 42 && b[3] === 0) || (ascii(0, 2) === "MM" && b[2] === 0 && b[3] === 42))
  ) {
    return { format: "tiff" };
  }
  if (b.length >= 12 && ascii(4, 8) === "ftyp") {
    const size = Math.min(b.length, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3], 256);
    const brands = [ascii(8, 12)];
    for (let i = 16; i + 4 <= size; i += 4) brands.push(ascii(i, i + 4));
    if (brands.includes("avif") || brands.includes("avis")) return { format: "avif" };
    if (brands.some((x) => ["heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"].includes(x)))
      return { unsupported: "HEIC" };
    return null;
  }
  if (b.length >= 2 && ascii(0, 2) === "BM") return { unsupported: "BMP" };
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 1 && b[3] === 0) return { unsupported: "ICO" };
  if (b.length >= 4 && ascii(0, 4) === "%PDF") return { unsupported: "PDF" };
  if (b.length >= 4 && ascii(0, 4) === "8BPS") return { unsupported: "PSD" };
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0x0a) return { unsupported: "JPEG XL" };
  if (b.length >= 12 && ascii(4, 8) === "jP  ") return { unsupported: "JPEG 2000" };
  if (b.length >= 12 && ascii(4, 8) === "JXL ") return { unsupported: "JPEG XL" };
  const head = ascii(0, Math.min(b.length, 256))
    .replace(/^\uFEFF/, "")
    .trimStart()
    .toLowerCase();
  if (head.startsWith("<svg") || (head.startsWith("<?xml") && head.includes("<svg"))) return { unsupported: "SVG" };
  return null;
}

/**
 * Decodes and preprocesses one image. `label` names it in error messages ("images[2]").
 * Errors: 400 invalid_image (empty, corrupt, truncated, not an image), 413 image_too_large (pixel limit),
 * 415 unsupported_image_format (a known format this server does not decode).
 */
export async function preprocessImage(bytes: Uint8Array, spec: ImageSpec, label = "image"): Promise<Float32Array> {
  const rgb = await decodeToRgb(bytes, spec, label);
  return normalise(rgb, spec);
}

/**
 * Steps 1-3: upright, RGB, resized; (S * S * 3) bytes, HWC order. `preShrinkFactor`: PRE_SHRINK_FACTOR but for
 * bench/preprocess.ts, which measures others.
 */
export async function decodeToRgb(
  bytes: Uint8Array,
  spec: ImageSpec,
  label = "image",
  preShrinkFactor = PRE_SHRINK_FACTOR,
): Promise<Uint8Array> {
  if (bytes.length === 0) throw new ApiError("invalid_image", `${label} is empty (0 bytes)`);
  const sniffed = sniffFormat(bytes);
  const formats = SUPPORTED_FORMATS.join(", ");
  if (sniffed === null)
    throw new ApiError("invalid_image", `${label} is not an image in a supported format (${formats})`);
  if ("unsupported" in sniffed)
    throw new ApiError(
      "unsupported_image_format",
      `${label} is ${sniffed.unsupported}, which is not supported (${formats})`,
    );
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false, pages: 1 }).metadata();
  } catch (err) {
    throw new ApiError("invalid_image", `${label} is not a readable ${sniffed.format} image (${conciseError(err)})`);
  }
  const allowed =
    meta.format === "heif"
      ? meta.compression === "av1"
      : (SUPPORTED_FORMATS as readonly string[]).includes(meta.format ?? "");
  if (!allowed)
    throw new ApiError(
      "unsupported_image_format",
      `${label} is ${meta.format ?? "unknown"}${meta.compression ? ` (${meta.compression})` : ""}, which is not supported (${formats})`,
    );
  const w = meta.width ?? 0;
  const h = meta.pageHeight ?? meta.height ?? 0;
  if (w <= 0 || h <= 0) throw new ApiError("invalid_image", `${label} has no pixels (${w}x${h})`);
  if (w * h > spec.maxPixels) {
    throw new ApiError(
      "image_too_large",
      `${label} is ${w}x${h} = ${w * h} pixels, over the limit of ${spec.maxPixels} (MAX_IMAGE_PIXELS)`,
    );
  }
  try {
    // EXIF orientations 5-8 swap the axes; sharp takes a resize's size as the upright image's
    const [uw, uh] = (meta.orientation ?? 1) >= 5 ? [h, w] : [w, h];
    const shrunk = preShrinkSize(uw, uh, spec.size, preShrinkFactor);
    let pipeline = sharp(input, {
      limitInputPixels: spec.maxPixels,
      failOn: "error",
      autoOrient: true,
      pages: 1,
    }).toColourspace("srgb"); // gray, 16-bit, CMYK -> 8-bit sRGB
    if (shrunk) {
      pipeline = pipeline
        .flatten({ background: { r: 255, g: 255, b: 255 } }) // alpha composited over white; a no-op without alpha
        .resize(shrunk.width, shrunk.height, { fit: "fill", kernel: KERNEL[spec.resample], fastShrinkOnLoad: false })
        .removeAlpha();
    }
    const { data, info } = await pipeline.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 && info.channels !== 4)
      throw new Error(`unexpected decode result with ${info.channels} channels`);
    let rgb: Uint8Array = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (info.channels === 4) rgb = compositeOverWhite(rgb);
    if (info.width === spec.size && info.height === spec.size) return rgb;
    return resize(rgb, info.width, info.height, 3, spec.size, spec.size, spec.resample);
  } catch (err) {
    if (/pixel limit/i.test(String(err))) {
      throw new ApiError(
        "image_too_large",
        `${label} exceeds the decoded pixel limit of ${spec.maxPixels} (MAX_IMAGE_PIXELS)`,
      );
    }
    throw new ApiError("invalid_image", `${label} could not be decoded as ${meta.format} (${conciseError(err)})`);
  }
}

/** RGBA over opaque white -> RGB, with Pillow's integer arithmetic (Image.alpha_composite, then convert("RGB")). */
export function compositeOverWhite(rgba: Uint8Array): Uint8Array {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      // Pillow: coef1 = a * 128, coef2 = (255 - a) * 128 (dst = white); SHIFTFORDIV255 rounding
      const x = rgba[i * 4 + c] * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
      out[i * 3 + c] = a === 0 ? 255 : (((x >> 8) + x) >> 8) >> 7;
    }
  }
  return out;
}

/** Steps 4-5: HWC uint8 -> CHW float32, (x / 255 - mean[c]) / std[c]. */
export function normalise(rgb: Uint8Array, spec: Pick<ImageSpec, "size" | "mean" | "std">): Float32Array {
  const hw = spec.size * spec.size;
  if (rgb.length !== hw * 3) throw new Error(`normalise: expected ${hw * 3} bytes, got ${rgb.length}`);
  const out = new Float32Array(3 * hw); // (3, S, S)
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * spec.std[c]);
    const shift = spec.mean[c] / spec.std[c];
    const base = c * hw;
    for (let i = 0; i < hw; i++) out[base + i] = rgb[i * 3 + c] * scale - shift;
  }
  return out;
}

function conciseError(err: unknown): string {
  return String((err as Error)?.message ?? err)
    .split("\n")[0]
    .slice(0, 200);
}
