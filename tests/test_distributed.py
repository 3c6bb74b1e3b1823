"""Data-parallel training: 2 CPU ranks (gloo on 127.0.0.1) launched as subprocesses, as torchrun would.

Each rank runs in its own working directory with a relative --run-dir, so rank 1 resolves the run
directory rank 0 sends it inside its own folder: that folder must stay empty (only rank 0 writes), and
resuming must work without rank 1 seeing rank 0's files (as on a second node without a shared disk).
Every run warms up for 50 steps, so the learning rate of step n does not depend on train.steps and a
run resumed at step 20 can be compared with a straight one.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from babyllm.commands.cli import main as cli_main
from babyllm.errors import BabyError
from babyllm.run.runfiles import list_saves
from babyllm.school.distributed import env_world, is_comm_failure

pytestmark = pytest.mark.slow
RTOL = 1e-4


def common(corpus, cache, *extra):
    # (the CPU always: on a one-GPU machine, device auto would send rank 1 to a cuda:1 that is not there)
    return ["--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={cache}",
            "--set", "train.device=cpu", "--set", "train.warmup=50", "--set", "stats.print_every=0.2", *extra]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(root, args, world=2, timeout_s=10):
    """Start `world` ranks of `python -m babyllm train ARGS`, rank r in root/rR; returns the Popen list."""
    port = free_port()
    procs = []
    for r in range(world):
        cwd = root / f"r{r}"
        cwd.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(world),
                   LOCAL_RANK=str(r), OMP_NUM_THREADS="1", BABYLLM_DIST_TIMEOUT=str(timeout_s))
        procs.append(subprocess.Popen([sys.executable, "-m", "babyllm", "train", *args], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=60):
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def losses(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for_steps(run, n, procs, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = run / "metrics.jsonl"
        if f.exists() and len(f.read_text().splitlines()) >= n:
            return
        assert all(p.poll() is None for p in procs), finish(procs)
        time.sleep(0.1)
    raise AssertionError(f"no {n} steps in {run} after {timeout} s")


@pytest.fixture(scope="module")
def straight(corpus, cache, tmp_path_factory):
    """One process, global batch 8 (2 ranks x 4), 30 steps: the reference loss curve."""
    run = tmp_path_factory.mktemp("single") / "run"
    assert cli_main(["train", *common(corpus, cache, "--set", "train.batch=8", "--steps", "30",
                                      "--run-dir", str(run))]) == 0
    return losses(run)


def assert_same_curve(got, want):
    assert [x["step"] for x in got] == [x["step"] for x in want]
    for g, w in zip(got, want, strict=True):
        assert g["loss"] == pytest.approx(w["loss"], rel=RTOL), g["step"]
        assert g["accuracy"] == pytest.approx(w["accuracy"], abs=1e-6), g["step"]
        assert g["tokens"] == w["tokens"]


def test_env_world_outside_and_inside_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert env_world() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_world() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(BabyError, match="do not fit"):
        env_world()
    assert is_comm_failure(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer"))
    assert not is_comm_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.fixture(scope="module")
def two_ranks(corpus, cache, tmp_path_factory):
    """2 ranks x batch 4 for 20 steps; rank r ran in root/rR with --run-dir run."""
    root = tmp_path_factory.mktemp("ddp")
    results = finish(launch(root, common(corpus, cache, "--run-dir", "run", "--steps", "20")))
    return root, results


def test_two_ranks_train_like_one_process_with_the_global_batch(two_ranks, straight):
    root, ((rc0, out0, err0), (rc1, out1, err1)) = two_ranks
    assert rc0 == 0 and rc1 == 0, (err0, err1)
    run = root / "r0" / "run"
    assert "2 ranks" in out0 and "global batch 8 sequences" in out0 and "finished at step 20" in out0
    assert out1 == "" and err1 == ""  # rank 1 prints nothing
    assert not (root / "r1" / "run").exists()  # ... and writes nothing
    assert_same_curve(losses(run), straight[:20])
    assert [s.step for s in list_saves(run)] == [20]
    assert (run / "tokenizer.json").exists() and (run / "best").exists()


def test_two_ranks_accumulating_train_like_one_process_with_the_global_batch(corpus, cache, straight, tmp_path):
    """2 ranks x batch 2 x 2 micro-batches (only the second all-reduces) = one process with batch 8."""
    results = finish(launch(tmp_path, common(corpus, cache, "--run-dir", "run", "--steps", "12",
                                             "--set", "train.batch=2", "--set", "train.accumulate=2")))
    assert [r[0] for r in results] == [0, 0], results
    assert "global batch 8 sequences" in results[0][1]
    assert_same_curve(losses(tmp_path / "r0" / "run"), straight[:12])


def test_two_ranks_resume_where_they_stopped(two_ranks, straight, tmp_path):
    root, results = two_ranks
    assert [r[0] for r in results] == [0, 0]
    shutil.copytree(root / "r0" / "run", tmp_path / "r0" / "run")
    # Rank 1 has no copy of the run: rank 0 sends it the save it resumes from.
    (rc0, out0, err0), (rc1, _, err1) = finish(launch(tmp_path, ["--resume", "--run-dir", "run", "--steps", "30"]))
    assert rc0 == 0 and rc1 == 0, (err0, err1)
    assert "resumed from save-00000020 (step 20)" in out0 and "finished at step 30" in out0
    assert not (tmp_path / "r1" / "run").exists()
    run = tmp_path / "r0" / "run"
    got = losses(run)
    assert [x["step"] for x in got] == list(range(1, 31))
    assert_same_curve(got, straight)
    assert [s.step for s in list_saves(run)] == [30, 20]


def test_a_signal_to_one_rank_stops_both_at_the_same_step(corpus, cache, tmp_path):
    procs = launch(tmp_path, common(corpus, cache, "--run-dir", "run", "--steps", "0"))
    run = tmp_path / "r0" / "run"
    wait_for_steps(run, 5, procs)
    procs[1].send_signal(signal.SIGTERM)
    (rc0, out0, err0), (rc1, out1, err1) = finish(procs, timeout=30)
    assert rc0 == 0 and rc1 == 0, (err0, err1)
    step = losses(run)[-1]["step"]
    assert f"stopped at step {step}" in out0 and f"saved step {step}" in out0
    assert [s.step for s in list_saves(run)] == [step]
    assert not (tmp_path / "r1" / "run").exists()


@pytest.mark.parametrize("killed", [1, 0])
def test_killing_one_rank_makes_the_other_exit_with_one_clear_line(corpus, cache, tmp_path, killed):
    procs = launch(tmp_path, common(corpus, cache, "--run-dir", "run", "--steps", "0",
                                    "--set", "train.save_every=5"), timeout_s=5)
    run = tmp_path / "r0" / "run"
    wait_for_steps(run, 8, procs)
    procs[killed].kill()
    survivor = 1 - killed
    t0 = time.monotonic()
    rc, out, err = finish([procs[survivor]], timeout=30)[0]
    finish(procs)
    assert time.monotonic() - t0 < 20
    assert rc != 0
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: rank {survivor} lost contact with the other ranks (")
    assert "; the last save at step " in lines[0] and lines[0].endswith(" is intact")
    assert "Traceback" not in err
    saved = list_saves(run)[0].step
    assert saved >= 5 and saved % 5 == 0
