"""Cron expressions for schedules: users write the usual five fields (`0 6 * * *`); KFP's scheduler wants six
(seconds first) and no time zone, Vertex AI takes five with an optional `TZ=` prefix. Each backend converts."""

from __future__ import annotations

from dermpipe.orchestration.errors import SubmitError

SUGGESTED_CRON = {"monitoring": "0 6 * * *", "training": "0 3 * * 1"}  # daily 06:00, Mondays 03:00 (UTC)


def split_cron(cron: str) -> tuple[str, list[str]]:
    """('TZ=Europe/Paris' or '', the fields) of a cron expression, with a clear error when it is malformed."""
    parts = cron.split()
    tz = parts.pop(0) if parts and parts[0].startswith(("TZ=", "CRON_TZ=")) else ""
    if len(parts) not in (5, 6):
        raise SubmitError(f"--cron {cron!r}: expected 5 fields 'minute hour day-of-month month day-of-week' "
                          "(e.g. '0 6 * * *' daily at 06:00 UTC, '0 3 * * 1' Mondays at 03:00), optionally "
                          "prefixed by TZ=Area/City")
    return tz, parts


def kfp_cron(cron: str) -> str:
    """KFP's scheduler (robfig/cron) takes six fields with seconds first and no time zone prefix."""
    tz, parts = split_cron(cron)
    if tz:
        raise SubmitError(f"--cron {cron!r}: Kubeflow Pipelines schedules in the cluster's time zone (UTC on GKE); "
                          "drop the TZ= prefix and give the time in UTC")
    return " ".join(parts if len(parts) == 6 else ["0", *parts])


def vertex_cron(cron: str) -> str:
    """Vertex AI takes standard five-field cron, optionally prefixed by TZ=."""
    tz, parts = split_cron(cron)
    if len(parts) == 6:
        if parts[0] not in ("0", "00"):
            raise SubmitError(f"--cron {cron!r}: Vertex AI schedules to the minute; use five fields")
        parts = parts[1:]
    return " ".join([tz, *parts] if tz else parts)
