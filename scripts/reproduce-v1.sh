#!/usr/bin/env bash
# The earlier recipes (training/report/HISTORY.md): renderer-v1 data, the five teachers trained from scratch at 64 px,
# the first DLIP student and its tables. The current model and report: scripts/reproduce.sh.
# Regenerates everything end to end on this machine: the Shapes data, the teacher, the DLIP student and its
# no-distillation control, their evaluations, their ONNX bundles, the training report's tables, the ablation study
# and the student's bundle (runs/v1/bundles/dlip-student-v1). Long: up to 1.5 hours for each of the five teacher runs on 2 CPU cores (the
# last, teacher-conv-pos-reads, is the one the student learns from), then the student, control and ablation runs;
# steps whose output exists are skipped, so an interrupted run resumes. Data and runs go to data/ and runs/ (ignored
# by git).
source "$(dirname "${BASH_SOURCE[0]}")/reproduce-env.sh"
data="$root/data/shapes-v1"
runs="$root/runs/v1"
bundles="$runs/bundles"
# a run counts as evaluated once its metrics.json has sampling errors (older evaluations are made again)
evaluated() { grep -q '"sampling_error"' "$1/metrics.json" 2>/dev/null; }
[ -f "$data/annotations/caption_test.json" ] || $py -m dlip data synth --out "$data" --renderer v1
# the teacher (training report, part 1)
[ -f "$runs/teacher/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher.json --data "$data" --out "$runs/teacher"
evaluated "$runs/teacher" || $py -m dlip eval "$runs/teacher"
# the same recipe with the VQA answer decoder reading the image tokens too (model.vqa_decoder_reads_image)
[ -f "$runs/teacher-reads-image/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_reads_image.json --data "$data" --out "$runs/teacher-reads-image"
evaluated "$runs/teacher-reads-image" || $py -m dlip eval "$runs/teacher-reads-image"
# the same recipe with a convolutional stem in the ViT (preset teacher-conv, vision.stem "conv")
[ -f "$runs/teacher-conv/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_conv.json --data "$data" --out "$runs/teacher-conv"
evaluated "$runs/teacher-conv" || $py -m dlip eval "$runs/teacher-conv"
# ... and with the position table added to the ViT's output tokens (preset teacher-conv-pos, vision.output_pos_embed)
[ -f "$runs/teacher-conv-pos/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_conv_pos.json --data "$data" --out "$runs/teacher-conv-pos"
evaluated "$runs/teacher-conv-pos" || $py -m dlip eval "$runs/teacher-conv-pos"
# ... and the answer decoder reading those tokens, region questions drawn twice as often (preset teacher-conv-pos-reads)
[ -f "$runs/teacher-conv-pos-reads/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_conv_pos_reads.json --data "$data" --out "$runs/teacher-conv-pos-reads"
evaluated "$runs/teacher-conv-pos-reads" || $py -m dlip eval "$runs/teacher-conv-pos-reads"
$py -m dlip report --run teacher="$runs/teacher" --run "teacher, answer decoder reads the image=$runs/teacher-reads-image" \
  --run "teacher-conv (convolutional stem)=$runs/teacher-conv" \
  --run "teacher-conv-pos (stem + output positions)=$runs/teacher-conv-pos" \
  --run "teacher-conv-pos-reads (+ answer decoder reads the image, region x2)=$runs/teacher-conv-pos-reads" --out report/HISTORY.md
# the DLIP student and the control, both from teacher-conv-pos-reads: same student, same steps, no distillation term
teacher="$runs/teacher-conv-pos-reads"
[ -f "$runs/student/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$teacher" --config configs/shapes_distill.json --data "$data" --out "$runs/student"
[ -f "$runs/control/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$teacher" --config configs/shapes_distill.json --data "$data" --out "$runs/control" --no-distill --init random
# ... and the same student from weight selection without distillation terms (what the terms add, report section 2)
[ -f "$runs/control-select/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$teacher" --config configs/shapes_distill.json --data "$data" --out "$runs/control-select" --no-distill
for r in student control; do evaluated "$runs/$r" || $py -m dlip eval "$runs/$r"; done
evaluated "$runs/control-select" || $py -m dlip eval "$runs/control-select" --no-vqa-rank
# bundles (the teacher's and the control's only for the latency columns and the robustness table), then the
# distillation table
[ -f "$bundles/teacher/manifest.json" ] || $py -m dlip export "$teacher" --out "$bundles/teacher" --name dlip-teacher --overwrite
for r in student control; do
  [ -f "$bundles/$r/manifest.json" ] || $py -m dlip export "$runs/$r" --out "$bundles/$r" --name "dlip-$r" --int8 --overwrite
done
$py -m dlip distill-report --teacher "teacher-conv-pos-reads=$teacher=$bundles/teacher" \
  --student "DLIP student=$runs/student=$bundles/student" \
  --control "no-distillation control=$runs/control=$bundles/control" --out report/HISTORY.md
# robustness: the test split re-rendered with camera and encoder perturbations, every model scored on both
[ -f "$root/data/shapes-v1-perturbed/annotations/caption_test.json" ] || $py -m dlip data perturb --data "$data" --out "$root/data/shapes-v1-perturbed" --preset camera
rows=()
for r in teacher student control; do
  for split in clean perturbed; do
    src="$data"; [ "$split" = perturbed ] && src="$root/data/shapes-v1-perturbed"
    [ -f "$bundles/$r/$split.json" ] || $py -m dlip eval-bundle "$bundles/$r" --data "$src" --no-vqa-rank --out "$bundles/$r/$split.json"
  done
  rows+=(--row "$r=$bundles/$r/clean.json=$bundles/$r/perturbed.json")
done
$py -m dlip robustness-report "${rows[@]}" --out report/HISTORY.md
# int8: the student's dynamic-quantised graphs scored on the whole test split, next to fp32
[ -f "$bundles/student/int8.json" ] || $py -m dlip eval-bundle "$bundles/student" --data "$data" --int8 --no-vqa-rank --out "$bundles/student/int8.json"
$py -m dlip int8-report --fp32 "$bundles/student/clean.json" --int8 "$bundles/student/int8.json" --bundle "$bundles/student" --out report/HISTORY.md
# the ablation study: a third of the student's schedule per row, every row scored on the whole test split
$py -m dlip ablate --teacher "$teacher" --config configs/shapes_distill.json --grid configs/ablation_grid.json \
  --data "$data" --out "$runs/ablation" --steps 400 --no-vqa-rank --report report/HISTORY.md
# the default model users get: the DLIP student with its int8 graphs; checked against PyTorch and scored as a bundle
$py -m dlip export "$runs/student" --out "$bundles/dlip-student-v1" --name dlip-student --int8 --overwrite
$py -m dlip eval-bundle "$bundles/dlip-student-v1" --data "$data" --compare-run "$runs/student"
# what users see (report section 6): the default bundle's captions graded against the scene graphs, on the clean
# test split, the camera split, the hard split and the test split drawn by renderer v2
[ -f "$root/data/shapes-v1-hard/annotations/caption_test.json" ] || $py -m dlip data perturb --data "$data" --out "$root/data/shapes-v1-hard"
[ -f "$root/data/shapes-v1-drawn-v2/annotations/caption_test.json" ] || $py -m dlip data synth --out "$root/data/shapes-v1-drawn-v2" --n 0 0 1000 --renderer v2
mkdir -p "$bundles/shipped"
for split in clean camera hard v2; do
  src="$data"
  case $split in camera) src="$root/data/shapes-v1-perturbed";; hard) src="$root/data/shapes-v1-hard";; v2) src="$root/data/shapes-v1-drawn-v2";; esac
  [ -f "$bundles/shipped/$split.json" ] || $py -m dlip eval-bundle "$bundles/dlip-student-v1" --data "$src" --no-vqa-rank --out "$bundles/shipped/$split.json"
done
$py -m dlip correctness-report --row "dlip-student, test split=$bundles/shipped/clean.json" \
  --row "dlip-student, camera split (data perturb --preset camera)=$bundles/shipped/camera.json" \
  --row "dlip-student, hard split (data perturb)=$bundles/shipped/hard.json" \
  --row "dlip-student, test split drawn by renderer v2=$bundles/shipped/v2.json" --out report/HISTORY.md
