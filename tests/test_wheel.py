"""Installed as a tool: a wheel built from this checkout (setuptools only, no torch), unpacked as pip installs it
and run from another folder finds the shipped configs and corpus inside the package, makes a new run under the
current folder and its token cache where BABYLLM_CACHE says; the wheel carries LICENSE and the metadata.
(.ci/run also installs the wheel with pip into a fresh venv and runs the commands it puts on PATH.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from babyllm import __version__
from babyllm.paths import CORPORA

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of this checkout (so the build's own folders stay out of it), built offline."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                             "__pycache__", "runs", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (tmp / "dist").glob("babyllm_tui-*.whl")
    return built


def test_the_wheel_holds_configs_corpus_license_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.rsplit("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta, entry = z.read(f"{info}/METADATA").decode(), z.read(f"{info}/entry_points.txt").decode()
    assert {f"babyllm/configs/{c}.toml" for c in ("cpu", "default", "tiny")} <= names
    shipped = sorted(p.name for p in CORPORA.glob("*.md"))
    assert shipped and sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("babyllm/corpora/")) == shipped
    assert f"{info}/licenses/LICENSE" in names and "tui/cockpit.tcss" in names
    assert f"Version: {__version__}" in meta and "License-Expression: MIT" in meta
    assert "Classifier: Programming Language :: Python :: 3.11" in meta
    assert {"Provides-Extra: wandb", "Provides-Extra: trackio", "Provides-Extra: gpu"} <= set(meta.splitlines())
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "tomli" in r or "ruff" in r or "mypy" in r]  # (linters: a dependency group)
    assert "babyllm = babyllm.commands.cli:main" in entry and "babyllm-tui = tui.cli:main" in entry


def test_an_installed_wheel_trains_on_the_shipped_corpus_from_another_folder(wheel, tmp_path):
    site, elsewhere, cache = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "cache"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what pip puts in site-packages
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "BABYLLM_CACHE": str(cache)}
    code = ("import sys, babyllm; print(babyllm.__file__, flush=True); "
            "from babyllm.commands.cli import main; sys.exit(main(sys.argv[1:]))")

    def babyllm(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = babyllm("info", "--config", "cpu")
    assert out.startswith(str(site / "babyllm" / "__init__.py"))  # the wheel's, not this checkout's
    assert "config cpu: vocab 1,024, embed 256, neurons 1,024" in out
    out = babyllm("train", "--config", "tiny", "--steps", "3", "--run", "wheel")
    assert f"corpus {site / 'babyllm' / 'corpora'} (" in out and "finished at step 3" in out
    assert (elsewhere / "runs" / "wheel" / "save-00000003").is_dir()  # a new run under the current folder
    assert any(cache.iterdir())  # the token cache where BABYLLM_CACHE (else ~/.cache/babyllm) says
