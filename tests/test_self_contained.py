"""The repository points at nothing outside it: no tracked file cites the workplace's shared folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "shared" + "/spec", "/work" + "/shared")
_SKIPPED_DIRS = {".git", ".venv", "outputs", "multirun", "build", "__pycache__", ".hypothesis"}


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an unpacked sdist)
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not (_SKIPPED_DIRS & set(p.relative_to(ROOT).parts)) and ".egg-info" not in str(p)
        ]


def test_no_tracked_text_file_points_outside_the_repository():
    offending = []
    files = _tracked_files()
    assert any(p.name == "README.md" for p in files)
    for path in files:
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        raw = path.read_bytes()
        if b"\0" in raw[:8192]:
            continue  # binary
        text = raw.decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), start=1):
            if any(word in line for word in FORBIDDEN):
                offending.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offending == [], "\n".join(offending)


def test_the_specs_are_the_repositorys_own_documents():
    for name in ("flexoffer.md", "interface.md"):
        text = (ROOT / "docs" / "spec" / name).read_text(encoding="utf-8")
        assert "This implementation:" in text, name
    flexoffer = (ROOT / "docs" / "spec" / "flexoffer.md").read_text(encoding="utf-8")
    for rule in ("1. `start` is on the grid", "5. `assigned_at` <= `assignment_before`", "flexoffer.schema.json"):
        assert rule in flexoffer, rule
