"""Claiming a run directory (issue 25, item 13): of starts at the same instant exactly one wins, and whoever did not
take the lock never removes the directory."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

from babyllm.errors import BabyError
from babyllm.run import rundir
from babyllm.run.runlock import RunLock, RunLocked


def _race(run_dir: str, barrier, results, keep: float) -> None:
    """One start: wait for the others, claim, and (the winner) hold the run a moment before letting go."""
    barrier.wait()
    try:
        claim = rundir.claim(rundir.Path(run_dir), resume=False)
    except RunLocked:
        results.put(("lost", os.path.isdir(run_dir)))
        return
    except BabyError as e:  # (e.g. the directory vanished under a start: it must say so in one line)
        results.put(("error", str(e)))
        return
    time.sleep(keep)  # the losers are done by now
    still = os.path.isdir(run_dir) and os.path.exists(os.path.join(run_dir, "train.lock"))
    claim.lock.release()
    results.put(("won", still))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the racing starts")
def test_of_starts_at_the_same_instant_exactly_one_wins_and_no_loser_removes_the_directory(tmp_path):
    ctx = multiprocessing.get_context("fork")
    starts = 6
    for trial in range(25):
        run_dir = str(tmp_path / f"run{trial}")
        barrier, results = ctx.Barrier(starts), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(run_dir, barrier, results, 0.2)) for _ in range(starts)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        got = [results.get(timeout=5) for _ in range(starts)]
        won = [ok for what, ok in got if what == "won"]
        assert len(won) == 1, (trial, got)
        assert won == [True], f"trial {trial}: the winner's run directory was removed under it: {got}"
        assert all(what == "lost" for what, _ in got if what != "won"), got


def test_a_failed_start_removes_only_a_directory_it_made(tmp_path):
    made = rundir.claim(tmp_path / "new", resume=False)
    assert made.created
    made.abandon()  # (e.g. an empty corpus): no half-made run is left
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    found = rundir.claim(tmp_path / "mine", resume=False)
    assert not found.created
    found.abandon()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_lock_taken_on_a_removed_directory_is_not_a_claim(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run)
    real_flock = rundir.runlock.fcntl.flock

    def flock_then_vanish(fd, how):  # the directory goes (a failed start's clean-up) as the lock is taken
        real_flock(fd, how)
        (run / "train.lock").unlink()
        run.rmdir()

    rundir.runlock.fcntl.flock = flock_then_vanish
    try:
        with pytest.raises(rundir.runlock.LockFileGone):
            lock.acquire()
    finally:
        rundir.runlock.fcntl.flock = real_flock


SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from babyllm.run import rundir
    from babyllm.errors import BabyError
    from babyllm.config import load_config
    from babyllm.school.tutor import Tutor
    run, corpus, cache, at = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    real = rundir.make_run_dir

    def late(d):  # every start reaches the directory at the same instant
        time.sleep(max(0.0, at - time.time()))
        return real(d)

    rundir.make_run_dir = late
    cfg = load_config("tiny", ["train.steps=3", "train.save_every=3"])
    cfg.data.corpus, cfg.data.cache_dir = corpus, cache
    try:
        tutor = Tutor(cfg, run, say=lambda m: None)
    except BabyError as e:
        print("lost:", e)
        sys.exit(2)
    time.sleep(1.0)  # (the losers give up meanwhile)
    print("won:", tutor.run())
""")


def test_tutors_started_at_the_same_instant_leave_one_run_trained(corpus, cache, tmp_path):
    run = tmp_path / "run"
    at = time.time() + 12.0  # (after every process has imported torch)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), str(corpus), str(cache), str(at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2, 2], outs
    assert sum("won: finished" in out for out, _ in outs) == 1, outs
    assert all("already being trained" in out for (out, _), code in zip(outs, codes, strict=True) if code == 2), outs
    assert (run / "save-00000003").is_dir()  # the winner's run is whole
