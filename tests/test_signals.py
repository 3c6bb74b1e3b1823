"""Signals while a run starts (issue 25, item 12): SIGINT, SIGTERM or SIGHUP at any moment of start-up ends it
cleanly (exit 128 + N, no traceback, no half-made run directory) or is honoured once training starts; never lost."""

import os
import signal
import subprocess
import sys
import time

import pytest

from babyllm.commands import startup
from babyllm.commands import train as train_cmd
from babyllm.commands.cli import main as cli_main
from babyllm.run.runfiles import list_saves


def start(command, corpus, cache, run):
    return subprocess.Popen([sys.executable, "-c", f"import sys; from {command} import main; sys.exit(main())",
                             "--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={cache}",
                             "--run-dir", str(run)] if command == "tui.cli" else
                            [sys.executable, "-c", "import sys; from babyllm.commands.cli import main; "
                             "sys.exit(main())", "train", "--config", "tiny", "--corpus", str(corpus), "--set",
                             f"data.cache_dir={cache}", "--run-dir", str(run)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ended_cleanly(p, sig, run):
    """How the process ended after `sig`: "start-up ended" or "stopped with a save"; asserts it was clean."""
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"{sig.name} was lost: still running 120 s later\n{err.decode()[-2000:]}")
    err_text = err.decode(errors="replace")
    assert "Traceback" not in err_text, err_text
    if p.returncode == 128 + sig:
        assert not run.exists(), f"start-up ended by {sig.name} left {sorted(os.listdir(run))}"
        return "start-up ended"
    assert p.returncode == 0, (p.returncode, err_text)
    assert list_saves(run) and f"stop requested by {sig.name}" in out.decode(), out.decode()[-2000:]
    return "stopped with a save"


@pytest.mark.parametrize("command", ["babyllm.commands.cli", "tui.cli"])
def test_a_signal_at_any_moment_of_start_up_ends_it_cleanly_or_is_honoured(corpus, cache, tmp_path, command):
    """Real processes, signalled while Python imports torch, while the run is prepared, and once it trains."""
    delays = [0.3, 0.9, 1.8, 4.0] if command == "babyllm.commands.cli" else [0.3, 1.2]
    outcomes = []
    for i, delay in enumerate(delays):
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        run = tmp_path / f"run{i}"
        p = start(command, corpus, cache, run)
        time.sleep(delay)
        p.send_signal(sig)
        outcome = ended_cleanly(p, sig, run)
        if command == "tui.cli" and outcome != "start-up ended":
            assert list_saves(run)  # (the cockpit saves and stops; it names the save on stdout)
        outcomes.append(outcome)
    assert outcomes  # (which outcome a delay gets depends on the machine's speed; each must be clean)


def test_a_signal_while_the_corpus_is_prepared_ends_the_start_up_removing_what_it_made(corpus, cache, tmp_path,
                                                                                       monkeypatch):
    from babyllm.school import handout as handout_mod

    real = handout_mod.Librarian

    def signalled(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # (remembered; the next progress report is where it stops)
        return real(*args, **kwargs)

    monkeypatch.setattr(handout_mod, "Librarian", signalled)
    run = tmp_path / "run"
    code = cli_main(["train", "--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={cache}",
                     "--run-dir", str(run)])
    assert code == 128 + signal.SIGTERM and not run.exists()


def test_a_signal_once_the_run_is_built_is_honoured_at_the_first_step(corpus, cache, tmp_path, monkeypatch, capsys):
    real = train_cmd.make_tutor

    def signalled(*args, **kwargs):
        tutor = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # the corpus is ready, no progress report comes again
        return tutor

    monkeypatch.setattr(train_cmd, "make_tutor", signalled)
    run = tmp_path / "run"
    code = cli_main(["train", "--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={cache}",
                     "--run-dir", str(run)])
    out = capsys.readouterr().out
    assert code == 0 and "stop requested by SIGINT" in out and "stopped at step 0" in out
    assert [s.step for s in list_saves(run)] == [0]


def test_a_signal_is_never_lost_to_code_that_catches_everything():
    """Python's own KeyboardInterrupt is raised wherever the main thread is; a library's `except BaseException`
    (or a finalizer) swallows it and the run trained on. The guard only remembers; check() acts on it."""
    code = ("import os, signal, sys\n"
            "from babyllm.commands.startup import StartupGuard, exit_code\n"
            "guard = StartupGuard().install()\n"
            "try:\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        sum(range(100000))\n"
            "    except BaseException:\n"
            "        print('swallowed')\n"
            "    guard.check()\n"
            "    print('lost')\n"
            "except KeyboardInterrupt as e:\n"
            "    sys.exit(exit_code(e))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and "lost" not in r.stdout and "swallowed" not in r.stdout, r


def test_a_second_signal_while_starting_exits_at_once():
    code = ("import os, signal, time\n"
            "from babyllm.commands.startup import StartupGuard\n"
            "StartupGuard().install()\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(30)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 143 and "second signal: exiting now" in r.stderr


def test_the_guard_is_gone_once_main_returns():
    before = {s: signal.getsignal(s) for s in startup.STOP_SIGNALS}
    assert cli_main(["runs", "--root", "/nonexistent-runs-root"]) in (0, 2)
    assert {s: signal.getsignal(s) for s in startup.STOP_SIGNALS} == before
