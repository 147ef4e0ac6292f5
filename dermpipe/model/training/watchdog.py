"""A train task ends with the `dermpipe run` that started it, even when that run was SIGKILLed.

kfp.local starts each task as `sh -c ... python3 -m kfp.dsl.executor_main` in the caller's process group. A signal
to the group (Ctrl-C on a terminal) reaches the trainer too, but a kill of `dermpipe run` alone (an out-of-memory
kill, `kill -9 <pid>`) cannot be handled by the dying process, and the trainer, whose parent is the `sh`, would
train on and write checkpoints beside the next run's. PR_SET_PDEATHSIG does not help (the parent that dies is not
the trainer's own), so the trainer watches the run's pid, which the local runner exports as DERMPIPE_RUN_PID
(inherited; not a task parameter or task environment, so kfp.local's cache key is unchanged), and exits within
`poll` seconds of its end. On a cluster the variable is unset and nothing is watched.
"""

from __future__ import annotations

import os
import sys
import threading

RUN_PID_ENV = "DERMPIPE_RUN_PID"
EXIT_CODE = 143  # as if terminated: the run that wanted this result is gone


def process_identity(pid: int) -> str | None:
    """A live process's identity (its start time on Linux, else the pid), None when it has ended or is a zombie
    (a killed `dermpipe run` stays one until its own parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)


def exit_with_parent_run(poll: float = 0.5) -> threading.Thread | None:
    """Start the watchdog thread when DERMPIPE_RUN_PID names the run (None otherwise); exits now if it is gone."""
    pid = int(os.environ.get(RUN_PID_ENV, "0") or 0)
    if pid <= 0:
        return None
    identity = process_identity(pid)
    if identity is None:
        _exit(pid)
    watcher = threading.Thread(target=_watch, args=(pid, identity, poll), name="dermpipe-run-watchdog", daemon=True)
    watcher.start()
    return watcher


def _watch(pid: int, identity: str, poll: float) -> None:
    stopped = threading.Event()
    while not stopped.wait(poll):
        if process_identity(pid) != identity:  # ended, a zombie, or the pid reused by another process
            _exit(pid)


def _exit(pid: int) -> None:
    try:
        print(f"[train] dermpipe run (pid {pid}) is gone; stopping training (its checkpoints stay for the next run)",
              file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError, OSError):  # the pipe to the dead run
        pass
    os._exit(EXIT_CODE)
