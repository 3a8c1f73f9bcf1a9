"""Bad input to the CLI ends with a one-line error naming the file or key, exit status 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "dlip", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_missing_annotation_file(tmp_path):
    proc = _run("train", "--data", tmp_path, "--out", tmp_path / "run")
    _assert_one_line_error(proc, "caption_train.json")


def test_annotation_json_of_the_wrong_shape(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "caption_train.json").write_text(json.dumps({"image": "x.png", "caption": "a"}))
    proc = _run("train", "--data", tmp_path, "--out", tmp_path / "run")
    _assert_one_line_error(proc, "caption_train.json")


@pytest.mark.parametrize("config, key", [({"presett": "micro"}, "presett"),
                                         ({"data": {"image_rot": "x"}}, "image_rot"),
                                         ({"stages": [{"name": "a", "weights": {"itcc": 1}}]}, "itcc")])
def test_unknown_config_keys(tmp_path, config, key):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = _run("train", "--config", path, "--data", tmp_path, "--out", tmp_path / "run")
    _assert_one_line_error(proc, key)


def test_missing_config_file_and_run_folder(tmp_path):
    _assert_one_line_error(_run("train", "--config", tmp_path / "nope.json", "--out", tmp_path / "r"), "nope.json")
    _assert_one_line_error(_run("eval", tmp_path / "not-a-run"), "not-a-run")
    _assert_one_line_error(_run("distill", "--teacher", tmp_path / "no-teacher", "--data", tmp_path,
                                "--out", tmp_path / "r"), "no-teacher")


def test_unknown_preset(tmp_path, shapes_dir):
    proc = _run("train", "--preset", "huge", "--data", shapes_dir, "--out", tmp_path / "run", "--limit-images", "4")
    _assert_one_line_error(proc, "huge")
