"""Tutor: the training loop, its stats, its controls and its NaN guard (tiny config, made-up text)."""

import json
import math
import re
import threading
import time

import pytest
import torch
from guard import params, poison, same
from runhelpers import wait_for

import babyllm.school.stepper as stepper_mod
from babyllm.paths import CORPORA
from babyllm.run.runfiles import list_saves
from babyllm.school.engine import lr_multiplier
from babyllm.school.soul import load_for_inference
from babyllm.school.tutor import Tutor
from babyllm.snapshot import Snapshot
from babyllm.stats import REGISTRY

from textgen import sentences

STAT_KEYS = (
    {"step", "tokens", "loss", "loss_100", "loss_1000", "val_loss", "val_bpb", "unigram_bpb", "perplexity", "accuracy",
     "lr", "grad_norm", "tokens_per_s", "step_ms", "mfu", "train_s", "entropy", "act_mean", "act_std", "act_inactive",
     "mem2_mix",
     "t_data", "t_forward", "t_backward", "t_optimizer", "t_stats"}
    | {f"window_{k}_{i}" for k in ("weight", "size") for i in range(7)}
    | {f"mem{m}_{k}" for m in (1, 2) for k in ("decay_short", "decay_long", "gate_short", "gate_long",
                                               "gate_input", "gate_proj")}
    | {f"norm_{p}" for p in ("embed", "neurons", "windows", "memory1", "memory2", "logits")}
)


def start(tutor):
    result = []
    th = threading.Thread(target=lambda: result.append(tutor.run()), daemon=True)
    th.start()
    return th, result


def test_lr_schedule_warms_up_then_decays_to_min():
    m = [lr_multiplier(s, 10, 100, 1e-3, 1e-4) for s in range(120)]
    assert m[0] == pytest.approx(0.1) and m[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(m[10:], m[11:], strict=False))
    assert m[100] == pytest.approx(0.1) and m[119] == pytest.approx(0.1)


def test_step_returns_every_stat(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None) as t:
        assert t.model is not None and t.librarian.vocab_size <= 300 and t.device.type == "cpu"
        stats = [t.step() for _ in range(12)]
    assert set(stats[0]) == STAT_KEYS == set(REGISTRY.names(t.cfg.model))  # the registry lists what is published
    assert [s["step"] for s in stats] == list(range(1, 13))
    assert stats[-1]["tokens"] == 12 * 4 * 16
    assert stats[0]["loss"] == pytest.approx(math.log(300), abs=0.6)
    assert 0 <= stats[-1]["act_inactive"] <= 1 and 0 <= stats[-1]["accuracy"] <= 1
    assert abs(sum(stats[-1][f"window_weight_{i}"] for i in range(7)) - 1) < 1e-5
    assert stats[-1]["loss_100"] == pytest.approx(sum(s["loss"] for s in stats) / 12)
    assert all(stats[-1][k] > 0 for k in ("t_data", "t_forward", "t_backward", "t_optimizer", "step_ms", "mfu"))
    assert stats[0]["lr"] < stats[-1]["lr"]  # warming up


def test_weight_decay_only_on_weight_matrices(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None) as t:
        names = {id(p): n for n, p in t.model.named_parameters()}
        decayed = {names[id(p)] for g in t.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert "neurons.weight" in decayed and "logits.linear.weight" in decayed
    assert not any(n.endswith("bias") or "gate_logits" in n or "norm" in n for n in decayed)


def test_run_writes_metrics_events_samples_and_finishes(make_cfg, tmp_path):
    snaps: list[Snapshot] = []
    run = tmp_path / "run"
    t = Tutor(make_cfg("train.steps=25"), run, publish=snaps.append, publish_every=0.0, say=lambda m: None)
    assert t.run() == "finished"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 26))
    assert set(lines[0]) == STAT_KEYS | {"time", "system"}  # a wall-clock time (issue 13), the machine's readings
    assert [x["step"] for x in lines if "system" in x][0] == 1  # (then every few seconds)
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("val") == 3 and "save" in kinds  # at the start, step 20 and the last; the final save
    assert snaps[-1].state == "finished" and snaps[-1].step == 25
    sample = snaps[-1].sample
    assert sample is not None and sample.step == 20 and len(sample.guesses) == len(sample.truths) == 16
    assert isinstance(sample.context, str) and len(sample.matches) == 16
    assert t.history.series("loss")[0] == list(range(1, 26))
    assert [s.step for s in list_saves(run)] == [25]
    assert (run / "best" / "model.safetensors").exists() and (run / "tokenizer.json").exists()


def test_a_sample_shows_the_bytes_of_a_split_character_not_replacement_characters(make_cfg, tmp_path):
    """Each guess and truth is one token alone: a lone byte of a multi-byte character shows as <0xE2> (its
    text), never U+FFFD (examiner.make_sample, babyllm.infer2.detokenizer.TokenText.shown)."""
    import random

    rng = random.Random(5)
    rare = "猫犬鳥魚花雨雪風🙂👍🏽—é"
    text = "".join(w + (rng.choice(rare) if rng.random() < 0.3 else " ") for w in sentences(400, seed=4).split(" "))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "text.txt").write_text(text, encoding="utf-8")
    with Tutor(make_cfg(corpus_path=corpus), tmp_path / "run", say=lambda m: None) as t:
        samples = [t.exam.make_sample(step) for step in range(1, 40)]  # (a different snippet each step)
    shown = [s for sample in samples for s in (*sample.guesses, *sample.truths)]
    assert not any("\ufffd" in s for s in shown)
    assert any("<0x" in s for s in shown)  # (the case itself: split characters among the truths)


def test_publish_is_throttled(make_cfg, tmp_path):
    times = []
    t = Tutor(make_cfg("train.steps=150"), tmp_path / "run", publish=lambda s: times.append(time.monotonic()),
              publish_every=10.0, say=lambda m: None)
    t.run()
    # Only state changes and events publish (starting->running, val x 8, best saves log no event, final save, finished)
    assert len(times) < 30


def test_pause_stops_steps_and_resume_continues(make_cfg, tmp_path):
    t = Tutor(make_cfg(), tmp_path / "run", say=lambda m: None, publish_every=0.0)
    th, result = start(t)
    wait_for(lambda: t.snapshot().step >= 5, what="training")
    t.pause()
    wait_for(lambda: t.snapshot().state == "paused", what="pause")
    paused_at = t.step_count
    time.sleep(0.3)
    assert t.step_count == paused_at and t.snapshot().step == paused_at
    t.resume()
    wait_for(lambda: t.step_count > paused_at + 3, what="resume")
    t.stop()
    th.join(10)
    assert result == ["stopped"]
    assert [s.step for s in list_saves(tmp_path / "run")] == [t.step_count]


def test_request_save_and_checkpoint_write_folders(make_cfg, tmp_path):
    run = tmp_path / "run"
    t = Tutor(make_cfg(), run, say=lambda m: None)
    th, _ = start(t)
    wait_for(lambda: t.step_count >= 3, what="training")
    t.request_save()
    wait_for(lambda: any(s.kind == "save" for s in list_saves(run)), what="save")
    t.request_checkpoint()
    wait_for(lambda: any(s.kind == "checkpoint" for s in list_saves(run)), what="checkpoint")
    t.stop()
    th.join(10)
    kinds = {json.loads(x)["kind"] for x in (run / "events.jsonl").read_text().splitlines()}
    assert {"save", "checkpoint"} <= kinds
    ck = [s for s in list_saves(run) if s.kind == "checkpoint"][0]
    assert {p.name for p in ck.path.iterdir()} == {"model.safetensors", "state.pt", "meta.json"}


def test_loss_falls_on_real_text(make_cfg, tmp_path):
    cfg = make_cfg("train.steps=150", corpus_path=CORPORA)
    t = Tutor(cfg, tmp_path / "run", say=lambda m: None)
    assert t.run() == "finished"
    _, losses = t.history.series("loss")
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert first == pytest.approx(math.log(300), abs=0.6)
    assert last < first - 0.8, (first, last)


# --- the NaN/inf guard ---------------------------------------------------------------------------


def test_nonfinite_loss_is_never_applied(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None) as t:
        for _ in range(3):
            t.step()
        poison(t)
        before = params(t)
        adam_steps = [s["step"].item() for s in t.optimizer.state.values()]
        stats = t.step()
        assert math.isnan(stats["loss"]) and stats["step"] == 4
        assert t.step_count == 3 and t.stepper.alarm == "step 4: loss is nan"
        assert same(before, params(t))
        assert [s["step"].item() for s in t.optimizer.state.values()] == adam_steps


def test_nonfinite_grad_norm_is_never_applied(make_cfg, tmp_path, monkeypatch):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None) as t:
        t.step()
        before = params(t)
        monkeypatch.setattr(stepper_mod, "clip_grad_norm_", lambda params, max_norm: torch.tensor(float("inf")))
        stats = t.step()
        assert math.isfinite(stats["loss"]) and stats["grad_norm"] == math.inf
        assert t.stepper.alarm == "step 2: grad_norm is inf"
        assert all(torch.equal(before[n], p) for n, p in t.model.named_parameters())


def test_alarm_pauses_and_rollback_restores_last_good_save(make_cfg, tmp_path):
    run = tmp_path / "run"
    t = Tutor(make_cfg(), run, say=lambda m: None, publish_every=0.0)
    th, result = start(t)
    wait_for(lambda: t.step_count >= 5, what="training")
    t.request_save()
    wait_for(lambda: t.last_saved_step is not None, what="save")
    saved = t.last_saved_step
    wait_for(lambda: t.step_count >= saved + 3, what="more training")
    with t.weights_lock:
        t.model.neurons.weight.data[0, 0] = float("nan")
    wait_for(lambda: t.snapshot().state == "alarm", what="alarm")
    snap = t.snapshot()
    assert re.fullmatch(r"step \d+: (loss|grad_norm) is nan", snap.error)
    assert any(e.kind == "alarm" for e in snap.events)
    stuck = t.step_count
    time.sleep(0.2)
    assert t.step_count == stuck  # training waits while the alarm is up
    t.rollback()
    wait_for(lambda: t.snapshot().state == "paused", what="rollback")
    assert t.step_count == saved
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    t.resume()
    wait_for(lambda: t.step_count >= saved + 3, what="training after rollback")
    t.stop()
    th.join(10)
    assert result == ["stopped"]
    assert load_for_inference(run)[3] == t.step_count


def test_stop_during_alarm_saves_last_good_state(make_cfg, tmp_path):
    run = tmp_path / "run"
    t = Tutor(make_cfg(), run, say=lambda m: None)
    th, result = start(t)
    wait_for(lambda: t.step_count >= 4, what="training")
    with t.weights_lock:  # non-finite weights must never be saved either
        t.model.logits.linear.bias.data[0] = float("inf")
    wait_for(lambda: t.snapshot().state == "alarm", what="alarm")
    t.stop()
    th.join(10)
    assert result == ["alarm"]
    assert list_saves(run) == [] and "weights contain nan/inf" in t.last_save_error


def test_broken_publish_callback_does_not_stop_training(make_cfg, tmp_path):
    def boom(snap):
        raise RuntimeError("reader bug")
    t = Tutor(make_cfg("train.steps=5"), tmp_path / "run", publish=boom, publish_every=0.0, say=lambda m: None)
    assert t.run() == "finished"


def test_a_bad_corpus_leaves_no_half_made_run(make_cfg, tmp_path):
    from babyllm.errors import CorpusError
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("   \n")
    with pytest.raises(CorpusError):
        Tutor(make_cfg(corpus_path=empty), tmp_path / "run", say=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_corpus_warnings_reach_say_and_the_event_log(make_cfg, corpus, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "text.txt").write_text((corpus / "text.txt").read_text())
    (mixed / "blob.txt").write_bytes(b"\x00\x01binary")
    said = []
    with Tutor(make_cfg(corpus_path=mixed), tmp_path / "run", say=said.append) as t:
        assert any("blob.txt" in m and "binary" in m for m in said)
        assert any("blob.txt" in e.message for e in t.snapshot().events)
