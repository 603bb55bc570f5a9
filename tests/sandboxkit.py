"""Driving a real sandbox cluster from tests: its server process and its ``bin/`` commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from phorque_testbed.sandbox import server
from phorque_testbed.sandbox.layout import Layout
from tests import waiting

COMMAND_TIMEOUT = 30.0


class Sandbox:
    """A running sandbox cluster and helpers to use it."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.root = Path(layout.root)

    def run(self, command: str, *args: str, input: str | None = None,
            env: dict[str, str] | None = None, check: bool = False,
            timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """Run ``DIR/bin/<command> args`` (an argument vector, never a shell)."""
        proc = subprocess.run([self.layout.command(command), *args], input=input, text=True,
                              capture_output=True, timeout=timeout, cwd=self.root,
                              env={**os.environ, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"{command} {args} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def qsub(self, *args: str, script: str = "#!/bin/sh\ntrue\n", runtime: float | None = None,
             exit_code: int | None = None) -> str:
        directive = ""
        if runtime is not None or exit_code is not None:
            words = []
            if runtime is not None:
                words.append(f"runtime={runtime:g}")
            if exit_code is not None:
                words.append(f"exit={exit_code}")
            directive = "#SANDBOX " + " ".join(words) + "\n"
        lines = script.splitlines(keepends=True)
        text = "".join(lines[:1]) + directive + "".join(lines[1:])
        return self.run("qsub", *args, input=text, check=True).stdout.strip()

    def accounting(self) -> list[str]:
        lines: list[str] = []
        for path in sorted(Path(self.layout.accounting).iterdir()):
            lines += path.read_text().splitlines()
        return lines

    def records(self, kind: str | None = None, job: str | None = None) -> list[list[str]]:
        """Accounting lines split as ``[date, type, job id, text]``."""
        found = [line.split(";", 3) for line in self.accounting()]
        return [r for r in found if (kind is None or r[1] == kind) and (job is None or r[2] == job)]

    def job_files(self) -> set[str]:
        return {p.name for p in Path(self.layout.jobs).iterdir()}

    def wait_for(self, predicate: Callable[[], object], timeout: float = 20.0,
                 what: str = "condition") -> object:
        return waiting.wait_for(predicate, timeout, what)

    def stop(self) -> None:
        server.stop(self.layout)

    def start(self) -> None:
        server.start(self.layout)
