"""The `cnnlab` command with a fault injected from outside cnnlab's code, for the kill -9 tests
(tests/test_kill_resume.py):

    python tests/faults.py step:N ARGS...   SIGKILL right after the N-th optimizer step, before
                                            that step's checkpoint is written
    python tests/faults.py save:N ARGS...   at the N-th file cnnlab writes (atomic_write's rename):
                                            the temporary file cut to half its bytes, then SIGKILL,
                                            the target not yet replaced

cnnlab carries no test hook: this wraps a public method (Optimizer.step) and os.replace, in this
process only, and then runs cnnlab.cli.main(ARGS) as `cnnlab ARGS` would.
"""

from __future__ import annotations

import os
import re
import signal
import sys


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def after_step(n: int) -> None:
    from cnnlab.optim import Optimizer

    step, count = Optimizer.step, [0]

    def counted(self) -> None:
        step(self)
        count[0] += 1
        if count[0] == n:
            kill()

    Optimizer.step = counted


def halfway_through_save(n: int) -> None:
    replace, count = os.replace, [0]

    def cut(src, dst, **kw) -> None:
        # cnnlab.files.temporary_name (+ 8 random hex digits): .NAME.tmpPID-1f2e3d4c
        if re.fullmatch(r"\..+\.tmp\d+-[0-9a-f]{8}", os.path.basename(src)):
            count[0] += 1
            if count[0] == n:
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                    os.fsync(f.fileno())
                kill()
        replace(src, dst, **kw)

    os.replace = cut


def main() -> int:
    kind, _, n = sys.argv[1].partition(":")
    {"step": after_step, "save": halfway_through_save}[kind](int(n))
    from cnnlab.cli import main as cnnlab

    return cnnlab(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
