"""Reports: a run folder into report.html with figures; a sweep's runs into one comparison."""

from reports.compare import build_comparison
from reports.report import build_report

__all__ = ["build_comparison", "build_report"]
