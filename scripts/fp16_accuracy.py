"""fp16 vs fp32 graphs of one bundle (exported with --fp16) on onnxruntime's CPU provider: max abs differences of
the graph outputs and agreement of greedy captions and answers (FORMAT.md, "Large graphs and precision variants").

    cd training && PYTHONPATH=. .venv/bin/python ../scripts/fp16_accuracy.py BUNDLE IMAGE_DIR
"""
import sys, glob, numpy as np, torch
from dlip.infer.ort_backend import OrtBackend
from dlip.infer.search import greedy_decode
from dlip.infer.backend import answer_context
b32, b16 = OrtBackend(sys.argv[1]), OrtBackend(sys.argv[1], precision="fp16")
paths = sorted(glob.glob(sys.argv[2] + "/*"))
px = torch.stack([b32.preprocess(p) for p in paths]).numpy()
e32, f32 = b32.encode_images(px); e16, f16 = b16.encode_images(px)
texts = ["a red circle left of a blue square", "two green triangles", "a large yellow star above a small purple cross"]
ids, mask = (x.numpy() for x in b32.tokenizer(texts, b32.max_text_tokens))
t32, t16 = b32.encode_texts(ids, mask), b16.encode_texts(ids, mask)
enc = ids.copy(); enc[:, 0] = b32.fusion_token
i32 = b32.itm_logits(np.repeat(e32[:1], 3, 0), enc, mask); i16 = b16.itm_logits(np.repeat(e16[:1], 3, 0), enc, mask)
sp = b32.special
c32 = greedy_decode(b32, e32, None, sp.dec, sp.sep, 20, 1); c16 = greedy_decode(b16, e16, None, sp.dec, sp.sep, 20, 1)
qs = ["what color is the circle?", "how many shapes are there?"]
agree = 0; total = 0
for q in qs:
    qi, qm = (x.numpy() for x in b32.tokenizer([q] * len(paths), b32.max_text_tokens))
    h32, m32 = answer_context(b32, e32, qi, qm); h16, m16 = answer_context(b16, e16, qi, qm)
    a32 = greedy_decode(b32, h32, m32, sp.dec, sp.sep, 10); a16 = greedy_decode(b16, h16, m16, sp.dec, sp.sep, 10)
    agree += sum(x == y for x, y in zip(a32, a16)); total += len(a32)
print(f"images {len(paths)}: image_embeds {np.abs(e32-e16).max():.2e} (max |fp32| {np.abs(e32).max():.2f}), image_feat {np.abs(f32-f16).max():.2e}, "
      f"text_feat {np.abs(t32-t16).max():.2e}, itm_logits {np.abs(i32-i16).max():.2e}, "
      f"itc cosine {np.abs(f32@t32.T - f16@t16.T).max():.2e}; greedy captions identical {sum(x==y for x,y in zip(c32,c16))}/{len(c32)}, "
      f"greedy answers identical {agree}/{total}")
