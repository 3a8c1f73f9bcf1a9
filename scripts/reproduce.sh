#!/usr/bin/env bash
# Regenerates the default model (models/dlip-student) and every table of training/REPORT.md on this machine, in
# order: the Shapes data (renderer v2) and its hard split, the teacher's image-encoder pre-training on the training
# scene graphs, the teacher (teacher-128), the DLIP student (student-128) with every term, with the output terms only
# (the shipped one) and with the attention maps only, its no-distillation control, the smaller student and its
# control, their evaluations and ONNX bundles, the distillation, terms, robustness, caption-correctness and int8
# tables, and the default bundle. About 4 hours on 2 CPU cores (the teacher about an hour of it). Steps whose output
# exists are skipped, so an interrupted run resumes. Data and runs go to data/ and runs/ (ignored by git). The
# earlier recipes (renderer v1, training/report/HISTORY.md): scripts/reproduce-v1.sh.
source "$(dirname "${BASH_SOURCE[0]}")/reproduce-env.sh"
data="$root/data/shapes"
hard="$root/data/shapes-hard"
runs="$root/runs"
bundles="$runs/bundles"
# a run counts as evaluated once its metrics.json grades captions against the scene graphs
evaluated() { grep -q '"caption_exact_set"' "$1/metrics.json" 2>/dev/null; }
# 1. the Shapes benchmark drawn by renderer v2 (20,000 / 1,000 / 1,000 images) and its hard split
[ -f "$data/annotations/caption_test.json" ] || $py -m dlip data synth --out "$data"
[ -f "$hard/annotations/caption_test.json" ] || $py -m dlip data perturb --data "$data" --out "$hard"
# 2. the teacher: its image encoder learns what covers each token's cell from the training scene graphs (the stage
#    BLIP gets from ImageNet), then ITC + ITM + LM (each image's full enumeration) + VQA from that encoder
teacher="$runs/teacher-128"
[ -f "$runs/vision-128/vision.pt" ] || $py -m dlip pretrain-vision --config configs/shapes_teacher_v2.json --data "$data" --out "$runs/vision-128"
[ -f "$teacher/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_v2.json --data "$data" --init-vision "$runs/vision-128/vision.pt" --out "$teacher"
evaluated "$teacher" || $py -m dlip eval "$teacher" --no-vqa-rank
# the early comparison of REPORT.md section 1: the same recipe stopped at step 800 of its 2,400, with the pre-trained
# image encoder and from random weights, each scored on the first 200 test images (report/vision_pretraining_step800.md)
[ -f "$runs/teacher-128-step800/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_v2.json --data "$data" --init-vision "$runs/vision-128/vision.pt" --stop-after 800 --out "$runs/teacher-128-step800"
[ -f "$runs/teacher-128-scratch-step800/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_v2.json --data "$data" --init-vision none --stop-after 800 --out "$runs/teacher-128-scratch-step800"
for r in teacher-128-step800 teacher-128-scratch-step800; do evaluated "$runs/$r" || $py -m dlip eval "$runs/$r" --limit-images 200 --limit-questions 1000 --no-vqa-rank; done
$py -m dlip report --run "step 800 of 2,400, image encoder pre-trained (pretrain-vision)=$runs/teacher-128-step800" \
  --run "step 800 of 2,400, image encoder from random weights=$runs/teacher-128-scratch-step800" --out report/vision_pretraining_step800.md
# the reference numbers are the previous teacher's (teacher-conv-pos-reads, training/report/HISTORY.md section 1)
$py -m dlip report --run "teacher-128=$teacher" --reference-tr1 33.0 --reference-ir1 22.9 --out REPORT.md
# 3. the DLIP student with every term, with the output terms only (the shipped one) and with the attention maps only,
#    the same student without distillation terms (the control: same initialisation by weight selection, batches and
#    steps), and the smaller student and its control (600 steps, half the schedule, for lack of time in the session
#    that made the report)
distill() {  # NAME CONFIG STEPS: a student with its config's distillation terms
  [ -f "$runs/$1/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$teacher" --config "configs/$2.json" --data "$data" --out "$runs/$1" --steps "$3"
  evaluated "$runs/$1" || $py -m dlip eval "$runs/$1" --no-vqa-rank
}
control() {  # NAME CONFIG STEPS: the same student without distillation terms
  [ -f "$runs/$1/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$teacher" --config "configs/$2.json" --data "$data" --out "$runs/$1" --steps "$3" --no-distill
  evaluated "$runs/$1" || $py -m dlip eval "$runs/$1" --no-vqa-rank
}
distill student-128 shapes_distill_v2 1200
distill student-128-out shapes_distill_v2_out 1200
distill student-128-attn shapes_distill_v2_attn 1200
control student-128-control shapes_distill_v2 1200
distill student-128-small shapes_distill_v2_small 600
control student-128-small-control shapes_distill_v2_small 600
# 4. bundles (int8 graphs for the students), then the distillation table (latency measured side by side)
[ -f "$bundles/teacher-128/manifest.json" ] || $py -m dlip export "$teacher" --out "$bundles/teacher-128" --name dlip-teacher --overwrite
for r in student-128-out student-128-control student-128-small student-128-small-control; do
  [ -f "$bundles/$r/manifest.json" ] || $py -m dlip export "$runs/$r" --out "$bundles/$r" --name "dlip-$r" --int8 --overwrite
done
$py -m dlip distill-report --teacher "teacher-128=$teacher=$bundles/teacher-128" \
  --student "DLIP student, outputs distilled (student-128, shipped)=$runs/student-128-out=$bundles/student-128-out" \
  --control "no-distillation control=$runs/student-128-control=$bundles/student-128-control" \
  --student2 "smaller DLIP student (student-128-small)=$runs/student-128-small=$bundles/student-128-small" \
  --control2 "its no-distillation control=$runs/student-128-small-control=$bundles/student-128-small-control" --out REPORT.md
# 5. which DLIP terms help: every term, the outputs only, the attention maps only, none
$py -m dlip terms-report --run "no distillation terms (control)=$runs/student-128-control" \
  --run "every DLIP term=$runs/student-128" --run "outputs only=$runs/student-128-out" \
  --run "attention maps only=$runs/student-128-attn" --out REPORT.md
# 6. robustness: teacher, shipped student and control on the test split and on the hard split; caption correctness
rows=()
for r in teacher-128 student-128-out student-128-control; do
  for split in clean hard; do
    src="$data"; [ "$split" = hard ] && src="$hard"
    [ -f "$bundles/$r/$split.json" ] || $py -m dlip eval-bundle "$bundles/$r" --data "$src" --no-vqa-rank --out "$bundles/$r/$split.json"
  done
  rows+=(--row "$r=$bundles/$r/clean.json=$bundles/$r/hard.json")
done
$py -m dlip robustness-report "${rows[@]}" --out REPORT.md
$py -m dlip correctness-report --row "teacher-128, test split=$bundles/teacher-128/clean.json" \
  --row "teacher-128, hard split=$bundles/teacher-128/hard.json" \
  --row "student-128-out, test split=$bundles/student-128-out/clean.json" \
  --row "student-128-out, hard split=$bundles/student-128-out/hard.json" --out REPORT.md
# 7. int8: the shipped student's dynamic-quantised graphs on the whole test split, next to fp32
[ -f "$bundles/student-128-out/int8.json" ] || $py -m dlip eval-bundle "$bundles/student-128-out" --data "$data" --int8 --no-vqa-rank --out "$bundles/student-128-out/int8.json"
$py -m dlip int8-report --fp32 "$bundles/student-128-out/clean.json" --int8 "$bundles/student-128-out/int8.json" --bundle "$bundles/student-128-out" --out REPORT.md
# 8. the default model users get: the shipped student with its int8 graphs, checked against PyTorch
$py -m dlip export "$runs/student-128-out" --out "$root/models/dlip-student" --name dlip-student --int8 --overwrite
$py -m dlip eval-bundle "$root/models/dlip-student" --data "$data" --compare-run "$runs/student-128-out" --no-vqa-rank
