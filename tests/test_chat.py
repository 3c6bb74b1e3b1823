"""Tests for `babyllm chat` and `babyllm sample`: loading a run, the prompt loop, the chat log and bad input."""

from __future__ import annotations

import builtins
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from babyllm.commands.chat import EMPTY_HINT, chat_loop
from babyllm.commands.cli import main
from babyllm.config import load_config
from babyllm.errors import BabyError
from babyllm.infer2 import Infer2, Settings
from babyllm.model.network import BabyLLM
from babyllm.run.chatlog import ChatLog
from babyllm.school import soul
from babyllm.school.librarian import train_tokenizer

from textgen import sentences

ROOT = Path(__file__).resolve().parent.parent


def make_run(run_dir: Path, step: int = 7, context: int = 16) -> Path:
    """A run directory holding one save of a tiny random model and its tokenizer."""
    cfg = load_config("tiny", [f"model.context={context}"])
    tok = train_tokenizer(iter([sentences(300, seed=5)]), cfg.model.vocab)
    torch.manual_seed(0)
    model = BabyLLM(cfg.model)
    with torch.no_grad():
        model.logits.linear.weight.mul_(20)
    soul.write_tokenizer(run_dir, tok)
    soul.save(run_dir, "save", step, model.state_dict(), None,
              {"config": cfg.to_dict(), "config_name": cfg.name, "tokenizer_digest": soul.tokenizer_digest(tok)})
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "tinyrun")


def sample(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- sample ---------------------------------------------------------------------------------------------


def test_sample_same_seed_same_output(run_dir, capsys) -> None:
    args = ["--run-dir", str(run_dir), "--prompt", "The baker", "--max-tokens", "30", "--temperature", "1.0"]
    code, a, err = sample(capsys, *args, "--seed", "3")
    assert code == 0
    assert "loaded run tinyrun at step 7" in err
    _, b, _ = sample(capsys, *args, "--seed", "3")
    assert a == b and a.endswith("\n")
    others = {sample(capsys, *args, "--seed", str(s))[1] for s in (4, 5, 6)}
    assert len(others | {a}) > 1


def test_sample_in_a_fresh_process_matches(run_dir, capsys) -> None:
    args = ["--run-dir", str(run_dir), "--prompt", "a jar of honey", "--max-tokens", "20", "--seed", "11"]
    _, here, _ = sample(capsys, *args)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "babyllm", "sample", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == here


def test_sample_empty_prompt_is_a_clear_error(run_dir, capsys) -> None:
    for prompt in ("", "   "):
        code, out, err = sample(capsys, "--run-dir", str(run_dir), "--prompt", prompt)
        assert code == 2 and out == ""
        assert err.startswith("error: --prompt is empty") and err.count("\n") == 1


@pytest.mark.parametrize("flag,value,words", [("--max-tokens", "0", "--max-tokens 0"),
                                               ("--temperature", "-1", "--temperature -1"),
                                               ("--temperature", "nan", "--temperature nan")])
def test_sample_invalid_values(run_dir, capsys, flag, value, words) -> None:
    code, out, err = sample(capsys, "--run-dir", str(run_dir), "--prompt", "hi", flag, value)
    assert code == 2 and out == ""
    assert words in err and err.count("\n") == 1


def test_sample_long_prompt_and_unseen_characters(run_dir, capsys) -> None:
    code, out, err = sample(capsys, "--run-dir", str(run_dir), "--prompt", sentences(10) + " 猫が 🙂👍🏽",
                            "--max-tokens", "5")
    assert code == 0
    assert "note: prompt longer than the context: kept the last 16 tokens" in err
    assert err.count("kept the last") == 1


def test_sample_greedy(run_dir, capsys) -> None:
    args = ["--run-dir", str(run_dir), "--prompt", "twelve apples", "--max-tokens", "12", "--temperature", "0"]
    _, a, _ = sample(capsys, *args, "--seed", "1")
    _, b, _ = sample(capsys, *args, "--seed", "2")
    assert a == b  # greedy ignores the seed


# --- missing and damaged runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["chat", "sample"])
def test_missing_run_dir_is_one_line_exit_2(tmp_path, capsys, command) -> None:
    extra = ["--prompt", "hi"] if command == "sample" else []
    code = main([command, "--run-dir", str(tmp_path / "nope"), *extra])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and "nope" in err and "no such run directory" in err and err.count("\n") == 1


def test_unknown_run_name_lists_runs(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "runs" / "alpha").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code = main(["chat", "--run", "beta"])
    err = capsys.readouterr().err
    assert code == 2 and "runs/beta: no such run directory" in err and "alpha" in err


def test_no_runs_at_all(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["chat"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_run_dir_without_saves_or_damaged(tmp_path, capsys, run_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["chat", "--run-dir", str(empty)]) == 2
    assert "no save found" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["sample", "--run-dir", str(a_file), "--prompt", "x"]) == 2
    assert "not a directory" in capsys.readouterr().err
    broken = make_run(tmp_path / "broken")
    (broken / "tokenizer.json").write_text("{ not json")
    assert main(["chat", "--run-dir", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer" in err and err.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_run_dir(tmp_path, capsys) -> None:
    d = make_run(tmp_path / "locked")
    d.chmod(0)
    try:
        assert main(["chat", "--run-dir", str(d)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    finally:
        d.chmod(0o755)


# --- chat -----------------------------------------------------------------------------------------------


def scripted(lines: list[str | BaseException]):
    it = iter(lines)

    def read(prompt: str) -> str:
        print(prompt, end="")
        item = next(it)
        if isinstance(item, BaseException):
            raise item
        return item

    return read


def test_chat_session(run_dir, capsys, monkeypatch) -> None:
    monkeypatch.setattr(builtins, "input", scripted(
        ["", "   ", "The baker walked", "/temp 0", "/temp -1", "/frob", "/max 5", "again 猫が 🙂", "/reset", "/quit"]))
    log = run_dir / "chat.log"
    log.unlink(missing_ok=True)
    assert main(["chat", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "loaded run tinyrun at step 7" in out
    assert out.count(EMPTY_HINT) == 2
    assert out.count("baby> ") == 2
    assert "temperature set to 0" in out
    assert "error: temperature -1" in out
    assert "error: unknown command '/frob': type /help" in out
    assert "conversation forgotten" in out
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(" you: The baker walked" in line for line in lines)
    assert any(" you: again 猫が 🙂" in line for line in lines)
    assert sum(" baby: " in line for line in lines) == 2
    assert all(line[:4].isdigit() for line in lines)  # timestamped


@pytest.mark.parametrize("end", [EOFError(), KeyboardInterrupt()])
def test_chat_eof_and_ctrl_c_exit_cleanly(run_dir, capsys, monkeypatch, end) -> None:
    monkeypatch.setattr(builtins, "input", scripted(["hello", end]))
    assert main(["chat", "--run-dir", str(run_dir)]) == 0
    assert capsys.readouterr().out.count("baby> ") == 1


def test_chat_picks_the_latest_run_by_default(tmp_path, capsys, monkeypatch, run_dir) -> None:
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "runs" / "older", step=3)
    newer = make_run(tmp_path / "runs" / "newer", step=9)
    os.utime(newer / "save-00000009" / "meta.json", (2e9, 2e9))
    monkeypatch.setattr(builtins, "input", scripted(["/quit"]))
    assert main(["chat"]) == 0
    assert "loaded run newer at step 9" in capsys.readouterr().out


class FakeInfer:
    """Streams two pieces, then is interrupted (Ctrl-C during a reply)."""

    def __init__(self) -> None:
        self.calls = 0

    def stream(self, prompt: str):
        self.calls += 1
        yield "one "
        raise KeyboardInterrupt

    def command(self, line: str) -> str:
        raise BabyError("nope")

    def take_notices(self) -> list[str]:
        return ["a notice"]


def test_ctrl_c_during_a_reply_stops_only_that_reply(tmp_path) -> None:
    out = io.StringIO()
    fake = FakeInfer()
    log = ChatLog(tmp_path / "chat.log", lambda m: None)
    assert chat_loop(fake, log, scripted(["hi", "again", EOFError()]), out) == 0  # type: ignore[arg-type]
    assert fake.calls == 2
    text = out.getvalue()
    assert text.count("baby> one  [interrupted]") == 2 and "(a notice)" in text
    assert (tmp_path / "chat.log").read_text().count(" baby: one ") == 2


def test_chat_log_that_cannot_be_written_warns_once(tmp_path) -> None:
    warnings: list[str] = []
    log = ChatLog(tmp_path / "no" / "such" / "dir" / "chat.log", warnings.append)
    log.write("you", "a")
    log.write("baby", "b\nc")
    assert len(warnings) == 1 and "without a log" in warnings[0]


def test_chat_turns_are_separated_by_new_lines(tmp_path) -> None:
    cfg = load_config("tiny")
    tok = train_tokenizer(iter([sentences(100)]), cfg.model.vocab)
    torch.manual_seed(0)
    infer = Infer2(BabyLLM(cfg.model), tok, Settings(max_tokens=3, seed=0))
    seen: list[str] = []
    real = infer.stream
    infer.stream = lambda p: (seen.append(p), real(p))[1]  # type: ignore[method-assign]
    assert chat_loop(infer, None, scripted(["first", "second", "/reset", "third", "/quit"]), io.StringIO()) == 0
    assert seen == ["first", "\nsecond", "third"]  # a forgotten conversation starts afresh


def test_a_reply_cut_at_the_token_limit_is_marked_as_in_the_cockpit() -> None:
    """`babyllm chat` said nothing when a reply stopped at max_tokens; the cockpit marked it. One mark for both
    (infer2.commands.cut_at_limit), only on a reply that was cut."""
    from babyllm.infer2.commands import cut_at_limit

    cfg = load_config("tiny")
    tok = train_tokenizer(iter([sentences(100)]), cfg.model.vocab)
    torch.manual_seed(0)
    infer = Infer2(BabyLLM(cfg.model), tok, Settings(max_tokens=3, seed=0))
    out = io.StringIO()
    assert chat_loop(infer, None, scripted(["hello", "/quit"]), out) == 0
    assert infer.hit_limit and out.getvalue().count(cut_at_limit()) == 1
    assert "/max N" in cut_at_limit()

    class Ended:  # a reply that ended by itself (the end-of-text token)
        hit_limit = False

        def stream(self, prompt: str):
            yield "done."

        def take_notices(self) -> list[str]:
            return []

    out = io.StringIO()
    assert chat_loop(Ended(), None, scripted(["hi", "/quit"]), out) == 0  # type: ignore[arg-type]
    assert "baby> done." in out.getvalue() and "token limit" not in out.getvalue()


def test_chat_with_one_save_folder(run_dir, capsys, monkeypatch) -> None:
    monkeypatch.setattr(builtins, "input", scripted(["hello", "/quit"]))
    (run_dir / "chat.log").unlink(missing_ok=True)
    assert main(["chat", "--run-dir", str(run_dir / "save-00000007")]) == 0
    assert "loaded run tinyrun/save-00000007 at step 7" in capsys.readouterr().out
    assert " you: hello" in (run_dir / "chat.log").read_text(encoding="utf-8")  # the log lives in the run


def test_sample_from_a_run_the_tutor_saved(tmp_path, capsys) -> None:
    tutor_mod = pytest.importorskip("babyllm.school.tutor")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sentences(600, seed=2), encoding="utf-8")
    cfg = load_config("tiny", [f"data.corpus='{corpus}'", f"data.cache_dir='{tmp_path / 'cache'}'",
                               "train.device='cpu'", "train.steps=5"])
    tutor = tutor_mod.Tutor(cfg, tmp_path / "runs" / "real", say=lambda m: None)
    assert tutor.run() == "finished"
    code, out, err = sample(capsys, "--run-dir", str(tmp_path / "runs" / "real"), "--prompt", "The baker",
                            "--max-tokens", "8")
    assert code == 0 and "loaded run real at step 5" in err and out.endswith("\n")
