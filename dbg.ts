import { decodeToRgb, normalise } from "./src/preprocess/image.ts";
import { cosine, imageBytes, loadParity } from "./test/helpers/parity.ts";
const spec = { size: 32, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711], resample: "bicubic" as const, maxPixels: 1e6 };
for (const img of loadParity().images) {
  const ours = await decodeToRgb(imageBytes(img), spec);
  const theirs = new Uint8Array(Buffer.from(img.rgb_u8, "base64"));
  let e = 0, mx = 0; for (let i = 0; i < ours.length; i++) { const d = Math.abs(ours[i] - theirs[i]); e += d; mx = Math.max(mx, d); }
  console.log(img.file.padEnd(22), "cos", cosine(normalise(ours, spec), normalise(theirs, spec)).toFixed(5), "mean", (e / ours.length).toFixed(2), "max", mx, "ours", Array.from(ours.slice(0, 6)), "py", Array.from(theirs.slice(0, 6)));
}
