"""Shared test set-up."""

import os

import pytest
import torch

from babyllm import load_config
from babyllm.socket.endpoint import Endpoint
from tui.fake import FakeTutor

from textgen import sentences

# Tests use tiny shapes, and several tests run a training thread beside a chat or UI thread: with the
# default intra-op pool, OpenMP threads spin against each other on a 2-core machine and tiny steps
# slow down 100x. One thread keeps the suite fast and deterministic.
torch.set_num_threads(1)

# The cockpit picks its colours for the terminal it runs in (babyllm.calligraphist.colour_depth): the tests'
# cockpits (the snapshots' too) draw in truecolour whatever terminal, or none, runs the tests; a test of
# another depth passes its own.
for _name in ("NO_COLOR", "TEXTUAL_COLOR_SYSTEM"):
    os.environ.pop(_name, None)
os.environ["COLORTERM"] = "truecolor"
if os.environ.get("TERM", "") in ("", "dumb", "unknown"):
    os.environ["TERM"] = "xterm-256color"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder with a few KB of made-up text; module-wide, so each test module tokenizes it once."""
    d = tmp_path_factory.mktemp("corpus")
    (d / "text.txt").write_text(sentences(600, seed=11), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A tokenizer/token cache folder for that corpus, kept out of the user's ~/.cache."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(corpus, cache):
    """tiny.toml on the test corpus and cache, with overrides (and another corpus if given)."""
    def make(*overrides, corpus_path=None):
        cfg = load_config("tiny", list(overrides))
        cfg.data.corpus = str(corpus_path or corpus)
        cfg.data.cache_dir = str(cache)
        return cfg
    return make


@pytest.fixture
def train_args(corpus, cache):
    """`babyllm train`'s arguments on tiny.toml, the test corpus and cache (headless lines every 0.05 s), plus
    `extra`."""
    def make(*extra):
        return ["train", "--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={cache}",
                "--set", "stats.print_every=0.05", *extra]
    return make


@pytest.fixture
def served(tmp_path):
    """A FakeTutor served on tmp_path/run (no model: the protocol alone): (run_dir, fake, endpoint)."""
    run = tmp_path / "run"
    run.mkdir()
    fake = FakeTutor()
    ep = Endpoint(run, fake, log=lambda m: None)
    ep.start()
    yield run, fake, ep
    ep.close()
