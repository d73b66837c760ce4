"""`goflex-report PATH`: (re)build the report of a run folder, or the comparison of a sweep folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reports.compare import build_comparison
from reports.report import build_report

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goflex-report", description=__doc__)
    parser.add_argument("path", type=Path, help="a run folder (with kpi.json) or a sweep folder")
    args = parser.parse_args(argv)
    path: Path = args.path
    if not path.is_dir():
        print(f"goflex-report: {path}: no such folder", file=sys.stderr)
        return 1
    try:
        out = build_report(path) if (path / "kpi.json").is_file() else build_comparison(path)
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"goflex-report: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
