"""The trigger stage: monitoring's retraining triggers, drift (the drift stage) or a performance drop (the performance
stage), combined into one decision that says which fired; the monitoring DAG's trigger task and `dermpipe monitor
--retrain` use it."""

from __future__ import annotations

from pathlib import Path


def fired(drift_detected: bool, performance_dropped: bool) -> list[str]:
    """The names of the triggers that fired, in a fixed order: drift, performance."""
    return [name for name, on in (("drift", drift_detected), ("performance", performance_dropped)) if on]


def reason(names: list[str]) -> str:
    """Why retraining starts, in words ('' when nothing fired)."""
    words = {"drift": "drift detected", "performance": "performance dropped below the version's test figures"}
    return " and ".join(words[n] for n in names)


def run(drift_detected: bool, performance_dropped: bool, report, metrics) -> bool:
    """Write which trigger(s) fired (Markdown report, metrics); returns whether to retrain."""
    from dermpipe.lineage.artifacts import annotate, log_metrics

    names = fired(drift_detected, performance_dropped)
    text = (f"# Retraining trigger\n\n**Fired**: {reason(names)} ({', '.join(names)}).\n" if names
            else "# Retraining trigger\n\n**Not fired**: no drift detected and no performance drop.\n")
    text += (f"\n| trigger | fired |\n|---|---|\n| drift | {bool(drift_detected)} |\n"
             f"| performance | {bool(performance_dropped)} |\n")
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(text)
    annotate(report, {"fired": names, "reason": reason(names)})
    log_metrics(metrics, {"retrain": int(bool(names)), "drift_trigger": int(bool(drift_detected)),
                          "performance_trigger": int(bool(performance_dropped))})
    print(f"trigger: {reason(names) or 'none fired'}")
    return bool(names)
