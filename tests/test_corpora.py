"""Corpora people have: .jsonl/.csv/.parquet records, bad rows, large corpora streamed, the cache's faults."""

import csv
import errno
import json
import os
import random
import tracemalloc

import numpy as np
import pytest

from babyllm.config import load_config
from babyllm.errors import ConfigError, CorpusError
from babyllm.school import corpus as C
from babyllm.school import librarian as L
from babyllm.school.librarian import END_OF_TEXT, Librarian, Progress, sample_text, token_dtype, train_tokenizer

from textgen import sentences


def config(tmp_path, corpus, *overrides):
    return load_config("tiny", [f"data.corpus={json.dumps(str(corpus))}",
                                f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}", *overrides])


def documents(lib: Librarian) -> list[str]:
    """The corpus back as text, split at END_OF_TEXT."""
    ids = np.concatenate([lib.train_tokens, lib.val_tokens]).tolist()
    return lib.decode(ids).split(END_OF_TEXT)[:-1]


def stories(n: int) -> list[str]:
    return [sentences(12, seed=100 + i) for i in range(n)]


# --- formats -------------------------------------------------------------------------------------


def test_jsonl_rows_are_documents_and_bad_rows_are_named(tmp_path):
    texts = stories(40)
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)]
    lines[3:3] = ['{"text": "unclosed', json.dumps({"story": "no text field"}), json.dumps({"text": 7}),
                  json.dumps(["a", "list"]), "", json.dumps({"text": ""})]
    f = tmp_path / "stories.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    said = []
    lib = Librarian(config(tmp_path, f), say=said.append)
    assert documents(lib) == texts
    assert any("stories.jsonl: line 4: not valid JSON" in m for m in said)
    assert any("line 5: no 'text' value" in m for m in said)
    assert any("line 6: 'text' is int, not text" in m for m in said)
    assert any("stories.jsonl: 4 bad rows in all" in m for m in said)  # the 4th is counted, not named


def test_jsonl_text_field_is_configurable(tmp_path):
    texts = stories(30)
    f = tmp_path / "tiny.jsonl"
    f.write_text("".join(json.dumps({"story": t}) + "\n" for t in texts), encoding="utf-8")
    lib = Librarian(config(tmp_path, f, "data.text_field=story"), say=lambda m: None)
    assert documents(lib) == texts
    with pytest.raises(CorpusError,
                       match=r"tiny.jsonl: no usable text \(rows need a text 'text' field: data.text_field\)"):
        Librarian(config(tmp_path, f), say=lambda m: None)


def test_csv_column_with_quoted_newlines_commas_and_bad_rows(tmp_path):
    texts = [t.replace(". ", ",\n", 1) + ' "quoted"' for t in stories(40)]
    f = tmp_path / "data.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i, t in enumerate(texts):
            w.writerow([i, t])
            if i == 5:
                w.writerow([99])  # a short row: no text column
    said = []
    lib = Librarian(config(tmp_path, f), say=said.append)
    assert documents(lib) == texts
    assert any("data.csv: row 7 (line" in m and "no 'text' value" in m for m in said)


def test_csv_without_the_column_is_one_line_naming_file_key_and_columns(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("id,body\n1,hello there\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"data.csv: no column 'text' for data.text_field; its columns: id, body"):
        Librarian(config(tmp_path, f), say=lambda m: None)


def test_parquet_column_and_null_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = stories(40)
    column = texts[:10] + [None] + texts[10:]
    f = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": column, "n": list(range(41))}), f, row_group_size=7)
    said = []
    lib = Librarian(config(tmp_path, f), say=said.append)
    assert documents(lib) == texts
    assert any("data.parquet: row 11: no 'text' value" in m for m in said)
    with pytest.raises(CorpusError, match="no column 'body' for data.text_field; its columns: text, n"):
        Librarian(config(tmp_path, f, "data.text_field=body"), say=lambda m: None)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    f = tmp_path / "data.parquet"
    f.write_bytes(b"PAR1" + b"\x01" * 64 + b"PAR1")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)  # import fails as if not installed
    with pytest.raises(CorpusError,
                       match=r'data.parquet: reading .parquet needs pyarrow: pip install -e ".\[parquet\]"'):
        Librarian(config(tmp_path, f), say=lambda m: None)


def test_a_folder_mixes_formats_and_skips_a_fake_parquet(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "a.txt").write_text(sentences(100, seed=1), encoding="utf-8")
    (root / "b.jsonl").write_text(json.dumps({"text": sentences(50, seed=2)}) + "\n", encoding="utf-8")
    (root / "c.parquet").write_text("this is not parquet", encoding="utf-8")
    said = []
    lib = Librarian(config(tmp_path, root), say=said.append)
    assert [f.path.name for f in lib.files] == ["a.txt", "b.jsonl"]
    assert len(documents(lib)) == 2
    assert any("c.parquet: skipped, not a Parquet file" in m for m in said)


def test_text_field_must_name_something(tmp_path):
    with pytest.raises(ConfigError, match=r"data.text_field = '  ': name the field"):
        load_config("tiny", ["data.text_field='  '"])


def test_rows_without_any_text_are_one_error_not_an_empty_cache(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text('{"text": ""}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="no usable text"):
        Librarian(config(tmp_path, f), say=lambda m: None)


# --- large corpora: bounded sample, streamed encoding --------------------------------------------


def test_tokenizer_sample_is_bounded_and_spread_over_the_corpus():
    pieces = [f"piece {i:05d} " + "x" * 90 for i in range(10_000)]  # 1 MB of 100-character pieces
    total = sum(len(p) for p in pieces)
    stream, pos = [], 0
    for p in pieces:
        pos += len(p)
        stream += [(p, pos), (END_OF_TEXT, pos)]
    kept = list(sample_text(stream, total, limit=50_000))
    assert 45_000 <= sum(len(p) for p in kept) <= 50_000
    numbers = [int(p.split()[1]) for p in kept]
    assert min(numbers) < 100 and max(numbers) > 9_900  # from the start to the end
    assert all(0 < b - a < 40 for a, b in zip(numbers, numbers[1:], strict=False))  # evenly: about every 20th
    assert list(sample_text(stream, total, limit=2 * total)) == pieces  # a small corpus is used whole


def test_the_librarian_trains_its_tokenizer_on_the_bounded_sample(tmp_path, monkeypatch):
    f = tmp_path / "big.txt"
    f.write_text(sentences(8000, seed=4), encoding="utf-8")
    seen = []
    real = L.train_tokenizer
    monkeypatch.setattr(L, "SAMPLE_CHARS", 60_000)
    monkeypatch.setattr(C, "CHUNK", 4096)
    monkeypatch.setattr(L, "train_tokenizer", lambda texts, vocab: real(iter(seen.extend(texts) or seen), vocab))
    Librarian(config(tmp_path, f), say=lambda m: None)
    assert 50_000 <= sum(len(p) for p in seen) <= 60_000 < f.stat().st_size


TRICKY = ["  indented line\n    more indented\n", "def f():\n    return 1\n\n    # note\n",
          "tabs\tand\t\ttabs\n\n\n  gap above\n",
          "windows\r\nline ends\r\n", "non-ASCII: Zoë, café, 日本語, 🐣\n", "trailing spaces   \n   \nx",
          "punctuation!!! ... ?? -- 'quoted' \"double\" (paren)\n", "numbers 1234567 12 3.14\n"]


def tricky_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(TRICKY) if rng.random() < 0.5 else sentences(3, seed=rng.randrange(999))
                   for _ in range(n))


def test_streamed_encoding_equals_encoding_each_document_whole(tmp_path, monkeypatch):
    rng = random.Random(5)
    root = tmp_path / "docs"
    root.mkdir()
    docs = [tricky_text(rng, 60) for _ in range(4)]
    for i, d in enumerate(docs):
        (root / f"{i}.txt").write_bytes(d.encode())
    (root / "rows.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:2]), encoding="utf-8")
    monkeypatch.setattr(C, "CHUNK", 97)  # tiny reads and batches: many cuts, many batches
    monkeypatch.setattr(L, "ENCODE_BATCH", 300)
    lib = Librarian(config(tmp_path, root, "model.vocab=1024"), say=lambda m: None)
    assert any("Ċ" in t and "Ġ" in t for t in lib.tokenizer.get_vocab())  # merges across a line break exist
    reference = []  # the slow, obvious way: each document encoded whole, END_OF_TEXT after it
    for d in docs + docs[:2]:
        reference += lib.tokenizer.encode(d).ids + [lib.eot]
    streamed = np.concatenate([lib.train_tokens, lib.val_tokens]).tolist()
    assert streamed == reference


def test_every_safe_cut_keeps_the_ids():
    tok = train_tokenizer(iter([sentences(400, seed=1), *TRICKY * 50]), 1000)
    rng = random.Random(2)
    alphabet = ["a", "b", "é", "1", ".", "!", " ", " ", "\n", "\t", "\r", "  ", "日", "'s"]
    cuts = 0
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(2, 30)))
        cut = C._safe_cut(text)
        if cut:
            cuts += 1
            assert tok.encode(text[:cut]).ids + tok.encode(text[cut:]).ids == tok.encode(text).ids, repr(text)
    assert cuts > 100


def prepare_traced(tmp_path, name: str, megabytes: float) -> tuple[Librarian, int, int, list[Progress]]:
    """A generated corpus of about that size, prepared under tracemalloc: (librarian, size, peak bytes, progress)."""
    rng = random.Random(7)
    f = tmp_path / name
    with f.open("w", encoding="utf-8") as fh:
        for _ in range(round(megabytes * 9)):
            fh.write(sentences(2500, seed=rng.randrange(10_000)))  # ~110 KB each
    seen: list[Progress] = []
    tracemalloc.start()
    try:
        lib = Librarian(config(tmp_path, f), say=lambda m: None, progress=seen.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lib, f.stat().st_size, peak, seen


def test_a_multi_megabyte_corpus_streams_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "SAMPLE_CHARS", 200_000)  # memory follows these, not the corpus's size
    monkeypatch.setattr(L, "ENCODE_BATCH", 256 << 10)
    monkeypatch.setattr(C, "CHUNK", 64 << 10)
    _, small_size, small_peak, _ = prepare_traced(tmp_path, "small.txt", 1)
    lib, size, peak, seen = prepare_traced(tmp_path, "big.txt", 6)
    assert size > 5 * small_size and size > 5_000_000
    assert peak < 1.3 * small_peak + 200_000, f"Python memory grew with the corpus: {small_peak:,} -> {peak:,} bytes"
    assert peak < size / 2
    assert len(lib.train_tokens) + len(lib.val_tokens) > size / 6
    stages = [p.stage for p in seen]
    assert {"checking", "sampling", "training tokenizer", "encoding"} <= set(stages)
    assert seen[-1] == Progress("encoding", size, size) and "100%" in seen[-1].line()


def test_a_cached_corpus_only_reports_checking(tmp_path, corpus):
    Librarian(config(tmp_path, corpus), say=lambda m: None)
    seen: list[Progress] = []
    Librarian(config(tmp_path, corpus), say=lambda m: None, progress=seen.append)
    assert {p.stage for p in seen} == {"checking"}


def test_token_cache_element_fits_the_vocabulary():
    assert token_dtype(4200) is np.uint16 and token_dtype(65_536) is np.uint16
    assert token_dtype(65_537) is np.uint32


# --- the cache can fail ------------------------------------------------------------------------------


def test_cache_dir_that_is_a_file_is_one_line_naming_it(tmp_path, corpus):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with pytest.raises(CorpusError, match=rf"{blocker}: cannot write the corpus cache .*data.cache_dir"):
        Librarian(config(tmp_path, corpus), say=lambda m: None)


@pytest.mark.parametrize("fault", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_unwritable_cache_leaves_nothing_behind(tmp_path, corpus, monkeypatch, fault):
    def refuse(src, dst):
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr(L.os, "replace", refuse)
    with pytest.raises(CorpusError, match=rf"cache: cannot write the corpus cache \({os.strerror(fault)}\)"):
        Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_read_only_cache_that_holds_the_corpus_still_works(tmp_path, corpus, monkeypatch):
    first = Librarian(config(tmp_path, corpus), say=lambda m: None)

    def refuse(path, write):
        raise AssertionError(f"wrote {path}")

    monkeypatch.setattr(L, "atomic_write_bytes", refuse)
    again = Librarian(config(tmp_path, corpus), say=lambda m: None)
    assert (again.train_tokens == first.train_tokens).all()


def test_the_command_prints_one_line_for_an_unwritable_cache(tmp_path, corpus, capsys):
    from babyllm.commands.cli import main

    (tmp_path / "cache").write_text("in the way")
    code = main(["train", "--config", "tiny", "--corpus", str(corpus), "--run-dir", str(tmp_path / "run"),
                 "--steps", "1", "--set", f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: ") and "cannot write the corpus cache" in err[-1]
    assert not (tmp_path / "run").exists()


def test_the_tutor_passes_corpus_progress_on(tmp_path, corpus):
    from babyllm.school.tutor import Tutor

    seen: list[Progress] = []
    tutor = Tutor(config(tmp_path, corpus, "train.device='cpu'"), tmp_path / "run", say=lambda m: None,
                  progress=seen.append)
    tutor.close()
    assert {"checking", "sampling", "encoding"} <= {p.stage for p in seen}


class FakeStream(list):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.append(text)

    def flush(self) -> None:
        pass


def test_headless_progress_redraws_one_terminal_line():
    from babyllm.commands.train import ProgressLine

    out = FakeStream(tty=True)
    line = ProgressLine(out, every=5.0)
    line(Progress("sampling", 10, 100))
    line(Progress("training tokenizer", 0, 0))
    line.finish()  # a warning comes: the line is ended first
    line(Progress("encoding", 100, 100))
    line.finish()
    text = "".join(out)
    assert text.count("\n") == 2 and text.startswith("\rpreparing corpus: sampling")
    assert "training tokenizer…" in text and text.endswith("(100 B of 100 B)\x1b[K\n")


def test_headless_progress_in_a_log_prints_a_line_every_few_seconds():
    from babyllm.commands.train import ProgressLine

    now = [0.0]
    quick, slow = FakeStream(tty=False), FakeStream(tty=False)
    for stream in (quick, slow):
        line = ProgressLine(stream, every=5.0, clock=lambda: now[0])
        for t in range(0, 13 if stream is slow else 3):
            now[0] = t if stream is quick else float(t)
            line(Progress("encoding", t, 12))
        line(Progress("encoding", 12, 12))
        now[0] = 0.0
    assert quick == []  # a quick preparation says nothing in a log
    assert [x.split(" ", 3)[2] for x in slow] == ["encoding"] * 3
    assert slow[1].startswith("preparing corpus: encoding") and slow[-1].endswith("100% (12 B of 12 B)\n")


async def test_the_cockpit_shows_corpus_progress_while_starting():
    import threading
    import time

    from tui.app import CockpitApp
    from tui.fake import FakeTutor
    from tui.widgets.status import StatusBar

    gate = threading.Event()
    holder: dict = {}

    def factory(publish, say):
        holder["app"].show_progress(Progress("encoding", 300_000_000, 1_200_000_000).line(width=10))
        gate.wait(5)
        return FakeTutor(publish=publish)

    app = holder["app"] = CockpitApp(factory, handle_signals=False)
    async with app.run_test(size=(80, 24)) as pilot:
        deadline = time.monotonic() + 5
        while "encoding" not in str(app.query_one(StatusBar).render()) and time.monotonic() < deadline:
            await pilot.pause(0.02)
        status = str(app.query_one(StatusBar).render())
        assert "STARTING" in status and "preparing corpus: encoding" in status and "25%" in status
        gate.set()
        await pilot.press("q", "y")
    assert app.join_tutor(timeout=2)


def test_unwritable_default_cache_names_it_too(tmp_path, corpus, monkeypatch):
    blocker = tmp_path / "home-cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("BABYLLM_CACHE", str(blocker / "babyllm"))
    cfg = load_config("tiny", [f"data.corpus={json.dumps(str(corpus))}"])
    with pytest.raises(CorpusError, match=rf"{blocker / 'babyllm'}: cannot write the corpus cache .*BABYLLM_CACHE"):
        Librarian(cfg, say=lambda m: None)


def test_a_document_with_no_safe_cut_for_a_long_way_still_streams(tmp_path, monkeypatch):
    f = tmp_path / "one-line.txt"
    f.write_text(("word," * 3000 + " ") * 20 + "\n", encoding="utf-8")  # a safe cut every 15 KB only
    monkeypatch.setattr(C, "CHUNK", 1000)
    lib = Librarian(config(tmp_path, f), say=lambda m: None)
    encoded = lib.tokenizer.encode(f.read_text()).ids + [lib.eot]
    assert np.concatenate([lib.train_tokens, lib.val_tokens]).tolist() == encoded


def test_a_byte_order_mark_is_not_text_in_any_format(tmp_path):
    texts = stories(30)
    root = tmp_path / "excel"
    root.mkdir()
    with (root / "a.csv").open("w", newline="", encoding="utf-8-sig") as fh:  # as Excel saves "CSV UTF-8"
        csv.writer(fh).writerows([["text"], *([t] for t in texts)])
    (root / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8-sig")
    (root / "c.txt").write_text(texts[0], encoding="utf-8-sig")
    said = []
    lib = Librarian(config(tmp_path, root), say=said.append)
    assert documents(lib) == texts + texts + texts[:1] and said == []


def test_a_damaged_parquet_is_skipped_with_a_warning(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = tmp_path / "p"
    root.mkdir()
    pq.write_table(pa.table({"text": stories(30)}), root / "good.parquet")
    (root / "bad.parquet").write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    said = []
    lib = Librarian(config(tmp_path, root), say=said.append)
    assert [f.path.name for f in lib.files] == ["good.parquet"]
    assert any("bad.parquet: skipped, cannot read as Parquet" in m for m in said)


def test_training_on_a_jsonl_corpus_warns_of_its_bad_rows(tmp_path, capsys):
    from babyllm.commands.cli import main

    f = tmp_path / "stories.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in stories(40)) + "{oops\n", encoding="utf-8")
    code = main(["train", "--config", "tiny", "--corpus", str(f), "--run-dir", str(tmp_path / "run"), "--steps", "2",
                 "--set", f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}", "--set", "train.device='cpu'"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert f"warning: {f}: line 41: not valid JSON" in err


# --- bad text and text of any length (issue 25, item 10) ---------------------------------------------


def test_a_lone_surrogate_in_a_row_is_replaced_naming_file_and_line_and_training_goes_on(tmp_path):
    texts = stories(20)
    lines = [json.dumps({"text": t}) for t in texts]
    lines[2] = '{"text": "half an emoji \\ud83d here, and a whole one \\ud83d\\udc23"}'
    lines[5] = '{"text": "\\udfff at the start"}'
    f = tmp_path / "rows.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    said = []
    lib = Librarian(config(tmp_path, f), say=said.append)
    assert any("rows.jsonl: line 3: lone UTF-16 surrogates in the text; replaced with U+FFFD" in m for m in said)
    assert any("rows.jsonl: line 6:" in m for m in said)
    docs = documents(lib)
    assert "half an emoji \ufffd here, and a whole one 🐣" in docs and "\ufffd at the start" in docs


def test_surrogates_are_mended_in_every_record_format(tmp_path):
    """The mending is the rows' one text gate (corpus._row_text), whatever format the row came from."""
    said = []
    bad = C._BadRows(tmp_path / "x.parquet", said.append)
    assert C._row_text("a\ud800b", "text", bad, "row 7") == "a\ufffdb"
    assert said == [f"{tmp_path / 'x.parquet'}: row 7: lone UTF-16 surrogates in the text; replaced with U+FFFD"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_longer_than_a_record_may_be_is_skipped_unread_naming_it(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(C, "MAX_RECORD", 50_000)
    monkeypatch.setattr(C, "CHUNK", 4096)
    texts = stories(30)
    f = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({"text": t}) for t in texts]
        lines.insert(4, json.dumps({"text": "w " * 200_000}))  # 400 KB: one line
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        with f.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text"])
            w.writerows([[t] for t in texts[:4]] + [["w " * 200_000]] + [[t] for t in texts[4:]])
    where = "line {}".format(next(n for n, line in enumerate(f.read_text().split("\n"), 1) if len(line) > 50_000))
    said = []
    lib = Librarian(config(tmp_path, f), say=said.append)
    assert any(f"{f.name}: {where}: longer than 50,000 bytes; skipped" in m for m in said), said
    docs = documents(lib)
    assert texts[0] in docs and texts[-1] in docs and not any("w w w" in d for d in docs)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_text_without_a_space_for_megabytes_is_cut_into_bounded_pieces_and_words(tmp_path, monkeypatch, suffix):
    """Encoding a piece takes ~200 bytes a character and the tokenizer's trainer time by its words' length:
    neither ever sees more than MAX_CARRY characters, or a word longer than MAX_WORD (the issue's case: 50 MB)."""
    monkeypatch.setattr(C, "MAX_CARRY", 20_000)
    monkeypatch.setattr(C, "CHUNK", 4096)
    rng = random.Random(3)
    blob = "".join(rng.choice("abcdefghij") for _ in range(300_000))  # 300 KB of letters, not one space
    f = tmp_path / f"blob{suffix}"
    if suffix == ".txt":
        f.write_text(sentences(200, seed=1) + blob, encoding="utf-8")
    elif suffix == ".jsonl":
        f.write_text(json.dumps({"text": sentences(200, seed=1)}) + "\n" + json.dumps({"text": blob}) + "\n")
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"text": [sentences(200, seed=1), blob]}), f)
    pieces = [p for p, _ in C.read_corpus(C.list_corpus(f, lambda m: None), "text", lambda m: None)]
    assert max(len(p) for p in pieces) <= 20_000 and "".join(pieces).count(blob[:1000]) == 1
    trained = []
    real = L.train_tokenizer
    monkeypatch.setattr(L, "train_tokenizer", lambda texts, vocab: real(iter(trained.extend(texts) or trained), vocab))
    lib = Librarian(config(tmp_path, f), say=lambda m: None)
    assert max(len(w) for t in trained for w in t.split()) <= C.MAX_WORD
    assert "".join(documents(lib)).count(blob[:5000]) == 1  # the text itself is all there, encoded


def test_words_for_the_tokenizer_are_bounded_in_length_and_in_total():
    words = list(C.bounded_words(["ab " + "x" * 600 + " cd", "é" * 300, "!" * 257 + " " * 300]))
    assert [len(w) for w in words] == [3, 256, 256, 88, 3, 256, 44, 256, 1, 256, 44]
    assert "".join(words) == "ab " + "x" * 600 + " cd" + "é" * 300 + "!" * 257 + " " * 300  # cut, not lost
    assert sum(map(len, C.bounded_words(["y" * 10_000], budget=1000))) == 1000  # long runs: a budget in all
    cjk = "日本語の文章です。" * 40  # (no spaces, but sentence marks: its words are short and kept whole)
    assert list(C.bounded_words([cjk])) == [cjk]


def test_the_tokenizer_sample_shrinks_to_what_the_machine_can_hold(monkeypatch):
    monkeypatch.setattr(L, "host_available", lambda: (4 << 30, "MemAvailable"))
    assert L.sample_limit() == (4 << 30) // (2 * L.TRAINER_BYTES_PER_CHAR) < L.SAMPLE_CHARS
    monkeypatch.setattr(L, "host_available", lambda: (1 << 40, "MemAvailable"))
    assert L.sample_limit() == L.SAMPLE_CHARS
