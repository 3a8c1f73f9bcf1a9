"""VQA accuracy of a trained run by question type and by the number of objects in the image (Shapes validation split).

Answers are generated as in ``dlip eval``; the scene files written by ``dlip data synth`` give each image's object
count. Prints a markdown table; single-object images show what the model perceives with nothing to disambiguate.

    .venv/bin/python experiments/vqa_by_scene.py RUN [N_QUESTIONS] [DATA]    # e.g. ../runs/teacher-conv 1500
"""

import collections
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlip.data.annotations import load_vqa, pre_question  # noqa: E402
from dlip.data.transforms import ImagePreprocess  # noqa: E402
from dlip.infer import tasks  # noqa: E402
from dlip.infer.torch_backend import TorchBackend  # noqa: E402
from dlip.eval.metrics import vqa_accuracy  # noqa: E402
from dlip.run_folder import load_run  # noqa: E402

run = load_run(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
root = Path(sys.argv[3] if len(sys.argv) > 3 else "../data/shapes")
questions = load_vqa(root / "annotations/vqa_val.json", require_answers=True)[:n]
objects = {}
for line in open(root / "scenes_val.jsonl"):
    scene = json.loads(line)
    objects[scene["image"]] = len(scene["objects"])
pre = ImagePreprocess(run.config.model.vision.image_size)
paths = sorted({q.image for q in questions})
where = {p: i for i, p in enumerate(paths)}
data = run.config.data
backend = TorchBackend(run.model, run.tokenizer, pre)
embeds, _ = tasks.encode_images(backend, tasks.load_images(backend, [str(root / p) for p in paths]), 64)
answers = tasks.answer_questions(backend, backend.take(embeds, [where[q.image] for q in questions]),
                                 [pre_question(q.question, data.max_words) for q in questions],
                                 data.max_text_tokens, data.max_answer_tokens)
cells = collections.defaultdict(list)
for q, a in zip(questions, answers):
    acc = vqa_accuracy(a, list(q.answers))
    cells[q.question_type, objects[q.image]].append(acc)
    cells[q.question_type, "all"].append(acc)
counts = sorted({k[1] for k in cells if k[1] != "all"})
print(f"VQA accuracy (%) of {sys.argv[1]} on the first {len(questions)} validation questions; in brackets: questions\n")
print("| type | " + " | ".join(f"{c} object{'s' if c > 1 else ''}" for c in counts) + " | all |")
print("|---|" + "---|" * (len(counts) + 1))
for t in sorted({k[0] for k in cells}):
    row = [cells.get((t, c)) for c in counts] + [cells[t, "all"]]
    print(f"| {t} | " + " | ".join(f"{100 * sum(v) / len(v):.0f} ({len(v)})" if v else "" for v in row) + " |")
