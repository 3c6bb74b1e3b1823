"""The Librarian: corpus reading and its bad inputs, the tokenizer, the token cache, batches."""

import pytest
import torch

from babyllm.config import load_config
from babyllm.errors import CorpusError
from babyllm.school.librarian import Librarian

from textgen import sentences


def config(tmp_path, corpus, *overrides):
    return load_config("tiny", [f"data.corpus='{corpus}'", f"data.cache_dir='{tmp_path / 'cache'}'", *overrides])


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "texts"
    (root / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text(sentences(150, seed=1))
    (root / "deeper" / "b.md").write_text("# Notes\n\n" + sentences(150, seed=2))
    (root / "ignored.log").write_text("not a corpus suffix, so not read\n")
    return root


def test_reads_folder_recursively_txt_and_md(tmp_path, corpus):
    lib = Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert sorted(f.path.name for f in lib.files) == ["a.txt", "b.md"]
    assert len(lib.train_tokens) > len(lib.val_tokens) > 0


def test_decoding_round_trips_unicode(tmp_path, corpus):
    lib = Librarian(config(tmp_path, corpus), say=lambda m: None)
    text = "Zoë's café — naïve piñata!\n\tTabs,  double  spaces, 日本語, emoji 🐣🚀 and ÆØÅ.\r\n"
    assert lib.decode(lib.encode(text)) == text


def test_tokenizer_and_encoding_are_cached(tmp_path, corpus):
    first = Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert not first.encoded_from_cache
    second = Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert second.encoded_from_cache
    assert second.tokenizer.to_str() == first.tokenizer.to_str()
    assert (second.train_tokens == first.train_tokens).all()
    (corpus / "a.txt").write_text(sentences(150, seed=3))  # new content, new cache entry
    assert not Librarian(config(tmp_path, corpus), say=lambda m: None).encoded_from_cache


def test_empty_and_binary_files_skipped_with_a_warning(tmp_path, corpus):
    (corpus / "empty.txt").write_text("")
    (corpus / "blank.md").write_text("\n\n   \n")
    (corpus / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    said = []
    lib = Librarian(config(tmp_path, corpus), say=said.append)
    assert sorted(f.path.name for f in lib.files) == ["a.txt", "b.md"]
    assert any("empty.txt" in m and "empty" in m for m in said)
    assert any("blank.md" in m for m in said)
    assert any("image.txt" in m and "binary" in m for m in said)


def test_invalid_utf8_is_replaced_and_reported_once_per_file(tmp_path, corpus):
    (corpus / "latin1.txt").write_bytes(("Caf\xe9 cr\xe8me. " * 50 + "\n").encode("latin-1") * 20)
    said = []
    lib = Librarian(config(tmp_path, corpus), say=said.append)
    reports = [m for m in said if "latin1.txt" in m]
    assert len(reports) == 1 and "invalid UTF-8" in reports[0]
    assert "\ufffd" in lib.decode(lib.train_tokens[:].tolist()) or "\ufffd" in lib.decode(lib.val_tokens[:].tolist())


def test_no_usable_text_is_an_error(tmp_path):
    root = tmp_path / "texts"
    root.mkdir()
    (root / "empty.txt").write_text("")
    (root / "data.bin.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(CorpusError, match="no usable text"):
        Librarian(config(tmp_path, root), say=lambda m: None)


def test_missing_corpus_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="corpus not found"):
        Librarian(config(tmp_path, tmp_path / "nowhere"), say=lambda m: None)


def test_corpus_shorter_than_a_context_plus_validation_is_an_error(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("Just a few words here.\n")
    with pytest.raises(CorpusError, match=r"only \d+ tokens; need at least"):
        Librarian(config(tmp_path, f), say=lambda m: None)


def test_batches_are_seeded_windows_of_context_plus_one(tmp_path, corpus):
    cfg = config(tmp_path, corpus)
    a, b = Librarian(cfg, say=lambda m: None), Librarian(cfg, say=lambda m: None)
    x = a.batch(3)
    assert x.shape == (3, cfg.model.context + 1) and x.dtype == torch.int64
    assert torch.equal(x, b.batch(3))
    state = a.sampler_state()
    nxt = a.batch(3)
    a.load_sampler_state(state)
    assert torch.equal(a.batch(3), nxt)
    v1, v2 = a.val_batches(2, 3), a.val_batches(2, 3)
    assert all(torch.equal(p, q) for p, q in zip(v1, v2, strict=True))
    assert int(x.max()) < cfg.model.vocab


def test_shipped_corpus_is_large_enough_and_loads(tmp_path):
    cfg = load_config("cpu", [f"data.cache_dir='{tmp_path}'"])
    lib = Librarian(cfg, say=lambda m: None)
    assert sum(f.size for f in lib.files) >= 100_000
    assert len(lib.train_tokens) > 20 * cfg.model.context


@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 2), (2, 3)])
def test_windows_gathered_from_a_resident_corpus_are_the_host_path_s(tmp_path, corpus, rank, world_size):
    """keep_on (the training split kept on the GPU) draws the same starts from the same generator and gathers the
    same windows, for every rank's slice: a run's batches do not depend on where the corpus lives."""
    host = Librarian(config(tmp_path, corpus), say=lambda m: None, rank=rank, world_size=world_size)
    kept = Librarian(config(tmp_path, corpus), say=lambda m: None, rank=rank, world_size=world_size)
    assert kept.keep_on(torch.device("cpu"), free_bytes=1 << 40)
    for batch in (1, 4, 7):
        a, b = host.train_batch(batch), kept.train_batch(batch)
        assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
    assert torch.equal(host.sampler_state(), kept.sampler_state())


def test_a_corpus_too_big_for_the_device_stays_on_the_host(tmp_path, corpus):
    lib = Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert not lib.keep_on(torch.device("cpu"), free_bytes=len(lib.train_tokens))  # 4 bytes a token: 5% is far less
    assert lib.train_batch(3).shape == (3, lib.context + 1)
