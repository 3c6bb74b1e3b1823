"""Shell completion, generated from the parsers: the script runs in a real bash and completes subcommands,
options, config names, --set keys, choices and run names, for babyllm and babyllm-tui."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from babyllm.commands.cli import main as cli_main

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["completion", "bash"]) == 0
    path = tmp_path_factory.mktemp("completion") / "babyllm.bash"
    path.write_text(out.getvalue())
    return str(path)


def complete(script: str, cwd, *words: str) -> list[str]:
    """What bash offers for the last of `words` (the command line typed so far, the last word unfinished)."""
    line = " ".join(f"'{w}'" for w in words)
    func = "_babyllm_tui" if words[0] == "babyllm-tui" else "_babyllm"
    code = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; {func}; "
            "printf '%s\\n' \"${COMPREPLY[@]}\"")
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_subcommands_options_and_values_complete(script, tmp_path):
    assert complete(script, tmp_path, "babyllm", "ex") == ["export"]
    assert set(complete(script, tmp_path, "babyllm", "")) >= {"train", "chat", "export", "plot", "completion",
                                                              "--version"}
    assert complete(script, tmp_path, "babyllm", "train", "--con") == ["--config"]
    assert complete(script, tmp_path, "babyllm", "train", "--config", "") == ["cpu", "default", "tiny"]
    assert complete(script, tmp_path, "babyllm", "train", "--set", "log.tr") == ["log.trackio="]
    assert complete(script, tmp_path, "babyllm", "plot", "--x", "") == ["step", "tokens"]
    assert complete(script, tmp_path, "babyllm", "ctl", "x", "pa") == ["pause"]
    assert complete(script, tmp_path, "babyllm-tui", "--wa") == ["--watch"]
    assert complete(script, tmp_path, "babyllm", "train", "--steps", "") == []  # a number: nothing to offer


def test_paths_and_run_names_complete(script, tmp_path):
    (tmp_path / "runs" / "lr2").mkdir(parents=True)
    (tmp_path / "runs" / "lr5").mkdir()
    (tmp_path / "my.toml").write_text("")
    assert sorted(complete(script, tmp_path, "babyllm", "chat", "--run", "lr")) == ["lr2", "lr5"]
    assert complete(script, tmp_path, "babyllm-tui", "--watch", "run") == ["runs"]
    assert "my.toml" in complete(script, tmp_path, "babyllm", "train", "--config", "")
