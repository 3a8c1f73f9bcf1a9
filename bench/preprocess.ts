// `npm run bench:preprocess`: image preprocessing of real photographs, the server's way (src/preprocess/image.ts:
// libvips pre-shrinks an axis longer than PRE_SHRINK_FACTOR x S, with JPEG shrink-on-load, then Pillow's exact
// resize) against the exact reference (the full image decoded, then Pillow's resize of every pixel, resample.ts),
// per photo and image side S: time (wall and CPU, medians) and the difference of the resized pixels, in levels of 255
// and in normalised units (BLIP's CLIP mean/std). Prints a markdown table, then the worst case per S.
// Photos: the photographs of Debian's lomiri-wallpapers-16.04 / -20.04 packages (apt-get install -y
// lomiri-wallpapers-16.04 lomiri-wallpapers-20.04), scikit-image's and matplotlib's sample photographs where they are
// installed in training/.venv (pip install scikit-image), the test fixture test/fixtures/photos/seeding.jpg; or the
// files given. Nothing is downloaded; missing photos are listed.
// Usage: node --import tsx bench/preprocess.ts [--sizes 384,224,64] [--repeats 3] [--factors 2,3] [PHOTO...]
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { compositeOverWhite, decodeToRgb, PRE_SHRINK_FACTOR, preShrinkSize } from "../src/preprocess/image.js";
import { resize } from "../src/preprocess/resample.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const STD = [0.26862954, 0.26130258, 0.27577711]; // BLIP's (OpenAI CLIP's) per-channel std

const WALLPAPERS = "/usr/share/backgrounds";
// the photographs among the packages' wallpapers (the others are drawings and renders)
const DEBIAN_PHOTOS = [
  "Bridge_by_Sander_Klootwijk.jpg",
  "Dragonfly_by_Bolly.jpg",
  "Kleiber_by_Lukas_Baubkus.jpg",
  "Picture_0B_by_freespace.jpg",
  "Picture_1A_by_freespace.jpg",
  "Wine_by_Jakkub_Mede.jpg",
  "aitzgorri_by_Aitzol_Berasategi.jpg",
  "free_by_Peter_Nerlich.jpg",
  "friends_by_Aitzol_Berasategi.jpg",
  "greentock_by_Peter_Nerlich.jpg",
  "life_by_Aitzol_Berasategi.jpg",
  "picosdeeuropa_by_Aitzol_Berasategi.jpg",
  "seeding_by_Clements_Engelhardt.jpg",
  "sunset_by_Aitzol_Berasategi.jpg",
].map((f) => path.join(WALLPAPERS, f));
// in training/.venv's site-packages
const SAMPLE_PHOTOS = [
  ...["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg"].map(
    (f) => `skimage/data/${f}`,
  ),
  "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
];
const FIXTURE = path.join(ROOT, "test/fixtures/photos/seeding.jpg");

interface Options {
  sizes: number[];
  repeats: number;
  factors: number[];
  photos: string[];
}

function parse(argv: string[]): Options {
  const o: Options = { sizes: [384, 224, 64], repeats: 3, factors: [PRE_SHRINK_FACTOR], photos: [] };
  const list = (v: string | undefined, flag: string) => {
    const xs = (v ?? "").split(",").map(Number);
    if (!xs.length || xs.some((x) => !(x > 0))) throw new Error(`${flag} takes positive numbers, e.g. ${flag} 2,3`);
    return xs;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--sizes") o.sizes = list(argv[++i], a).map(Math.round);
    else if (a === "--factors") o.factors = list(argv[++i], a);
    else if (a === "--repeats") o.repeats = Math.max(1, Math.round(list(argv[++i], a)[0]));
    else if (a.startsWith("--")) throw new Error(`unknown flag ${a}`);
    else o.photos.push(a);
  }
  return o;
}

/** The default photos that exist here, and the ones missing (with how to get them). */
function defaultPhotos(): { found: string[]; missing: string[] } {
  const found: string[] = [];
  const missing: string[] = [];
  for (const f of DEBIAN_PHOTOS) (existsSync(f) ? found : missing).push(f);
  const lib = path.join(ROOT, "training/.venv/lib");
  const python = existsSync(lib) ? readdirSync(lib).find((d) => d.startsWith("python3")) : undefined;
  for (const f of SAMPLE_PHOTOS) {
    const file = python ? path.join(lib, python, "site-packages", f) : f;
    (existsSync(file) ? found : missing).push(file);
  }
  found.push(FIXTURE);
  return { found, missing };
}

const cpuMs = () => {
  const u = process.cpuUsage(); // every thread of the process: libvips' too
  return (u.user + u.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed<T>(repeats: number, f: () => Promise<T>): Promise<{ out: T; wall: number; cpu: number }> {
  const walls: number[] = [];
  const cpus: number[] = [];
  let out!: T;
  for (let i = 0; i < repeats; i++) {
    const [t, c] = [performance.now(), cpuMs()];
    out = await f();
    walls.push(performance.now() - t);
    cpus.push(cpuMs() - c);
  }
  return { out, wall: median(walls), cpu: median(cpus) };
}

/** The exact reference: the whole image decoded upright (no shrink-on-load), then Pillow's bicubic resize. */
export async function exactRgb(bytes: Buffer, size: number): Promise<Uint8Array> {
  const { data, info } = await sharp(bytes, { autoOrient: true, limitInputPixels: false, pages: 1 })
    .toColourspace("srgb")
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  let rgb: Uint8Array = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (info.channels === 4) rgb = compositeOverWhite(rgb);
  return resize(rgb, info.width, info.height, 3, size, size, "bicubic");
}

/** Max and mean |a - b| in levels of 255, and the max in normalised units ((x / 255 - mean) / std). */
export function pixelDiff(a: Uint8Array, b: Uint8Array): { max: number; mean: number; maxNorm: number } {
  let max = 0;
  let sum = 0;
  let maxNorm = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
    maxNorm = Math.max(maxNorm, d / 255 / STD[i % 3]);
  }
  return { max, mean: sum / a.length, maxNorm };
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  sharp.cache(false);
  sharp.concurrency(1); // as the server
  let photos = opts.photos;
  if (!photos.length) {
    const { found, missing } = defaultPhotos();
    photos = found;
    if (missing.length)
      process.stdout.write(
        `missing (not measured): ${missing.map((f) => path.basename(f)).join(", ")}; install them with ` +
          "'apt-get install -y lomiri-wallpapers-16.04 lomiri-wallpapers-20.04' and " +
          "'training/.venv/bin/pip install scikit-image'\n\n",
      );
  }
  const cpus = os.cpus();
  process.stdout.write(
    `${new Date().toISOString()}; ${cpus[0]?.model ?? "unknown CPU"} x ${cpus.length}; load average ` +
      `${os.loadavg()[0].toFixed(1)}; node ${process.versions.node}, sharp ${sharp.versions.sharp}, libvips ` +
      `${sharp.versions.vips}\n\n`,
  );
  const rule = (f: number) => (f === PRE_SHRINK_FACTOR ? `server (F=${f})` : `F=${f}`);
  process.stdout.write(
    `Exact: full decode + Pillow's resize. Server: libvips pre-shrink of axes > F x S (JPEG shrink-on-load), then ` +
      `Pillow's resize. ms: median of ${opts.repeats}, wall / CPU (all threads). |d|: levels of 255; norm: normalised ` +
      "units (CLIP std).\n\n" +
      "| photo | size | S | exact ms | rule | ms | pre-shrunk to | max abs d | mean abs d | max abs d (norm) |\n" +
      "|---|---|---|---|---|---|---|---|---|---|\n",
  );
  const worst = new Map<string, { max: number; mean: number; maxNorm: number; speedups: number[] }>();
  for (const file of photos) {
    const bytes = readFileSync(file);
    const meta = await sharp(bytes).metadata();
    const [w, h] = (meta.orientation ?? 1) >= 5 ? [meta.height!, meta.width!] : [meta.width!, meta.height!];
    const spec = { mean: [0, 0, 0], std: [1, 1, 1], resample: "bicubic" as const, maxPixels: 1e9 };
    for (const size of opts.sizes) {
      const exact = await timed(opts.repeats, () => exactRgb(bytes, size));
      for (const factor of opts.factors) {
        const ours = await timed(opts.repeats, () => decodeToRgb(bytes, { ...spec, size }, "photo", factor));
        const d = pixelDiff(exact.out, ours.out);
        const to = preShrinkSize(w, h, size, factor);
        const key = `S=${size} ${rule(factor)}`;
        const agg = worst.get(key) ?? { max: 0, mean: 0, maxNorm: 0, speedups: [] };
        worst.set(key, {
          max: Math.max(agg.max, d.max),
          mean: Math.max(agg.mean, d.mean),
          maxNorm: Math.max(agg.maxNorm, d.maxNorm),
          speedups: to ? [...agg.speedups, exact.cpu / ours.cpu] : agg.speedups, // pre-shrunk photos only
        });
        process.stdout.write(
          `| ${path.basename(file)} | ${w}x${h} (${((w * h) / 1e6).toFixed(1)} MP) | ${size} | ` +
            `${exact.wall.toFixed(0)} / ${exact.cpu.toFixed(0)} | ${rule(factor)} | ` +
            `${ours.wall.toFixed(0)} / ${ours.cpu.toFixed(0)} | ${to ? `${to.width}x${to.height}` : "(exact)"} | ` +
            `${d.max} | ${d.mean.toFixed(3)} | ${d.maxNorm.toFixed(3)} |\n`,
        );
      }
    }
  }
  process.stdout.write(
    `\nWorst over ${photos.length} photos | max abs d | worst mean abs d | max abs d (norm) | ` +
      "median CPU speed-up over exact (pre-shrunk photos) |\n|---|---|---|---|---|\n",
  );
  for (const [key, a] of worst)
    process.stdout.write(
      `| ${key} | ${a.max} | ${a.mean.toFixed(3)} | ${a.maxNorm.toFixed(3)} | ` +
        (a.speedups.length ? `${median(a.speedups).toFixed(2)}x (${a.speedups.length})` : "(none pre-shrunk)") +
        " |\n",
    );
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main().then((code) => process.exit(code));
