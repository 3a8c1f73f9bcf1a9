"""Reading a JSON file that a person wrote or pointed at: a missing file or broken JSON is a one-line ValueError
naming the file (the CLI prints it as ``error: ...``), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, what: str = "file") -> Any:
    """The parsed content of ``path``. ``what`` names the file in the error for a missing one
    (``no such config file: x.json``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such {what}: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
