#!/usr/bin/env bash
# Regenerates everything end to end on this machine: the Shapes data, the teacher, the DLIP student and its
# no-distillation control, their evaluations, the default bundle in models/, and the training report's tables.
# Long: about 1.5 hours for the teacher alone on 2 CPU cores. Data and runs go to data/ and runs/ (ignored by git).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root/training"
py=.venv/bin/python
data="$root/data/shapes"
runs="$root/runs"
[ -f "$data/annotations/caption_test.json" ] || $py -m dlip data synth --out "$data"
[ -f "$runs/teacher/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher.json --data "$data" --out "$runs/teacher"
[ -f "$runs/teacher-vqa/checkpoints/last.pt" ] || $py -m dlip train --config configs/shapes_teacher_vqa_more.json --data "$data" --init-from "$runs/teacher" --out "$runs/teacher-vqa"
[ -f "$runs/teacher-vqa/metrics.json" ] || $py -m dlip eval "$runs/teacher-vqa"
[ -f "$runs/student/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$runs/teacher-vqa" --config configs/shapes_distill.json --data "$data" --out "$runs/student"
[ -f "$runs/control/checkpoints/last.pt" ] || $py -m dlip distill --teacher "$runs/teacher-vqa" --config configs/shapes_distill.json --data "$data" --out "$runs/control" --no-distill
for r in student control; do [ -f "$runs/$r/metrics.json" ] || $py -m dlip eval "$runs/$r"; done
$py -m dlip report --run teacher="$runs/teacher-vqa" --run "DLIP student=$runs/student" --run "no-distillation control=$runs/control" --out REPORT.md
$py -m dlip export "$runs/student" --out "$root/models/dlip-student" --name dlip-student --overwrite
