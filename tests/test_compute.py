"""``detector.compute``: one thread runs the model and holds the process's intra-op threads."""

from __future__ import annotations

import subprocess
import sys
import threading

import torch

from detector.compute import ComputeThread

# In a fresh interpreter: take_intra_op_threads changes process-wide torch settings.
PROGRAM = """
import threading, torch
from detector.compute import take_intra_op_threads

default = torch.get_num_threads()
compute = take_intra_op_threads()
x = torch.randn(512, 512)
on_compute = compute.run(lambda: (x @ x, torch.get_num_threads())[1])
later = []
thread = threading.Thread(target=lambda: later.append((x @ x, torch.get_num_threads())[1]))
thread.start(); thread.join()
print(default, on_compute, later[0], torch.get_num_threads())
compute.shutdown()
"""


def test_the_compute_thread_keeps_the_intra_op_threads_and_every_other_thread_has_one():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=120)
    default, on_compute, later_thread, caller = map(int, out.stdout.split())
    assert default >= 1
    assert on_compute == default  # kept after its first kernel (torch's lazy per-thread set-up)
    assert later_thread == 1 and caller == 1


def test_run_executes_on_the_compute_thread_and_inline_from_it():
    compute = ComputeThread()
    try:
        where = compute.run(threading.get_ident)
        assert where != threading.get_ident()
        # called from the compute thread itself (a forward pass inside a batch job): inline, no deadlock
        assert compute.run(lambda: compute.run(threading.get_ident)) == where
    finally:
        compute.shutdown()


def test_an_embedder_on_a_compute_thread_embeds_there_whoever_asks(zero_shot):
    embedder = zero_shot.embedder()
    size = zero_shot.config.input.input_size
    pixels = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    alone = embedder.embed_tensor(pixels).vectors
    compute = ComputeThread()
    seen = []
    forward = embedder._forward
    embedder._forward = lambda batch: (seen.append(threading.get_ident()), forward(batch))[1]
    embedder.run_on(compute)
    try:
        results = []
        askers = [threading.Thread(target=lambda: results.append(embedder.embed_tensor(pixels).vectors)) for _ in range(3)]
        for t in askers:
            t.start()
        for t in askers:
            t.join()
        assert set(seen) == {compute.run(threading.get_ident)}
        assert len(results) == 3 and all((r == alone).all() for r in results)
    finally:
        compute.shutdown()
