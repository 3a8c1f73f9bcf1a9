import sharp from "sharp";
import { execSync } from "node:child_process";
for (const s of ["40x32", "32x30", "32x20", "16x16", "40x30"]) {
  for (const kernel of ["cubic", "catmull-rom"] as const) {
    let r: Buffer;
    try { r = await sharp(`/tmp/s_${s}.png`).resize(32, 32, { fit: "fill", kernel: kernel as any, fastShrinkOnLoad: false }).removeAlpha().raw().toBuffer(); } catch (e) { continue; }
    const py = execSync(`/work/main/training/.venv/bin/python -c "import numpy as np,sys; sys.stdout.buffer.write(np.load('/tmp/s_${s}.npy').tobytes())"`);
    let e = 0; for (let i = 0; i < r.length; i++) e += Math.abs(r[i] - py[i]);
    console.log(s, kernel, "mean abs", (e / r.length).toFixed(2));
  }
}
