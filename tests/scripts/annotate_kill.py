"""Runs `hf-mtl annotate` and kills itself with SIGKILL while writing part N (after its temporary file is
written, before the rename that completes it).

Launched by tests/test_annotate.py:
    python tests/scripts/annotate_kill.py N MODEL INPUT OUTPUT [annotate options]
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hf_mtl.annotate as job  # noqa: E402
from hf_mtl.cli import main  # noqa: E402


def kill_on_part(n: int) -> None:
    write_table = job.pq.write_table
    calls = []

    def write_then_die(table, where, *args, **kwargs):
        write_table(table, where, *args, **kwargs)
        calls.append(where)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)

    job.pq.write_table = write_then_die


if __name__ == "__main__":
    kill_on_part(int(sys.argv[1]))
    sys.exit(main(["annotate", *sys.argv[2:]]))
