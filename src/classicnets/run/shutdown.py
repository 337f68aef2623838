"""Ending the process of an entry point without the interpreter's teardown (cheap: no torch)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def exit_without_teardown(status: int = 0) -> None:
    """Do what a normal exit does for the run's files, then leave with `os._exit`, skipping the rest.

    At exit, the interpreter waits for the threads, runs the `atexit` handlers (which close the log files and stop
    the helper processes of a parallel sweep), flushes the standard streams, and then tears down every module and
    object: with torch, Lightning, torchmetrics and matplotlib loaded that last part took 1.5–2 s and writes
    nothing. Called by the entry points once Hydra's `main` has returned, so the run's files are complete by then
    (checkpoints renamed into place, `metrics.json` and `status.json` written, the loggers finalized by Lightning
    at the end of fit and of test); errors do not come here and exit the usual way. So does a process with other
    threads still running (a parallel sweep's executor): stopping those is the interpreter's business.
    """
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # logging.shutdown, joblib's workers, ... in the order Python would run them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe has nothing left to flush
            stream.flush()
    os._exit(status)
