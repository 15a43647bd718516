"""Run the `foveal` command as a user would: in this process (fast) or in a child process (the real
entry point, `python -m foveal`).

Most tests use `foveal_cli`, which calls the console-script entry point `foveal.cli.main.main` here:
the same argument parsing, error handling and exit codes, without paying several seconds of Python
and torch start-up per call. A few smoke tests use `foveal_cli_subprocess` so that the real entry
point, its exit status and its stderr stay tested end to end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class CliResult:
    """What `subprocess.CompletedProcess` gives for a finished command: exit status and output."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def foveal_cli(*args: str, cwd: Path | str | None = None) -> CliResult:
    """`foveal ARGS...` in this process: `foveal.cli.main.main(ARGS)`, which always ends in SystemExit.

    stdout and stderr are captured, `cwd` is the working directory for the call, and the torch thread
    count that a command may set (--threads) is restored afterwards. Warnings are filtered as in a
    fresh interpreter and printed to the captured stderr, where a user would see them. The process
    start that a command's time budget counts from (`foveal.runtime.process_start`) is the call's
    start, as for a command that has just started. An exception other than SystemExit means the
    command would have printed a traceback: it propagates and fails the test.
    """
    from foveal import runtime
    from foveal.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    threads, here = torch.get_num_threads(), os.getcwd()
    real_process_start = getattr(runtime, "process_start", None)
    if real_process_start is not None:
        started = time.perf_counter()
        runtime.process_start = lambda: started
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(stdout), redirect_stderr(stderr), warnings.catch_warnings():
            python_default_warning_filters()
            warnings.showwarning = show_warning_on_stderr
            try:
                main(list(args))
            except SystemExit as exit:
                code = exit.code
            else:
                raise AssertionError("foveal.cli.main.main returned instead of exiting")
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
        if real_process_start is not None:
            runtime.process_start = real_process_start
    if code is None:
        returncode = 0
    elif isinstance(code, int):
        returncode = code
    else:  # sys.exit("message"): Python prints the message to stderr and exits 1
        stderr.write(f"{code}\n")
        returncode = 1
    return CliResult(["foveal", *args], returncode, stdout.getvalue(), stderr.getvalue())


def python_default_warning_filters() -> None:
    """The warning filters of a plain `python` process (no -W, no PYTHONWARNINGS), not pytest's."""
    warnings.resetwarnings()  # then the default action, "default": each warning once per location
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)


def show_warning_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def foveal_cli_subprocess(
    *args: str, cwd: Path | str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m foveal ARGS...` in a child process (several seconds of start-up each)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "foveal", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
