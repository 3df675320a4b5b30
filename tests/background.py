"""Subprocesses that tests start early and collect later.

The simulator checks and the fuzz children take tens of seconds each; tests/conftest.py
starts them as soon as their tests are collected (each module's ``start_early``), so they run
beside the in-process tests instead of after them. Output goes to files, not pipes, so a child
never blocks on a full pipe while nobody reads it. Everything still running when the session
ends is killed (conftest's ``pytest_sessionfinish``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


class Background:
    """Named subprocesses with their output in files under one temporary folder."""

    def __init__(self):
        self.procs = {}
        self.folder = None

    def path(self, name):
        """A file in this run's temporary folder (made on first use)."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="bpbench-tests-"))
        return self.folder / name

    def start(self, key, args, *, env, cwd):
        """Start ``args`` under ``key`` unless it already runs (or ran)."""
        if key not in self.procs:
            out = open(self.path(f"{key}.out"), "w")
            self.procs[key] = (subprocess.Popen(args, cwd=cwd, env=env, stdout=out,
                                                stderr=subprocess.STDOUT, text=True), out)
        return self.procs[key][0]

    def finish(self, key, timeout):
        """(exit status, output) of ``key``, waiting up to ``timeout`` seconds for it; the
        status is None when it had to be killed for taking longer."""
        proc, out = self.procs[key]
        try:
            proc.wait(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        out.close()
        return rc, self.path(f"{key}.out").read_text()

    def stop(self):
        """Kill what still runs and remove the folder."""
        for proc, out in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        self.procs.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


#: the one instance the test modules and conftest share
RUNNING = Background()
