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


def test_every_command_has_one_function():
    from dlip import cli

    parser_commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert set(cli.COMMANDS) == parser_commands
    assert all(fn.__name__ == "cmd_" + name.replace("-", "_") for name, fn in cli.COMMANDS.items())


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only bad input (ValueError, FileNotFoundError) becomes a one-line error; a KeyError is a bug in our code."""
    from dlip import cli

    def broken(args):
        return {}["missing"]

    monkeypatch.setitem(cli.COMMANDS, "report", broken)
    with pytest.raises(KeyError, match="missing"):
        cli.main(["report", "--run", "a=b", "--out", "x.md"])


def test_invalid_json_names_the_file(tmp_path):
    bad = tmp_path / "grid.json"
    bad.write_text("[{")
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{}")
    proc = _run("ablate", "--teacher", tmp_path, "--config", cfg, "--grid", bad, "--data", tmp_path,
                "--out", tmp_path / "o")
    _assert_one_line_error(proc, "grid.json", "invalid JSON")
    _assert_one_line_error(_run("ablate", "--teacher", tmp_path, "--config", cfg, "--grid", tmp_path / "no.json",
                                "--data", tmp_path, "--out", tmp_path / "o"), "no such grid file", "no.json")


def test_steps_caps_warmup_and_says_so(tmp_path, capsys):
    from dlip.cli import build_parser, train_config_from_args

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"stages": [{"name": "short", "warmup_steps": 100},
                                             {"name": "long", "warmup_steps": 100}]}))
    args = build_parser().parse_args(["train", "--config", str(config), "--data", "x", "--out", "y",
                                      "--steps", "30", "5000"])
    cfg = train_config_from_args(args)
    assert [(s.steps, s.warmup_steps) for s in cfg.stages] == [(30, 3), (5000, 100)]
    err = capsys.readouterr().err
    assert "--steps 30: stage 'short' warms up for 3 steps instead of 100" in err
    assert "'long'" not in err


def test_distill_init_parts_flag(tmp_path):
    from dlip.cli import build_parser, distill_config_from_args

    base = ["distill", "--teacher", "t", "--data", "x", "--out", "y"]
    args = build_parser().parse_args(base + ["--init", "select", "--init-parts", "vision", "text"])
    cfg = distill_config_from_args(args)
    assert cfg.distill.init == "select" and cfg.distill.init_parts == ["vision", "text"]
    assert distill_config_from_args(build_parser().parse_args(base)).distill.init_parts == ["vision", "text",
                                                                                            "decoder"]
    with pytest.raises(ValueError, match="only init 'teacher' or 'select'"):
        distill_config_from_args(build_parser().parse_args(base + ["--init-parts", "decoder"]))


def test_ablate_scores_the_whole_test_split_unless_told_otherwise():
    from dlip.cli import build_parser

    base = ["ablate", "--teacher", "t", "--config", "c.json", "--grid", "g.json", "--out", "o"]
    assert build_parser().parse_args(base).eval_images is None  # None: no limit
    assert build_parser().parse_args(base + ["--eval-images", "all"]).eval_images is None
    assert build_parser().parse_args(base + ["--eval-images", "150"]).eval_images == 150
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--eval-images", "0"])
