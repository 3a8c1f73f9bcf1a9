"""The run folder has one owner: only ``dlip/run_folder.py`` spells a run-folder file name (config.json,
tokenizer.json, log.csv, checkpoints/last.pt, metrics.json, ...). Everyone else asks a ``RunFolder`` for the path,
so a renamed file is one edit.

The scan reads every string constant in ``dlip/`` (f-string parts included) and flags one whose ``/``-separated
parts include a run-folder file name: ``run / "metrics.json"``, ``"checkpoints/last.pt"``, ``f"{run}/log.csv"``.
Prose that mentions a name (``"writes metrics.json into it"``) is not a path and is not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

from dlip import run_folder

DLIP = Path(run_folder.__file__).resolve().parent
OWNER = "run_folder.py"
RUN_NAMES = frozenset(run_folder.RUN_FILES) | {run_folder.CHECKPOINT_FILE}

# Other folder formats that happen to use a run-folder name for a file of their own. Each entry is the format's own
# owner spelling its own file, not a run-folder path.
OTHER_FORMATS = {
    "hf/blip.py": {"config.json"},  # a Hugging Face BLIP checkpoint directory
    "data/tokenizer.py": {"tokenizer.json"},  # a Hugging Face tokenizer directory
    "export/contract.py": {"tokenizer.json"},  # a model bundle (export/FORMAT.md)
}


def spelled_run_paths(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    """``file:line: 'constant'`` for every string constant under ``root`` that spells a run-folder file name, except
    in the owner and the ``allowed`` names per file."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = set(node.value.split("/")) & RUN_NAMES
                if names - allowed.get(rel, set()):
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_but_the_owner_spells_a_run_folder_path():
    found = spelled_run_paths(DLIP, OTHER_FORMATS)
    assert not found, ("run-folder paths spelled outside dlip/run_folder.py (use RunFolder's properties):\n  "
                       + "\n  ".join(found))


def test_the_scan_catches_a_planted_violation(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "bad.py").write_text(
        'from pathlib import Path\n'
        'def f(run: Path):\n'
        '    """Reads metrics.json (prose: not flagged)."""\n'
        '    a = run / "metrics.json"\n'
        '    b = run / "checkpoints/last.pt"\n'
        '    return a, b, f"{run}/log.csv"\n')
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "blip.py").write_text('A = "config.json"\nB = "log.jsonl"\n')
    (tmp_path / OWNER).write_text('CONFIG_FILE = "config.json"\n')
    found = spelled_run_paths(tmp_path, OTHER_FORMATS)
    assert found == ["eval/bad.py:4: 'metrics.json'", "eval/bad.py:5: 'checkpoints/last.pt'",
                     "eval/bad.py:6: '/log.csv'", "hf/blip.py:2: 'log.jsonl'"]


def test_every_run_folder_name_is_covered(tmp_path):
    """The names come from run_folder's constants: the owner's text under another file name is flagged for every
    one of them, so a file added to RUN_FILES is covered without editing this test."""
    (tmp_path / "copy.py").write_text((DLIP / OWNER).read_text())
    flagged = {line.split(": ", 1)[1].strip("'") for line in spelled_run_paths(tmp_path, {})}
    assert RUN_NAMES <= flagged
