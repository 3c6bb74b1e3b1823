"""Bits per byte: held-out scoring against slow references, the unigram reference, the time budget, and the
`babyllm eval` / `babyllm bench --quality` commands."""

import json
import math

import numpy as np
import pytest
import torch

from babyllm import BabyLLM
from babyllm.commands.cli import main as cli_main
from babyllm.model import bpb
from babyllm.model.network import next_token_loss
from babyllm.school.engine import lr_multiplier
from babyllm.school.librarian import Librarian
from babyllm.school.tutor import Tutor


def test_token_bytes_spell_the_text_exactly(make_cfg):
    lib = Librarian(make_cfg())
    text = "Ünïcode, tabs\tand spaces — all bytes count: 日本語.\n"
    ids = lib.encode(text)
    per_token = bpb.token_bytes(lib.tokenizer)
    assert per_token[ids].sum() == len(text.encode("utf-8"))
    assert per_token[lib.eot] == 0  # the document separator spells no text


def test_scored_bytes_are_the_bytes_of_every_predicted_token(make_cfg):
    lib = Librarian(make_cfg())
    held = np.asarray(lib.val_tokens)
    per_token = bpb.token_bytes(lib.tokenizer)
    # Decoding the whole run at once (tokens may hold parts of a multi-byte character).
    text = lib.decode([int(i) for i in held[1:] if int(i) != lib.eot])
    assert "\ufffd" not in text
    assert bpb.scored_bytes(held, per_token) == len(text.encode("utf-8"))


def test_unigram_matches_a_counting_loop():
    train = np.array([0, 1, 1, 2, 2, 2, 5], dtype=np.uint16)
    held = np.array([3, 2, 1, 4], dtype=np.uint16)
    vocab = 6
    counts = {v: 1 for v in range(vocab)}  # add-one
    for t in train:
        counts[int(t)] += 1
    total = sum(counts.values())
    want = -sum(math.log(counts[int(t)] / total) for t in held[1:])
    assert bpb.unigram_nats(train, held, vocab) == pytest.approx(want, rel=1e-12)


def test_model_nats_score_every_held_out_token_once(make_cfg):
    """Against a loop over consecutive context-sized windows, one window at a time (the last one shorter)."""
    torch.manual_seed(0)
    cfg = make_cfg()
    model = BabyLLM(cfg.model).eval()
    T = cfg.model.context
    held = np.random.default_rng(0).integers(0, cfg.model.vocab, size=5 * T + 7)
    ids = torch.from_numpy(held.astype(np.int64))
    want, scored = 0.0, 0
    for start in range(0, len(ids) - 1, T):
        x = ids[start:start + T]
        y = ids[start + 1:start + T + 1]
        x = x[:len(y)]
        want += next_token_loss(model(x[None]), y[None]).item() * len(y)
        scored += len(y)
    assert scored == len(held) - 1
    got = bpb.model_nats(model, held, torch.device("cpu"), batch=2)
    assert got == pytest.approx(want, rel=1e-5)


def test_an_untrained_model_scores_about_ln_vocab_per_token(make_cfg):
    cfg = make_cfg()
    lib = Librarian(cfg)
    s = bpb.score(BabyLLM(cfg.model).eval(), lib.tokenizer, lib.train_tokens, lib.val_tokens,
                      torch.device("cpu"))
    assert s.tokens == len(lib.val_tokens) - 1
    assert s.nats_per_token == pytest.approx(math.log(cfg.model.vocab), abs=0.7)
    assert s.bpb == pytest.approx(s.nats_per_token * s.tokens / s.bytes / math.log(2))
    assert s.unigram_bpb < s.bpb  # knowing token frequencies beats knowing nothing


def test_time_budget_runs_the_schedule_on_the_training_clock():
    # With a fraction the step count no longer matters after warm-up: half the budget is half the cosine.
    half = lr_multiplier(500, 10, 100, 1e-3, 1e-4, fraction=0.5)
    assert half == pytest.approx((1e-4 + 0.9e-3 * 0.5) / 1e-3)
    assert lr_multiplier(5, 10, 100, 1e-3, 1e-4, fraction=0.9) == pytest.approx(0.6)  # still warming up
    assert lr_multiplier(10 ** 6, 10, 100, 1e-3, 1e-4, fraction=2.0) == pytest.approx(0.1)


def test_tutor_stops_when_the_training_clock_reaches_the_budget(make_cfg, tmp_path):
    cfg = make_cfg("train.minutes=0.01", "train.save_every=0")  # 0.6 s of training
    with Tutor(cfg, tmp_path / "run", say=lambda m: None) as t:
        assert t.run() == "finished"
        assert 0.6 <= t.train_seconds < 0.6 + 1.0
        assert t.budget_used() >= 1.0
        # The LR has (nearly) reached the floor: the schedule ran on the clock, not on train.decay_steps (1000).
        # Nearly: the last step's rate comes from the clock before that step, so on a loaded machine (long
        # steps) it stops a little short of min_lr; on the step count it would still be near the peak.
        assert t.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.train.min_lr, rel=2e-2)
        assert 0 < t.step_count < 1000
        assert math.isfinite(t.recorder.last_stats["val_bpb"])
        # it ends validated at its last step: best val and the final save describe what the budget produced
        last, *_ = t.exam.curve[-1]
        assert last == t.step_count and t.progress.last_saved_step == t.step_count
        assert t.recorder.last_stats["train_s"] == pytest.approx(t.train_seconds)


@pytest.mark.parametrize("steps, every, validated", [(7, 5, [0, 5, 7]), (10, 5, [0, 5, 10]), (3, 100, [0, 3])])
def test_a_run_that_reaches_its_step_limit_validates_at_its_last_step(make_cfg, tmp_path, steps, every, validated):
    """Every eval_every steps, and once at the last step unless that was one: never twice, never a stale best."""
    cfg = make_cfg(f"train.steps={steps}", f"train.eval_every={every}", "train.save_every=0")
    with Tutor(cfg, tmp_path / "run", say=lambda m: None) as t:
        assert t.run() == "finished"
        assert [n for n, _, _ in t.exam.curve] == validated
        seconds = [s for _, s, _ in t.exam.curve]
        assert seconds == sorted(seconds) and seconds[0] == 0.0
        assert t.snapshot().stats["val_bpb"] == pytest.approx(t.exam.curve[-1][2])


def test_a_stopped_run_is_not_validated_again(make_cfg, tmp_path):
    """Only a run that reached its limit gets the final validation; stop (the user's) ends at once."""
    cfg = make_cfg("train.eval_every=5", "train.save_every=0")
    with Tutor(cfg, tmp_path / "run", say=lambda m: None) as t:
        for _ in range(3):
            t.step()
        t.stop()
        assert t.run() == "stopped"
        assert [n for n, _, _ in t.exam.curve] == [3]  # the run's opening validation only


def test_val_bpb_and_unigram_reference_are_stats(make_cfg, tmp_path):
    with Tutor(make_cfg("train.eval_every=5"), tmp_path / "run", say=lambda m: None) as t:
        t._validate()
        stats = t.step()
        assert math.isfinite(stats["val_bpb"]) and math.isfinite(stats["unigram_bpb"])
        assert stats["val_bpb"] == pytest.approx(
            t.val_loss / t.exam.val_bytes_per_token / math.log(2))


def test_eval_and_bench_quality_commands(corpus, cache, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--config", "tiny", "--set", f"data.cache_dir={cache}"]
    assert cli_main(["train", *common, "--corpus", str(corpus), "--run-dir", str(run), "--steps", "30"]) == 0
    capsys.readouterr()
    assert cli_main(["eval", "--run-dir", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 30 and out["tokens"] > 0 and 0 < out["bpb"] < 10 and out["unigram_bpb"] > 0
    assert cli_main(["eval", "--run-dir", str(run), "--corpus", str(corpus)]) == 0
    assert "bits/byte" in capsys.readouterr().out
    assert cli_main(["bench", "--quality", *common, "--corpus", str(corpus), "--minutes", "0.01", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["config"] == "tiny" and bench["steps"] > 0 and bench["tokens_per_s"] > 0
    assert bench["bpb"] > 0 and bench["unigram_bpb"] > 0
    # time to quality: a validation at the start and at the last step, by training time
    curve = bench["curve"]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == bench["steps"] and len(curve) >= 2
    assert all(a["train_seconds"] <= b["train_seconds"] for a, b in zip(curve, curve[1:], strict=False))
    assert all(0 < c["val_bpb"] < 20 for c in curve)
    assert cli_main(["bench", "--quality", *common, "--corpus", str(corpus), "--minutes", "0.01"]) == 0
    assert "validation bits per byte by training time: 0s " in capsys.readouterr().out


def test_thinned_keeps_the_ends_and_spreads_the_rest():
    from babyllm.commands.quality import thinned

    assert thinned([1, 2, 3], 8) == [1, 2, 3]
    rows = list(range(100))
    picked = thinned(rows, 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 99 and picked == sorted(picked)


def test_eval_and_bench_quality_mistakes_are_one_line(tmp_path, capsys):
    assert cli_main(["eval", "--run-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert cli_main(["bench", "--quality", "--config", "tiny", "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
    assert cli_main(["bench", "--minutes", "3"]) == 2
    assert "--quality" in capsys.readouterr().err
