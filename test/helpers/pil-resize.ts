// The straight port of Pillow's resample (ImagingResample: horizontal pass over the rows the vertical pass reads,
// then vertical, 8-bit fixed point), kept as the readable reference src/preprocess/resample.ts's fast `resize` is
// held to bit for bit (test/unit/resample.test.ts).
import { coefficients, FILTERS, ONE } from "../../src/preprocess/resample.js";

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Resizes interleaved 8-bit pixels (channels c) from (w, h) to (outW, outH) exactly as Pillow. */
export function pilResize(
  src: Uint8Array,
  w: number,
  h: number,
  c: number,
  outW: number,
  outH: number,
  filterName: "bicubic" | "bilinear",
): Uint8Array {
  const filter = FILTERS[filterName];
  let img = src;
  let iw = w;
  let ih = h;
  const vert = outH !== h ? coefficients(h, outH, filter) : null;
  if (outW !== w) {
    const { ksize, bounds, k } = coefficients(w, outW, filter);
    // only the rows the vertical pass reads, as Pillow
    const first = vert ? vert.bounds[0] : 0;
    const last = vert ? vert.bounds[(outH - 1) * 2] + vert.bounds[(outH - 1) * 2 + 1] : h;
    const rows = last - first;
    const tmp = new Uint8Array(outW * rows * c);
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + first) * w * c;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        for (let ch = 0; ch < c; ch++) {
          let ss = ONE / 2;
          for (let x = 0; x < xmax; x++) ss += src[rowIn + (x + xmin) * c + ch] * k[xx * ksize + x];
          tmp[(y * outW + xx) * c + ch] = clip8(ss);
        }
      }
    }
    if (vert) for (let yy = 0; yy < outH; yy++) vert.bounds[yy * 2] -= first;
    img = tmp;
    iw = outW;
    ih = rows;
  }
  if (!vert) return img;
  const { ksize, bounds, k } = vert;
  const out = new Uint8Array(iw * outH * c);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2];
    const ymax = bounds[yy * 2 + 1];
    for (let xx = 0; xx < iw; xx++) {
      for (let ch = 0; ch < c; ch++) {
        let ss = ONE / 2;
        for (let y = 0; y < ymax; y++) ss += img[((y + ymin) * iw + xx) * c + ch] * k[yy * ksize + y];
        out[(yy * iw + xx) * c + ch] = clip8(ss);
      }
    }
  }
  void ih;
  return out;
}
