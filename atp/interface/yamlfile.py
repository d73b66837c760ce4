"""Reading the small YAML (or JSON) settings files of the services: tokens, contracts.

`read_yaml(path, what=..., error=...)` returns the parsed document or raises `error` with one
sentence naming the file (missing, unreadable, not YAML and where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, *, what: str, error: type[Exception]) -> Any:
    """The YAML document in `path` (a `what` file, e.g. "tokens"); `error(sentence)` when it is wrong."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read as text ({exc.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: is not valid YAML{where}") from None
