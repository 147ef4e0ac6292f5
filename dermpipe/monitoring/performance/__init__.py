"""performance: the performance stage, each served version's live figures from fed-back labels.

stage.py             the performance stage: PerformanceParams and `run` (components/performance.py calls it;
                     `dermpipe monitor`'s options)
analysis.py          the log window joined to its labels, per version: estimates, verdict, report and metrics
estimates.py         the join, estimates with bootstrap intervals, label delay, periods
drop.py              the drop rule against the version's test figures
evidently_report.py  Evidently's ClassificationPreset for the report
"""
