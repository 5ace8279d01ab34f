"""``detector.memory``: a worker thread that allocates and frees activation-sized blocks reuses
the memory once malloc is tuned, and faults it in anew each time without it.

Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning applies to glibc's malloc")

# 20 passes of what a forward pass does: a few 40 MB blocks alive at once, touched, then freed.
PROGRAM = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from detector.memory import keep_freed_memory

tuned = sys.argv[1] == "tuned" and keep_freed_memory()

def passes():
    for _ in range(20):
        blocks = [np.ones(40 << 20, np.uint8) for _ in range(3)]
        del blocks

with ThreadPoolExecutor(1) as thread:
    thread.submit(passes).result()  # the first pass maps the memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    thread.submit(passes).result()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True, timeout=120)
    tuned, faults = out.stdout.split()
    return tuned, int(faults)


def test_a_tuned_process_reuses_freed_activation_memory():
    tuned, faults = _faults("tuned")
    assert tuned == "True"
    assert faults < 200  # measured: 2


def test_without_the_tuning_the_same_work_faults_its_memory_in_each_pass():
    tuned, faults = _faults("untuned")
    assert tuned == "False"
    assert faults > 5_000  # measured: 21,702 (transparent huge pages spare most 4 kB faults)


def test_every_cfd_command_tunes_its_process(monkeypatch, tmp_path):
    from detector import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    cli.main(["brands", "list", "--data-dir", str(tmp_path / "var"), "-q"])  # refused (no data directory), tuned first
    assert calls == [True]
