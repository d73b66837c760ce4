"""Reports: a run folder into report.html with figures (`reports.report.build_report`); a sweep's
runs into one comparison (`reports.compare.build_comparison`, also `python -m reports.compare`)."""
