"""Reading offer files (JSON object, JSON list or JSONL) and writing files atomically.

Every way a file can be unusable (missing, a directory, unreadable, binary, not UTF-8, empty,
larger than the limit, malformed JSON) raises InputFileError with one sentence naming the file;
writing goes through a temporary file renamed into place, so a failed write leaves nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from atp.errors import InputFileError

__all__ = ["DEFAULT_MAX_BYTES", "expand_paths", "read_documents", "write_atomic", "write_jsonl_atomic"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _read_text(path: Path, max_bytes: int) -> str:
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)  # pipes have no size until read
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror})") from None
    if not raw:
        raise InputFileError(f"{path}: the file is empty")
    if len(raw) > max_bytes:
        size = path.stat().st_size if path.is_file() else len(raw)
        raise InputFileError(
            f"{path}: the file is {size / 2**20:.1f} MiB, larger than the limit of {max_bytes / 2**20:.0f} MiB "
            "(split it into JSONL parts or raise --max-mib)"
        )
    if b"\x00" in raw[:8192]:
        raise InputFileError(f"{path}: looks like a binary file, not JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise InputFileError(f"{path}: the file holds only whitespace")
    return text


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, with each folder replaced by its *.json and *.jsonl files (sorted, not recursive)."""
    out: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".json", ".jsonl") and q.is_file()))
        else:
            out.append(p)
    return out


def read_documents(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Any]:
    """The JSON documents of a file: one object, the items of a JSON list, or one per JSONL line.

    Raises InputFileError with a sentence naming the file (and line, for JSONL) when the file
    cannot be used.
    """
    p = Path(path)
    text = _read_text(p, max_bytes)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(lines) < 2:
            raise InputFileError(
                f"{p}: malformed JSON at line {whole_error.lineno} column {whole_error.colno}: {whole_error.msg}"
            ) from None
        docs = []
        for n, line in lines:
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(
                    f"{p}: malformed JSON at line {n} column {exc.colno}: {exc.msg} "
                    "(the file is neither one JSON document nor JSON lines)"
                ) from None
        return docs
    return data if isinstance(data, list) else [data]


def _create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file beside `name` in `folder`, created with the usual mode (0666 less the umask).

    `tempfile.mkstemp` would create it 0600, and the rename would keep that mode, so files
    other users should read (a run folder's reports) would be private.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name for {name} after 100 attempts")


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename.

    The file gets the mode a plain `open(path, "w")` would give it (0644 under the usual umask 022).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(p.parent, p.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: str | os.PathLike[str], documents: Iterable[Any]) -> None:
    """Write one JSON document per line, atomically."""
    write_atomic(path, "".join(json.dumps(d, allow_nan=False) + "\n" for d in documents))
