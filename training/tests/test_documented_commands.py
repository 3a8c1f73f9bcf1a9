"""Every ``python -m dlip`` command that scripts/reproduce.sh runs and that REPORT.md's Commands section shows parses
with the CLI as written (subcommand, flags and their values), so the documented pipeline cannot drift from the code."""
import re
import shlex
from pathlib import Path

import pytest

from dlip.cli import build_parser

TRAINING = Path(__file__).resolve().parents[1]
SOURCES = {"scripts/reproduce.sh": TRAINING.parent / "scripts" / "reproduce.sh", "REPORT.md": TRAINING / "REPORT.md",
           "scripts/reproduce-v1.sh": TRAINING.parent / "scripts" / "reproduce-v1.sh",
           "report/HISTORY.md": TRAINING / "report" / "HISTORY.md"}


def _commands(text: str) -> list[str]:
    """Joined shell lines that invoke the CLI, with shell variables and command substitutions made literal."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        m = re.search(r"-m dlip (.+)$", line)
        if not m:
            continue
        cmd = m[1].split(" || ")[0].split("; do")[0].split(" && ")[0]
        cmd = cmd.replace('"${rows[@]}"', "--row a=b=c")
        cmd = re.sub(r"\$\{?(\w+)\}?", r"\1", cmd)  # $data, ${r} -> data, r
        out.append(cmd.strip())
    return out


def _shell_text(source: str) -> str:
    text = SOURCES[source].read_text()
    if source.endswith(".md"):  # the fenced shell blocks only, not the prose that names commands
        text = "\n".join(re.findall(r"```sh\n(.*?)```", text, flags=re.S))
    return text


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_documented_dlip_command_parses(source):
    commands = _commands(_shell_text(source))
    assert len(commands) >= 8, f"{source}: expected the pipeline's commands, found {commands}"
    parser = build_parser()
    for cmd in commands:
        try:
            parser.parse_args(shlex.split(cmd))
        except SystemExit:
            pytest.fail(f"{source}: `python -m dlip {cmd}` does not parse")
