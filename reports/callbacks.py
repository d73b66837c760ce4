"""Hydra callback: after a sweep (multirun) ends, write its comparison report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reports.compare import build_comparison

__all__ = ["SweepReport"]


class SweepReport(Callback):
    """Writes comparison.html into the sweep folder when a multirun finishes."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            out = build_comparison(sweep_dir)
        except FileNotFoundError as exc:
            print(f"goflex-twin: no comparison report: {exc}")
            return
        print(f"goflex-twin: sweep comparison: {out}")
