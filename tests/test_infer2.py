"""Tests for INFER2: incremental generation against a slow full-forward reference, sampling, decoding,
the conversation memory, commands, bad input, and chatting beside a training Tutor."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from babyllm.config import ChatConfig, load_config
from babyllm.errors import BabyError
from babyllm.infer2 import Infer2, Settings
from babyllm.infer2.commands import COMMANDS, RELOAD, find, help_examples, help_line
from babyllm.infer2.detokenizer import TokenText
from babyllm.infer2.sampling import apply_repetition_penalty, sample_next
from babyllm.model.network import BabyLLM
from babyllm.school.librarian import END_OF_TEXT, train_tokenizer

from textgen import sentences

CONTEXT = 48


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(iter([sentences(600, seed=3)]), 300)


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", [f"model.context={CONTEXT}", "model.windows=[1.5, 2, 3, 5, 8, 16, 48]"])


@pytest.fixture()
def model(cfg):
    torch.manual_seed(0)
    m = BabyLLM(cfg.model)
    with torch.no_grad():  # sharper than the near-uniform initial logits, so greedy choices are stable
        m.logits.linear.weight.mul_(30)
    return m


def greedy(**kw) -> Settings:
    return Settings(**{**dict(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0, penalty_window=0,
                              max_tokens=10), **kw})


def reference_greedy(model: BabyLLM, ids: list[int], n: int, eot: int, penalty: float = 1.0,
                     window: int = 0) -> list[int]:
    """Slow and obviously correct: a full forward over every token so far for each new token."""
    out: list[int] = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids + out]))[0, -1].clone()
        if penalty != 1.0 and window:
            for t in set((ids + out)[-window:]):
                logits[t] = logits[t] / penalty if logits[t] > 0 else logits[t] * penalty
        t = int(torch.argmax(logits))
        out.append(t)
        if t == eot:
            break
    return out


def decode(tok, ids: list[int]) -> str:
    return tok.decode([i for i in ids if i != tok.token_to_id(END_OF_TEXT)], skip_special_tokens=False)


# --- incremental state == full forward ------------------------------------------------------------------


def test_incremental_logits_match_full_forward(model, tok) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, 300, (CONTEXT - 1,)).tolist()
    with torch.no_grad():
        full = model(torch.tensor([ids]))[0]
    inf = Infer2(model, tok, greedy())
    # A prompt prefill, a one-token step, a second "prompt" chunk, then one token at a time.
    got = [inf._forward(ids[:10])]
    got.append(inf._forward(ids[10:11]))
    got.append(inf._forward(ids[11:20]))
    for i in range(20, len(ids)):
        got.append(inf._forward([ids[i]]))
    positions = [9, 10] + [19] + list(range(20, len(ids)))
    for pos, logits in zip(positions, got, strict=True):
        torch.testing.assert_close(logits, full[pos], rtol=1e-4, atol=1e-4)
    assert inf._state.pos == len(ids)


def test_incremental_logits_match_full_forward_past_the_context(model, tok) -> None:
    # The carried window history (one context) and memory buffers are exact even past the context.
    torch.manual_seed(2)
    ids = torch.randint(0, 300, (2 * CONTEXT + 5,)).tolist()
    with torch.no_grad():
        full = model(torch.tensor([ids]))[0]
    inf = Infer2(model, tok, greedy())
    inf._forward(ids[:30])
    for i in range(30, len(ids)):
        torch.testing.assert_close(inf._forward([ids[i]]), full[i], rtol=1e-4, atol=1e-4)
    assert inf._state.acts.shape[-1] == CONTEXT  # the history never grows past one context


def test_greedy_reply_matches_slow_reference(model, tok) -> None:
    prompt = "The baker walked to the harbour"
    ids = tok.encode(prompt).ids
    eot = tok.token_to_id(END_OF_TEXT)
    n = CONTEXT - len(ids) - 1
    ref = reference_greedy(model, ids, n, eot)
    inf = Infer2(model, tok, greedy(max_tokens=n))
    assert inf.reply(prompt) == decode(tok, ref)
    assert len(ref) > 5


def test_repetition_penalty_greedy_matches_reference(model, tok) -> None:
    prompt = "a jar of honey"
    ids = tok.encode(prompt).ids
    eot = tok.token_to_id(END_OF_TEXT)
    ref = reference_greedy(model, ids, 30, eot, penalty=3.0, window=8)
    inf = Infer2(model, tok, greedy(max_tokens=30, repetition_penalty=3.0, penalty_window=8))
    assert inf.reply(prompt) == decode(tok, ref)


def test_conversation_memory_continues_and_reset_forgets(model, tok) -> None:
    eot = tok.token_to_id(END_OF_TEXT)
    p1, p2 = "The mayor found an old map.", " Then the cat"
    ids1, ids2 = tok.encode(p1).ids, tok.encode(p2).ids
    r1 = reference_greedy(model, ids1, 8, eot)
    r2 = reference_greedy(model, ids1 + r1 + ids2, 8, eot)
    inf = Infer2(model, tok, greedy(max_tokens=8))
    assert inf.reply(p1) == decode(tok, r1)
    assert inf.reply(p2) == decode(tok, r2)  # continues from the first turn
    inf.reset()
    assert inf._state is None
    fresh = reference_greedy(model, ids2, 8, eot)
    assert inf.reply(p2) == decode(tok, fresh)


def test_empty_prompt_continues_a_conversation_but_not_a_fresh_one(model, tok) -> None:
    inf = Infer2(model, tok, greedy(max_tokens=4))
    with pytest.raises(BabyError, match="empty prompt"):
        inf.stream("")
    inf.reply("hello")
    inf.reply("")  # keeps going from where the last reply stopped
    assert inf._state.pos > len(tok.encode("hello").ids)


# --- sampling -------------------------------------------------------------------------------------------


def test_same_seed_same_output_and_global_rng_untouched(model, tok) -> None:
    s = Settings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, penalty_window=0, max_tokens=30, seed=7)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    a = Infer2(model, tok, s).reply("the garden gate")
    b = Infer2(model, tok, s).reply("the garden gate")
    assert torch.equal(torch.get_rng_state(), rng)
    assert a == b
    c = Infer2(model, tok, Settings(**{**s.__dict__, "seed": 8})).reply("the garden gate")
    d = Infer2(model, tok, Settings(**{**s.__dict__, "seed": 9})).reply("the garden gate")
    assert len({a, c, d}) > 1
    inf = Infer2(model, tok, s)
    first = inf.reply("the garden gate")
    inf.reset()  # reseeds: the conversation replays
    assert inf.reply("the garden gate") == first


def test_top_k_one_and_tiny_top_p_are_greedy(model, tok) -> None:
    want = Infer2(model, tok, greedy(max_tokens=12)).reply("twelve apples")
    for kw in (dict(top_k=1), dict(top_p=1e-6)):
        s = Settings(**{**greedy(max_tokens=12).__dict__, "temperature": 1.5, "seed": 1, **kw})
        assert Infer2(model, tok, s).reply("twelve apples") == want


def test_sample_next_respects_top_k_and_top_p() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    base = dict(temperature=1.0, repetition_penalty=1.0, penalty_window=0, max_tokens=1)
    seen_k = {sample_next(logits.clone(), Settings(top_k=2, top_p=1.0, **base), [], g) for _ in range(300)}
    assert seen_k == {0, 1}
    seen_p = {sample_next(logits.clone(), Settings(top_k=0, top_p=0.7, **base), [], g) for _ in range(300)}
    assert seen_p == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    seen_all = {sample_next(logits.clone(), Settings(top_k=0, top_p=1.0, **base), [], g) for _ in range(2000)}
    assert seen_all == {0, 1, 2, 3}
    # Temperature 0 is argmax, whatever the generator.
    assert sample_next(logits.clone(), Settings(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                                                penalty_window=0, max_tokens=1), [], g) == 0


def test_repetition_penalty_is_ctrl_style() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = apply_repetition_penalty(logits.clone(), [0, 1, 1, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]  # each distinct token once; positive /, negative *
    g = torch.Generator().manual_seed(0)
    s = Settings(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=5.0, penalty_window=2, max_tokens=1)
    assert sample_next(torch.tensor([3.0, 1.0, 0.0]), s, [0], g) == 1
    assert sample_next(torch.tensor([3.0, 1.0, 0.0]), s, [0, 2, 2], g) == 0  # token 0 is outside the window


def test_settings_from_config_and_validation() -> None:
    s = Settings.from_config(ChatConfig(temperature=0.5, top_k=7, top_p=0.9, repetition_penalty=1.3,
                                        penalty_window=16, max_tokens=33))
    assert (s.temperature, s.top_k, s.top_p, s.repetition_penalty, s.penalty_window, s.max_tokens) == \
        (0.5, 7, 0.9, 1.3, 16, 33)
    assert s.stop == () and s.seed is None
    for bad in (dict(temperature=-1.0), dict(temperature=math.nan), dict(top_k=-1), dict(top_p=0.0),
                dict(top_p=1.5), dict(repetition_penalty=0.5), dict(max_tokens=0), dict(stop=("",))):
        with pytest.raises(BabyError):
            Settings(**{**s.__dict__, **bad}).validate()


def test_stop_strings_end_the_reply_and_are_never_shown(model, tok) -> None:
    full = Infer2(model, tok, greedy(max_tokens=40)).reply("the morning train")
    assert len(full) > 12
    stop = full[6:9]
    want = full[: full.find(stop)]
    inf = Infer2(model, tok, greedy(max_tokens=40, stop=(stop, "no such text")))
    pieces = list(inf.stream("the morning train"))
    assert "".join(pieces) == want
    assert all(stop not in p for p in pieces)


# --- text -----------------------------------------------------------------------------------------------


def test_stream_decoding_holds_back_split_characters(tok) -> None:
    text = "Zoë's café: 猫が好き 🙂👍🏽 naïve — done"
    ids = tok.encode(text).ids
    stream = TokenText(tok).stream()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text == tok.decode(ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces[:-1]  # some character really was split across tokens (and held back)


def test_a_token_on_its_own_shows_a_lone_byte_as_what_it_is(tok) -> None:
    """A guess-versus-truth sample shows each token alone: the bytes of a character byte-level BPE split
    across tokens cannot decode alone and show as <0xE2>, never as U+FFFD, for every token of the vocabulary."""
    table = TokenText(tok)
    shown = [table.shown(i) for i in range(table.size)]
    assert not any("\ufffd" in s for s in shown)
    lone = [i for i in range(table.size) if table.bytes[i] and not _decodes(table.bytes[i])]
    assert lone, "a byte-level vocabulary has tokens for single bytes of multi-byte characters"
    for i in lone:
        assert shown[i].count("<0x") >= 1 and tok.decode([i]).count("\ufffd") >= 1
    em_dash = next(i for i in range(table.size) if table.bytes[i] == b"\xe2")
    assert shown[em_dash] == "<0xE2>" and table.shown(table.size) == "?"


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_unseen_characters_are_encoded_and_chat_works(model, tok) -> None:
    inf = Infer2(model, tok, Settings(max_tokens=20, seed=0))
    out = inf.reply("猫と🙂 ελληνικά")
    assert isinstance(out, str)
    assert inf._state.pos >= len("猫と🙂 ελληνικά".encode())  # byte-level: every byte became a token at worst


def test_prompt_longer_than_context_keeps_the_tail_with_one_notice(model, tok) -> None:
    long_prompt = sentences(40, seed=9)
    assert len(tok.encode(long_prompt).ids) > CONTEXT
    inf = Infer2(model, tok, greedy(max_tokens=3))
    pieces = inf.stream(long_prompt)
    next(pieces, None)
    assert inf.notices == [f"prompt longer than the context: kept the last {CONTEXT} tokens"]
    list(pieces)
    assert len(inf.notices) == 1
    assert inf.take_notices() and inf.notices == []
    # Same as prompting with only the tail.
    tail_ids = tok.encode(long_prompt).ids[-CONTEXT:]
    eot = tok.token_to_id(END_OF_TEXT)
    inf2 = Infer2(model, tok, greedy(max_tokens=3))
    assert inf2.reply(long_prompt) == decode(tok, reference_greedy(model, tail_ids, 3, eot))


# --- commands -------------------------------------------------------------------------------------------


def test_commands_change_settings(model, tok) -> None:
    inf = Infer2(model, tok, Settings.from_config(ChatConfig()))
    assert "0.3" in inf.command("/temp 0.3") and inf.settings.temperature == 0.3
    inf.command("/topk 5")
    inf.command("/topp 0.5")
    inf.command("/max 17")
    inf.command("/penalty 1.5")
    inf.command("/seed 3")
    s = inf.settings
    assert (s.top_k, s.top_p, s.max_tokens, s.repetition_penalty, s.seed) == (5, 0.5, 17, 1.5, 3)
    assert inf.command("/temp") == "temperature is 0.3"  # no value: shows the current one
    assert "/temp" in inf.command("/help") and "/reset" in inf.command("/help")
    assert "top-k 5" in inf.command("/settings")
    inf.command("/seed off")
    assert inf.settings.seed is None
    inf.reply("hi")
    assert inf._state is not None
    inf.command("/reset")
    assert inf._state is None


@pytest.mark.parametrize("line", ["/temp -1", "/temp abc", "/temp nan", "/temp inf", "/topk 2.5", "/topk -3",
                                  "/topp 0", "/topp 1.2", "/max 0", "/max many", "/penalty 0.9", "/seed x",
                                  "/temp 1 2", "/reset now"])
def test_invalid_command_values_leave_settings_unchanged(model, tok, line) -> None:
    inf = Infer2(model, tok, Settings.from_config(ChatConfig()))
    before = Settings(**inf.settings.__dict__)
    with pytest.raises(BabyError) as e:
        inf.command(line)
    assert inf.settings == before
    assert str(e.value) and "\n" not in str(e.value)


def test_unknown_command_names_help(model, tok) -> None:
    inf = Infer2(model, tok)
    with pytest.raises(BabyError, match="/help"):
        inf.command("/frobnicate 3")
    with pytest.raises(BabyError, match="/help"):
        inf.command("temp 3")


def test_every_command_in_the_table_is_dispatched_and_in_every_help(model, tok) -> None:
    """The table is the one list: each command (and alias) runs, and every help text names each one."""
    from tui.screens import CHAT_HELP, VIEWER_CHAT_HELP

    inf = Infer2(model, tok)
    for cmd in COMMANDS:
        for name in (cmd.name, *cmd.aliases):
            assert find(name) is cmd
            reply = inf.command(f"{name} {cmd.example}".strip())
            assert reply and "\n" not in reply, name
        for text in (help_line(), help_examples(), CHAT_HELP, VIEWER_CHAT_HELP):
            assert cmd.name in text, (cmd.name, text)
    assert help_line() == inf.command("/help")
    assert RELOAD.name in VIEWER_CHAT_HELP and RELOAD.name not in CHAT_HELP and find(RELOAD.name) is None
    assert help_line().endswith(", /help") and help_line((RELOAD,)).endswith(f"{RELOAD.usage()}, /help")


# --- living beside training -----------------------------------------------------------------------------


class CountingLock:
    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.acquisitions = 0

    def __enter__(self):
        self.inner.acquire()
        self.acquisitions += 1
        return self

    def __exit__(self, *exc):
        self.inner.release()

    def locked(self) -> bool:
        return self.inner.locked()


def test_lock_held_per_forward_never_across_the_reply(model, tok) -> None:
    lock = CountingLock()
    inf = Infer2(model, tok, greedy(max_tokens=12), lock=lock)  # type: ignore[arg-type]
    pieces = 0
    for _ in inf.stream("the red bicycle"):
        assert not lock.locked()  # the consumer (and the Tutor) can run between tokens
        pieces += 1
    assert pieces >= 1
    tokens = inf._state.pos - len(tok.encode("the red bicycle").ids) + 1  # the last token is not yet fed
    assert lock.acquisitions == tokens  # one prefill plus one per further token


def test_generation_leaves_the_model_alone(model, tok) -> None:
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inf = Infer2(model, tok, Settings(max_tokens=10, seed=0))
    inf.reply("the harbour")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_reset_during_a_reply_waits_for_its_end(model, tok) -> None:
    inf = Infer2(model, tok, greedy(max_tokens=5))
    pieces = inf.stream("the harbour")
    next(pieces)
    assert "when this reply ends" in inf.command("/reset")
    assert inf._state is not None  # the reply in flight keeps its state
    list(pieces)
    assert inf._state is None and inf._pending == [] and inf._recent == []


def test_cpu_forwards_are_single_threaded_in_the_callers_thread_only(model, tok) -> None:
    from babyllm.infer2.threads import native_threads

    if native_threads().omp_set is None:
        pytest.skip("torch without OpenMP: thread counts are left alone")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: list[int] = []
    real = model.run
    model.run = lambda *a, **kw: (seen.append(torch.get_num_threads()), real(*a, **kw))[1]  # type: ignore[method-assign]
    try:
        Infer2(model, tok, greedy(max_tokens=3)).reply("the harbour")
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # restored for whatever this thread does next
    finally:
        del model.run
        torch.set_num_threads(before)


def test_one_reply_at_a_time(model, tok) -> None:
    inf = Infer2(model, tok, greedy(max_tokens=5))
    first = inf.stream("one")
    next(first)
    with pytest.raises(BabyError, match="already"):
        list(inf.stream("two"))
    list(first)
    assert inf.reply("three") is not None


# --- chatting while the Tutor trains ---------------------------------------------------------------------


def make_tutor(tmp_path: Path, name: str):
    from babyllm.school.tutor import Tutor

    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(sentences(800, seed=4), encoding="utf-8")
    cfg = load_config("tiny", [f"data.corpus='{corpus}'", f"data.cache_dir='{tmp_path / 'cache'}'",
                               "train.device='cpu'", "train.steps=30"])
    return Tutor(cfg, tmp_path / name, say=lambda m: None)


def chatter(tutor, stop: threading.Event, errors: list[BaseException], replies: list[str]) -> threading.Thread:
    """A thread that chats with the Tutor's live model until stopped."""
    infer = Infer2(tutor.model, tutor.librarian.tokenizer, Settings(max_tokens=12, seed=5), lock=tutor.weights_lock)

    def loop() -> None:
        try:
            while not stop.is_set():
                replies.append(infer.reply("the baker 猫"))
                if len(replies) % 3 == 0:
                    infer.reset()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    return threading.Thread(target=loop, daemon=True)


def test_training_losses_bit_identical_with_concurrent_chat(tmp_path) -> None:
    pytest.importorskip("babyllm.school.tutor")
    alone = make_tutor(tmp_path, "alone")
    try:
        losses_alone = [alone.step()["loss"] for _ in range(30)]
    finally:
        alone.close()

    chatty = make_tutor(tmp_path, "chatty")
    stop, errors, replies = threading.Event(), [], []
    thread = chatter(chatty, stop, errors, replies)
    thread.start()
    try:
        losses_chat = []
        for _ in range(30):
            losses_chat.append(chatty.step()["loss"])
            if len(replies) < 2:
                while thread.is_alive() and len(replies) < 2 and not errors:  # make sure chat really overlaps
                    threading.Event().wait(0.005)
    finally:
        stop.set()
        thread.join(timeout=30)
        chatty.close()
    assert not thread.is_alive() and not errors
    assert len(replies) >= 2
    assert losses_chat == losses_alone  # bit-identical, not merely close
    assert losses_alone[-1] < losses_alone[0]


def test_chat_never_reads_half_updated_weights(tmp_path) -> None:
    pytest.importorskip("babyllm.school.tutor")
    tutor = make_tutor(tmp_path, "locked")
    updating = threading.Event()
    violations: list[str] = []
    real_run = tutor.model.run

    def before_step(*_):  # widen the optimizer's "half-updated" window
        updating.set()
        threading.Event().wait(0.002)

    def after_step(*_):
        updating.clear()

    def watched_run(*a, **kw):
        chat = torch.is_inference_mode_enabled()
        if chat and updating.is_set():
            violations.append("forward started during an update")
        out = real_run(*a, **kw)
        if chat and updating.is_set():
            violations.append("forward ended during an update")
        return out

    tutor.optimizer.register_step_pre_hook(before_step)
    tutor.optimizer.register_step_post_hook(after_step)
    tutor.model.run = watched_run  # type: ignore[method-assign]
    stop, errors, replies = threading.Event(), [], []
    thread = chatter(tutor, stop, errors, replies)
    thread.start()
    trainer = threading.Thread(target=tutor.run, daemon=True)  # the real loop, as the cockpit runs it
    trainer.start()
    trainer.join(timeout=60)
    stop.set()
    thread.join(timeout=30)
    assert not trainer.is_alive() and not thread.is_alive(), "deadlock"
    assert tutor.state == "finished" and tutor.step_count == 30
    assert not errors and replies
    assert violations == []
