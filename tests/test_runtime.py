"""The machine side (charlm.runtime): how busy the CPUs are, and threads fitted to the free ones."""

import os

import pytest
import torch

from charlm import runtime


def test_busy_cpus_reads_the_kernels_counters():

    measured = runtime.busy_cpus(interval=0.05)
    if measured is None:
        pytest.skip("no /proc/stat here")
    cpus, busy = measured
    assert cpus == len(os.sched_getaffinity(0)) and busy >= 0.0
    ticks = runtime.cpu_ticks({0})
    assert set(ticks) == {0} and ticks[0][0] >= ticks[0][1] > 0  # all time, idle time


def test_busy_cpus_counts_other_processes_only():
    """Busy time on the CPUs, less what this process's own threads used meanwhile."""

    readings = iter([{0: (1000, 500), 1: (1000, 900)},  # before: (all ticks, idle ticks) per CPU
                     {0: (1100, 500), 1: (1100, 950)}])  # after: CPU 0 fully busy, CPU 1 half busy
    own = iter([10.0, 10.0])
    assert runtime.busy_cpus(0.01, ticks=lambda cpus: next(readings),
                             own_cpu_time=lambda: next(own))[1] == pytest.approx(1.5)
    readings = iter([{0: (1000, 500), 1: (1000, 900)}, {0: (1100, 500), 1: (1100, 950)}])
    spun = iter([10.0, 10.0 + 10.0])  # our own threads used far more CPU than there was: nothing is left for others
    assert runtime.busy_cpus(0.01, ticks=lambda cpus: next(readings), own_cpu_time=lambda: next(spun))[1] == 0.0


def test_a_run_gives_up_threads_when_load_arrives_and_takes_them_back_when_it_leaves(monkeypatch):

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    load = {"busy": 0.0}
    clock = {"now": 0.0}
    monkeypatch.setattr(runtime, "busy_cpus", lambda: (2, load["busy"]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fitter = runtime.ThreadFitter("training", clock=lambda: clock["now"])
        assert fitter.start() is None and torch.get_num_threads() == 2  # idle: keeps both
        assert fitter.observe(70_000) is None
        load["busy"] = 1.0  # another process takes a core; two threads stall
        clock["now"] = 10.0
        assert fitter.observe(19_000) is None and torch.get_num_threads() == 2  # measured at most every 30 s
        clock["now"] = 31.0
        note = fitter.observe(19_000)
        assert torch.get_num_threads() == 1 and "training with 1 of 2 threads" in note
        clock["now"] = 45.0
        assert fitter.observe(48_000) is None  # busy still, and too soon to look again
        load["busy"] = 0.0  # the other process ends
        clock["now"] = 62.0
        assert fitter.observe(50_000) is not None and torch.get_num_threads() == 2
        clock["now"] = 100.0
        assert fitter.observe(69_000) is None and torch.get_num_threads() == 2  # steady rate: nothing measured
        load["busy"] = 1.0
        torch.set_num_threads(1)
        fitter.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cpus, busy, expected", [(2, 1.0, 1), (2, 0.1, 2), (4, 1.6, 2), (4, 3.9, 1), (8, 0.4, 4)])
def test_training_takes_no_more_threads_than_free_cpus(monkeypatch, cpus, busy, expected):

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: (cpus, busy))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        note = runtime.fit_threads_to_free_cpus("training")
        assert torch.get_num_threads() == expected
        assert (note is None) == (expected == 4) and (note is None or f"{expected} of 4 threads" in note)
        torch.set_num_threads(4)
        monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's explicit choice is kept
        assert runtime.fit_threads_to_free_cpus("training") is None and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
