"""The corpus handed out across ranks: rank 0 prepares the tokenizer and corpus and sends the tokenizer on."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from babyllm.config import Config
from babyllm.school import distributed, soul
from babyllm.school.librarian import Librarian, ProgressFn
from babyllm.snapshot import Say


def hand_out(cfg: Config, run_dir: Path, resume: bool, *, rank: int, world_size: int, say: Say,
             progress: ProgressFn | None = None) -> Librarian:
    """This rank's Librarian. Rank 0 alone prepares the tokenizer (a resumed run's own, else a new one it
    saves in the run) and the corpus, so a shared cache is written once; the other ranks build theirs on
    rank 0's tokenizer. If any rank fails, every rank raises. `say` hears corpus warnings, `progress` how
    preparing an uncached corpus goes (rank 0)."""
    made: dict[str, Librarian] = {}

    def prepare_corpus() -> str | None:  # rank 0
        tokenizer = soul.load_tokenizer(run_dir) if resume else None
        made["lib"] = Librarian(cfg, tokenizer=tokenizer, say=say, rank=rank, world_size=world_size,
                                progress=progress)
        if not resume:
            soul.write_tokenizer(run_dir, made["lib"].tokenizer)
        return made["lib"].tokenizer.to_str() if world_size > 1 else None

    tok_json = distributed.share(prepare_corpus)

    def librarian() -> Librarian:  # rank 0 made it; the other ranks build theirs on rank 0's tokenizer
        if "lib" in made:
            return made["lib"]
        assert tok_json is not None  # shared whenever world_size > 1
        return Librarian(cfg, tokenizer=Tokenizer.from_str(tok_json), say=say, rank=rank, world_size=world_size)

    return distributed.agree_setup(librarian)
