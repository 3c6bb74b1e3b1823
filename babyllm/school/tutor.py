"""TUTOR: the training loop; runs in its own thread, steered through TutorControl.

`Tutor.run()` trains until stopped, `train.steps` is reached, or an alarm. Other threads steer it only
through the TutorControl methods (pause, resume, request_save, request_checkpoint, rollback, stop):
each queues a request and returns at once; the loop acts on requests between steps. set_setting
changes a setting mid-run (babyllm.live.LIVE_KEYS; checked at once, applied between steps); the save's
meta keeps the effective config and the changes, so a resume goes on with them. The Tutor never
waits on a reader and never calls UI code: it publishes immutable Snapshots (at most every
`publish_every` seconds, and at once on a state change or event) and appends every step's stats to the
bounded `history`. Only rank 0 writes files (header.json, metrics.jsonl, events.jsonl, debug.log, saves;
see babyllm.run.runfiles). The control queue is babyllm.control, the snapshot board babyllm.board.
Rank 0 judges the alerts (babyllm.school.alerts, the [alerts] config) after each step and validation, and a
watchdog thread raises a stall from outside a stuck step; events, state changes and publishing take a
lock because of it.

Several ranks (torchrun; see babyllm.school.distributed, which must be initialised first): the model trains
through DistributedDataParallel (self.model stays the eager module sharing its parameters); each rank
trains on its slice of one global batch of train.batch x world_size windows; rank 0 prepares the
tokenizer and picks the save to resume from and sends both to the others. One small all-reduce per
step sums loss, accuracy, grad norm and the ranks' stop/pause requests, so every rank logs the global
batch's loss, takes the same NaN-guard decision and stops or pauses at the same step. Validation and
samples run on rank 0 only, with the eager model (no collectives). A failed collective (a lost rank)
ends the run with state "error" and a one-line message naming the last save.

Stats (every step, one host sync for the per-step scalars): step, tokens, loss, loss_100, loss_1000,
val_loss (latest), perplexity (exp of val_loss, or of loss before the first validation), accuracy
(argmax token accuracy of the batch), lr (the rate this step used), grad_norm (before clipping),
tokens_per_s, step_ms, the model's readings (window_weight_k, window_size_k, mem1_*/mem2_*, mem2_mix),
entropy (mean entropy of the predicted distributions), act_mean, act_std, act_inactive (fraction of
neuron activations <= 0, i.e. GELU inputs at or below zero), norm_<part> (L2 norm of each part's
weights), and the Counsellor's t_data, t_forward, t_backward, t_optimizer, t_stats (EMA ms). Readings,
entropy, activation stats and weight norms are computed every SLOW_STATS_EVERY steps and carried forward.
"""

from __future__ import annotations

import copy
import math
import random
import shutil
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_

from babyllm import live
from babyllm.board import Board
from babyllm.config import Config, validate
from babyllm.control import AGREED, DEFAULT_BY, PAUSABLE, WAITING, Change, Controls, Request, Requests, Votes, refusal
from babyllm.errors import BabyError, CheckpointError, ConfigError
from babyllm.events import EventKind
from babyllm.infer2 import Infer2, Settings
from babyllm.model import bpb, gemm
from babyllm.model.network import BabyLLM, next_token_loss
from babyllm.model.runtime import autocast, pick_device, resolve_dtype
from babyllm.run import runfiles, tboard
from babyllm.run.runlock import RunLock
from babyllm.school import distributed, soul
from babyllm.school.alerts import Alert, Alerts, run_command
from babyllm.school.counsellor import Counsellor, cuda_sync
from babyllm.school.librarian import Librarian, ProgressFn
from babyllm.snapshot import Corpus, Event, History, Sample, Snapshot, State
from babyllm.socket.endpoint import Endpoint
from babyllm.stats import GATE_BINS, NORM, PARTS, REGISTRY
from babyllm.system import SystemSampler

SLOW_STATS_EVERY = 10  # steps between the costlier stats (readings, entropy, activations, norms)
TIMED_EVERY_CUDA = 10  # on CUDA, sections are timed (with a device sync) only every this many steps
SAMPLE_TOKENS = 48  # positions shown in a guess-versus-truth sample
METRICS_FLUSH_S = 1.0
TIMINGS = REGISTRY.timings()  # published every step, 0 until a section has been timed



def _print_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lr_multiplier(step: int, warmup: int, total: int, lr: float, min_lr: float,
                  fraction: float | None = None) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to min_lr at step `total` (flat after).

    With a time budget, `fraction` (of the budget's training time used) replaces the step count's progress.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup)) if fraction is None else min(1.0, fraction)
    return (min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))) / lr


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _number(value: Any, default: float) -> float:
    """A finite number from a save's meta.json, or `default` (absent, null, or not a number)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else default


def _saved_overrides(saved: Any, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """A save's live changes (meta "live") that the resumed config still has (a --set on resume replaces one)."""
    out: dict[str, tuple[Any, Any]] = {}
    for key, change in (saved if isinstance(saved, dict) else {}).items():
        if key in live.LIVE_KEYS and isinstance(change, dict) and live.get(cfg, key) == change.get("now"):
            out[key] = (change.get("was"), change["now"])
    return out


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


class _Runner(torch.nn.Module):
    """The model's training forward as a plain module returning (logits, acts), for DDP to wrap."""

    def __init__(self, model: BabyLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.model.run(ids, train=True)
        return p.logits, p.acts


class Tutor(Controls):
    """The training loop for one run (implements babyllm.snapshot.TutorControl)."""

    def __init__(self, cfg: Config, run_dir: Path, *, resume: bool = False,
                 publish: Callable[[Snapshot], None] | None = None, publish_every: float = 0.25,
                 say: Callable[[str], None] | None = None, rank: int = 0, world_size: int = 1,
                 progress: ProgressFn | None = None) -> None:
        self.cfg = cfg
        self._progress = progress  # hears how preparing an uncached corpus goes
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.say = say or _print_stderr
        self._board = Board(publish, publish_every, on_error=self._publish_failed)
        t = cfg.train
        if not 0 <= t.seed < 2**63:  # torch's generators take 64 bits; say so rather than overflow
            raise ConfigError(f"train.seed {t.seed}: must be a whole number from 0 to {2**63 - 1}")
        if world_size > 1 and distributed.world_size() != world_size:
            raise BabyError(f"world_size {world_size} needs torch.distributed set up with that many ranks "
                            "(babyllm.school.distributed.init_from_env under torchrun)")
        self.device = pick_device(t.device)
        self.dtype = resolve_dtype(t.dtype, self.device)  # "auto" settled once: fp32 or bf16
        if world_size > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", distributed.local_rank())
        self.history = History()
        self.weights_lock = threading.Lock()
        # rank 0's process and machine in every snapshot, so an attached cockpit shows the training side's
        self._system = SystemSampler(str(self.device)) if self.is_main else None

        self._requests = Requests()
        self._endpoint: Endpoint | None = None  # the control socket, served by rank 0 while run() trains
        self._votes = Votes()  # several ranks: requests are acted on once every rank has heard them
        self._overrides: dict[str, tuple[Any, Any]] = {}  # live changes: key -> (the run's config value, now)
        self._writer = runfiles.RunWriter(self.run_dir, self._log_failed, METRICS_FLUSH_S)
        self._state: State = "starting"
        # Alerts (rank 0 judges them; a pause goes through the vote). The watchdog thread raises a stall
        # from outside a stuck step, so events, state and publishing take _io_lock.
        self._alerts = Alerts(cfg.alerts) if self.is_main else None
        self._beat: float | None = None  # when the loop last finished a step (None: none yet this run)
        self._watchdog_stop = threading.Event()
        self._io_lock = threading.RLock()
        self._error: str | None = None
        self._alarm: str | None = None
        self._stopping = False
        self.last_saved_step: int | None = None
        self.last_save_path: Path | None = None
        self.last_save_error: str | None = None
        self.step_count = 0
        self.tokens = 0
        self._gate_hist: dict[str, tuple[int, ...]] = {}  # refreshed with the slow stats

        created = not self.run_dir.exists()
        self._lock: RunLock | None = None
        try:
            if self.is_main:  # one owner per run: taken before anything in the run directory is touched
                soul.make_run_dir(self.run_dir)
                self._lock = RunLock(self.run_dir).acquire()
                soul.check_start(self.run_dir, resume, owner=True)
            self._build(resume)
        except BaseException:
            self.close()
            if created and self.is_main:  # a mistake (e.g. an empty corpus) leaves no half-made run behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _build(self, resume: bool) -> None:
        """Logs, corpus, model and optimizer, then (resuming) the newest save; ends with the first snapshot."""
        # A new run starts its logs afresh (any earlier attempt here never saved); a resumed run appends.
        mode = "a" if resume else "w"
        self._start_logs(resume, mode)
        self._build_corpus(resume)
        self._build_model()
        if resume:
            self._resume_newest()
        self._build_train_module()
        if self.is_main:
            self._writer.open(mode, only=("metrics",))
            if resume and self._discarded_steps:  # steps logged after the save resumed from are discarded: say so
                self._writer.rollback(self.step_count)
            if self.cfg.log.tensorboard:  # (a resumed run's file starts where the save left off)
                self._writer.mirror = tboard.EventWriter(self.run_dir, self.step_count, self._tboard_failed)
        lib = self.librarian
        self._corpus = Corpus(str(lib.root), len(lib.train_tokens), len(lib.val_tokens))
        self._param_count = sum(p.numel() for p in self.model.parameters())
        self._board.offer(self._fields, force=True)

    def _start_logs(self, resume: bool, mode: str) -> None:
        """events.jsonl, the Counsellor's debug.log and header.json (rank 0 writes files; the others only time)."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            soul.clean_temp(self.run_dir)
            self._writer.open(mode, only=("events",))
        sync = cuda_sync(self.device)
        self.counsellor = Counsellor(enabled=True, sync=sync,
                                     log_path=self.run_dir / runfiles.DEBUG_LOG if self.is_main else None)
        self._timed_every = TIMED_EVERY_CUDA if sync is not None else 1
        self.counsellor.log(f"tutor start: config {self.cfg.name}, device {self.device}, resume={resume}")
        if self.is_main:
            self._write_header(resume)

    def _build_corpus(self, resume: bool) -> None:
        """The Librarian: rank 0 prepares the tokenizer and corpus (a new run saves the tokenizer) and sends it."""
        cfg, rank, world = self.cfg, self.rank, self.world_size
        made: dict[str, Librarian] = {}

        def prepare_corpus() -> str | None:  # rank 0 (alone, so a shared cache is written once)
            tokenizer = soul.load_tokenizer(self.run_dir) if resume else None
            made["lib"] = Librarian(cfg, tokenizer=tokenizer, say=self._corpus_warning, rank=rank, world_size=world,
                                    progress=self._progress)
            if not resume:
                soul.write_tokenizer(self.run_dir, made["lib"].tokenizer)
            return made["lib"].tokenizer.to_str() if world > 1 else None

        tok_json = distributed.share(prepare_corpus)
        def librarian() -> Librarian:  # rank 0 made it; the other ranks build theirs on rank 0's tokenizer
            if "lib" in made:
                return made["lib"]
            assert tok_json is not None  # shared whenever world > 1
            return Librarian(cfg, tokenizer=Tokenizer.from_str(tok_json), say=self._corpus_warning, rank=rank,
                             world_size=world)

        self.librarian = distributed.agree_setup(librarian)
        self._tokenizer_digest = soul.tokenizer_digest(self.librarian.tokenizer)
        lib = self.librarian
        self._token_bytes = bpb.token_bytes(lib.tokenizer)
        held_bytes = bpb.scored_bytes(lib.val_tokens, self._token_bytes)
        self.unigram_bpb = bpb.bits_per_byte(
            bpb.unigram_nats(lib.train_tokens, lib.val_tokens, lib.vocab_size), held_bytes)
        self._val_bytes_per_token = math.nan  # of the validation batches' targets, set with them

    def _build_model(self) -> None:
        """The model, optimizer and LR schedule, and the training state a save restores."""
        cfg, t = self.cfg, self.cfg.train
        torch.manual_seed(t.seed)
        random.seed(t.seed)
        self.model = BabyLLM(cfg.model).to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer()
        self.train_seconds = 0.0  # the training clock: time spent in steps (not validation, saves or pauses)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: self._lr_multiplier(s))

        self.val_loss = math.nan
        self.val_bpb = math.nan
        self.best_val = math.inf
        self.best_val_step = 0  # the validation step that gave best_val
        self._losses: deque[float] = deque(maxlen=1000)
        self._discarded_steps = False
        self._slow: dict[str, float] | None = None
        self._last_stats: dict[str, float] = {}
        self._sample: Sample | None = None
        self._val_batches: list[torch.Tensor] | None = None
        self._token_text: list[str] | None = None

    def _resume_newest(self) -> None:
        """Apply the newest usable save (rank 0 picks and sends it); History and events from the run's logs."""
        loaded = distributed.share(lambda: soul.load_newest(
            self.run_dir, self.cfg, self.librarian.tokenizer, say=self._fallback_note, apply=self._apply_save))
        if not self.is_main:  # rank 0 applied it while loading; the others apply the copy it sent
            distributed.agree_setup(lambda: self._apply_save(loaded))
        else:
            distributed.agree_setup(lambda: None)
        self.last_saved_step = loaded.step
        self.last_save_path = loaded.path
        self._overrides = _saved_overrides(loaded.meta.get("live"), self.cfg)
        if self.is_main:
            self._discarded_steps, events = runfiles.replay_history(self.run_dir, self.history, loaded.step)
            self._board.restore(events)
        self._event("info", f"resumed from {loaded.path.name} (step {loaded.step})")

    def _build_train_module(self) -> None:
        """The module training steps run through (sharing self.model's parameters): DistributedDataParallel
        on several ranks (its construction checks the ranks' parameters agree), then torch.compile'd when asked."""
        self.train_module: torch.nn.Module = self.model
        if self.world_size > 1:
            cuda = self.device.type == "cuda"
            self.train_module = DistributedDataParallel(
                _Runner(self.model), device_ids=[self.device.index] if cuda else None,
                output_device=self.device.index if cuda else None)  # (no buffers to broadcast)
        self._forward_fn = torch.compile(self._forward) if self.cfg.train.compile else self._forward

    def _lr_multiplier(self, step: int) -> float:
        """The schedule at `step`, read from the live config (a changed train.lr or warmup counts at once)."""
        t = self.cfg.train
        total = t.steps if t.steps > 0 else t.decay_steps
        return lr_multiplier(step, t.warmup, total, t.lr, t.min_lr, self.budget_used())

    def _sync_optimizer(self, reschedule: bool) -> None:
        """Make the optimizer follow the config: weight decay on the decay group, the schedule's base rate;
        with `reschedule`, the rate for the next step recomputed (a schedule setting changed)."""
        t, groups = self.cfg.train, self.optimizer.param_groups
        groups[0]["weight_decay"] = t.weight_decay  # (group 0 decays; see _make_optimizer)
        if self.scheduler.base_lrs != [t.lr] * len(groups):
            reschedule = True  # e.g. resumed with --set train.lr=...
        if not reschedule:
            return
        self.scheduler.base_lrs = [t.lr] * len(groups)
        multiplier = self._lr_multiplier(self.scheduler.last_epoch)
        for g in groups:
            g["initial_lr"] = t.lr
            g["lr"] = t.lr * multiplier

    def budget_used(self) -> float | None:
        """The fraction of `train.minutes` the training clock has used; None without a time budget."""
        minutes = self.cfg.train.minutes
        return self.train_seconds / (minutes * 60.0) if minutes > 0 else None

    # --- set-up helpers -------------------------------------------------------------------------

    def _write_header(self, resume: bool) -> None:
        header = runfiles.Header.now(self.cfg.name, str(self.device), self.dtype, torch.__version__, resume,
                                     self.world_size)
        try:
            runfiles.write_header(self.run_dir, header)
        except OSError as e:  # a viewer then shows the config and device as unknown; training is unharmed
            self.counsellor.log(f"{runfiles.HEADER_FILE}: not written ({e.strerror or e})")

    def _corpus_warning(self, message: str) -> None:
        self.say(f"warning: {message}")
        self._event("info", message)

    def _fallback_note(self, message: str) -> None:
        self.say(message)
        self._event("error", message)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW (fused where torch has a kernel); weight decay only on 2-D weight matrices.

        Not on biases, norms, gate or mixing logits."""
        t = self.cfg.train
        decay: list[torch.nn.Parameter] = []
        plain: list[torch.nn.Parameter] = []
        for name, p in self.model.named_parameters():
            (decay if p.ndim == 2 and name.endswith("weight") else plain).append(p)
        groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": plain, "weight_decay": 0.0}]
        kwargs: dict[str, Any] = dict(lr=t.lr, betas=(t.beta1, t.beta2))
        if self.device.type in ("cuda", "cpu"):
            # One fused kernel per step: on CPU it measured ~13x faster than the per-tensor loop, which
            # was ~20% of a small-batch step at the default config.
            try:
                return torch.optim.AdamW(groups, fused=True, **kwargs)
            except (TypeError, RuntimeError):
                pass
        return torch.optim.AdamW(groups, **kwargs)

    # --- one step ---------------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with autocast(self.device, self.dtype):
            if self.world_size > 1:
                logits, acts = self.train_module(x)
            else:
                p = self.train_module.run(x, train=True)  # type: ignore[operator]
                logits, acts = p.logits, p.acts
        loss = next_token_loss(logits, y)
        correct = (logits.detach().argmax(-1) == y).sum()
        return loss, correct, logits, acts

    def step(self) -> dict[str, float]:
        """Exactly one training step: data, forward, backward, clip, optimizer, scheduler; returns its stats.

        A non-finite loss or gradient norm is never applied: the optimizer step is skipped, the step
        count does not advance, and `self.alarm` names the step and the stat. On several ranks the loss,
        accuracy and grad norm are those of the global batch (all-reduced, so every rank decides alike).
        """
        t0 = time.perf_counter()
        t = self.cfg.train
        c = self.counsellor
        number = self.step_count + 1
        c.enabled = number % self._timed_every == 0 or self._timed_every == 1
        with c.section("data"):
            batch = self.librarian.train_batch(t.batch)
            if self.device.type == "cuda":
                batch = batch.pin_memory().to(self.device, non_blocking=True)
            elif batch.device != self.device:
                batch = batch.to(self.device)
            x, y = batch[:, :-1], batch[:, 1:]
        with c.section("forward"):
            loss, correct, logits, acts = self._forward_fn(x, y)
        with c.section("backward"):
            loss.backward()
        lr = self.optimizer.param_groups[0]["lr"]
        with c.section("optimizer"):
            norm = clip_grad_norm_(self._params, t.grad_clip if t.grad_clip > 0 else math.inf)
            values = torch.stack([loss.detach().float(), norm.detach().float(), correct.float()])
            if self.world_size > 1:
                votes = self._votes
                flags = torch.tensor([float(votes.stop), float(votes.pause), float(bool(votes.settings))],
                                     device=values.device)
                votes.pause = False
                summed = distributed.reduce_sum(torch.cat([values, flags])).tolist()
                loss_v, norm_v = summed[0] / self.world_size, summed[1] / self.world_size
                correct_v, stop_any, pause_any = summed[2], summed[3] > 0, summed[4] > 0
                self._stopping = self._stopping or stop_any
                votes.pause_agreed = pause_any
                votes.settings_agreed = summed[5] > 0
            else:
                loss_v, norm_v, correct_v = values.tolist()
            ok = _finite(loss_v) and _finite(norm_v)
            if ok:
                with self.weights_lock:
                    self.optimizer.step()
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        with c.section("stats"):
            n_tokens = y.numel() * self.world_size
            if ok:
                self.step_count = number
                self.tokens += n_tokens
                self._losses.append(loss_v)
            else:
                bad, value = ("loss", loss_v) if not _finite(loss_v) else ("grad_norm", norm_v)
                self._alarm = f"step {number}: {bad} is {value}"
            if self._slow is None or (ok and number % SLOW_STATS_EVERY == 0):
                self._slow = self._slow_stats(logits, acts)
                self._gate_hist = self.model.gate_histograms(GATE_BINS)
            del logits, acts
            stats = self._stats(number, loss_v, norm_v, correct_v / n_tokens, lr)
        step_ms = (time.perf_counter() - t0) * 1000.0
        if ok:
            self.train_seconds += step_ms / 1000.0
        stats["tokens_per_s"] = n_tokens / max(step_ms / 1000.0, 1e-9)
        stats["step_ms"] = step_ms
        stats.update(self._slow)
        timings = c.timings()
        for key in TIMINGS:
            stats[key] = timings.get(key, 0.0)
        return stats

    def _stats(self, number: int, loss: float, norm: float, accuracy: float, lr: float) -> dict[str, float]:
        losses = self._losses
        recent = list(losses)
        loss_100 = sum(recent[-100:]) / len(recent[-100:]) if recent else math.nan
        loss_1000 = sum(recent) / len(recent) if recent else math.nan
        ref = self.val_loss if _finite(self.val_loss) else loss
        return {
            "step": number,
            "tokens": self.tokens,
            "loss": loss,
            "loss_100": loss_100,
            "loss_1000": loss_1000,
            "val_loss": self.val_loss,
            "val_bpb": self.val_bpb,
            "unigram_bpb": self.unigram_bpb,
            "perplexity": _exp(ref),
            "accuracy": accuracy,
            "lr": lr,
            "grad_norm": norm,
        }

    @torch.no_grad()
    def _slow_stats(self, logits: torch.Tensor, acts: torch.Tensor) -> dict[str, float]:
        out = dict(self.model.readings())
        logp = torch.log_softmax(logits.detach().float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        a = acts.detach().float()
        values = [entropy, a.mean(), a.std(), (a <= 0).float().mean()]
        for part in PARTS:
            params = [p.detach().float() for p in getattr(self.model, part).parameters()]
            values.append(torch.sqrt(sum((p * p).sum() for p in params)))
        names = ["entropy", "act_mean", "act_std", "act_inactive"] + [NORM.format(part=p) for p in PARTS]
        out.update(zip(names, torch.stack(values).tolist(), strict=True))
        return out

    # --- validation and samples -----------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the fixed validation batches (same batches every time)."""
        t = self.cfg.train
        if self._val_batches is None:  # the global batch size, so N ranks validate like one process
            self._val_batches = [b.to(self.device) for b in
                                 self.librarian.val_batches(t.eval_batches, t.batch * self.world_size)]
            targets = torch.cat([b[:, 1:].reshape(-1).cpu() for b in self._val_batches]).numpy()
            self._val_bytes_per_token = float(self._token_bytes[targets].mean())
        losses = []
        for b in self._val_batches:
            with autocast(self.device, self.dtype):
                logits = self.model.run(b[:, :-1]).logits
            losses.append(next_token_loss(logits, b[:, 1:]))
        return torch.stack(losses).mean().item()

    def _validate(self, train_loss: float = math.nan) -> None:
        """Validate now; `train_loss` (the recent training loss) is for the overfitting alert."""
        val = self.validate()
        self.val_loss = val
        self.val_bpb = val / max(self._val_bytes_per_token, 1e-9) / bpb.LN2
        if _finite(val) and val < self.best_val:
            self.best_val, self.best_val_step = val, self.step_count
            self._event("val", f"val loss {val:.4f} (new best)")
            on_disk = soul.saved_best_val(self.run_dir)  # best/ may hold a better model from another branch
            if on_disk is None or val < on_disk:
                self._save("best")
            else:
                self.counsellor.log(f"best/ kept: its val {on_disk:.4f} beats this branch's {val:.4f}")
        else:
            self._event("val", f"val loss {val:.4f} (best {self.best_val:.4f} @{self.best_val_step})")
        for alert in self._alerts.validation(self.step_count, val, train_loss) if self._alerts is not None else ():
            self._raise_alert(alert)

    @torch.no_grad()
    def make_sample(self) -> Sample:
        """The model's argmax guess versus the true next token on a validation snippet."""
        T = self.cfg.model.context
        val = self.librarian.val_tokens
        span = max(1, len(val) - T - 1)
        start = (self.step_count * 7919) % span  # a different snippet each time, no RNG drawn
        ids = torch.from_numpy(np.asarray(val[start:start + T + 1], dtype=np.int64)).to(self.device)
        with autocast(self.device, self.dtype):
            logits = self.model.run(ids[None, :-1]).logits[0]
        keep = min(T, SAMPLE_TOKENS)
        guesses = logits[-keep:].argmax(-1).tolist()
        truths = ids[1:][-keep:].tolist()
        if self._token_text is None:
            decode = self.librarian.decode
            self._token_text = [decode([i]) for i in range(self.librarian.vocab_size)]
        text = self._token_text
        shown = lambda i: text[i] if 0 <= i < len(text) else "?"  # noqa: E731
        return Sample(self.step_count, self.librarian.decode(ids[:-1][-keep:].tolist()),
                      tuple(shown(g) for g in guesses), tuple(shown(t) for t in truths))

    def score_held_out(self) -> bpb.Score:
        """The model's bits per byte on all the held-out text as it is now (`babyllm bench --quality`)."""
        lib = self.librarian
        return bpb.score(self.model, lib.tokenizer, lib.train_tokens, lib.val_tokens, self.device, self.dtype)

    # --- saving and restoring -------------------------------------------------------------------

    def _weights_finite(self) -> bool:
        with torch.no_grad():
            return bool(torch.stack([p.isfinite().all() for p in self._params]).all().item())

    def _meta(self) -> dict[str, Any]:
        py_state = random.getstate()
        return {
            "tokens": self.tokens,
            "train_seconds": self.train_seconds,
            "config": self.cfg.to_dict(),
            "config_name": self.cfg.name,
            "tokenizer_digest": self._tokenizer_digest,
            "val_loss": self.val_loss if _finite(self.val_loss) else None,
            "val_bpb": self.val_bpb if _finite(self.val_bpb) else None,
            "best_val_loss": self.best_val if _finite(self.best_val) else None,
            "best_val_step": self.best_val_step,
            "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
            "world_size": self.world_size,
            "live": {k: {"was": was, "now": now} for k, (was, now) in self._overrides.items()},
        }

    def _train_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "sampler": self.librarian.sampler_state(),
            "losses": torch.tensor(list(self._losses), dtype=torch.float64),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save(self, kind: str = "save") -> Path | None:
        """Write a save now (from the Tutor's thread, or when it is not running); None if not written.

        kind: "save" (rolling, last train.keep kept), "checkpoint" (kept) or "best" (weights only).
        A failure (e.g. a full disk) leaves earlier saves intact and is reported as an event.
        """
        return self._save(kind)

    def _save(self, kind: str) -> Path | None:
        if not self.is_main:
            if kind != runfiles.BEST:  # rank 0 writes it; remembered for the lost-contact message
                self.last_saved_step = self.step_count
            return None
        step = self.step_count
        if not self._weights_finite():
            msg = f"step {step}: weights contain nan/inf; {kind} not written (the last good save is kept)"
            self.last_save_error = msg
            self._event("error", msg)
            return None
        try:
            path = soul.save(self.run_dir, kind, step, self.model.state_dict(),
                             None if kind == runfiles.BEST else self._train_state(), self._meta())
            if kind == "save":
                soul.prune(self.run_dir, self.cfg.train.keep)
        except (OSError, BabyError) as e:
            msg = f"step {step}: {kind} failed: {e}; earlier saves are intact"
            self.last_save_error = msg
            self.counsellor.log(msg)
            self._event("error", msg)
            return None
        if kind != runfiles.BEST:
            self.last_saved_step = step
            self.last_save_path = path
            self.last_save_error = None
            self._event("checkpoint" if kind == "checkpoint" else "save", f"saved step {step} to {path}")
        else:
            self.counsellor.log(f"best weights (val {self.best_val:.4f}) saved to {path}")
        return path

    def _apply_save(self, loaded: soul.LoadedSave) -> None:
        """Put a save's weights and training state into this Tutor (raises CheckpointError if they don't fit)."""
        st = loaded.state
        assert st is not None
        meta = loaded.meta
        try:
            with self.weights_lock:
                self.model.load_state_dict(loaded.model_state)
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            self.librarian.load_sampler_state(st["sampler"])
            torch.set_rng_state(st["torch_rng"])
            if "cuda_rng" in st and torch.cuda.is_available() and len(st["cuda_rng"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(st["cuda_rng"])
            py = meta["python_rng"]
            random.setstate((py[0], tuple(py[1]), py[2]))
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"{loaded.path}: does not fit this run ({str(e).splitlines()[0][:160]})") from None
        self.step_count = int(meta["step"])
        self.tokens = int(meta.get("tokens", 0))
        self.train_seconds = _number(meta.get("train_seconds"), 0.0)
        self.val_loss = meta["val_loss"] if meta.get("val_loss") is not None else math.nan
        self.val_bpb = _number(meta.get("val_bpb"), math.nan)
        self.best_val = meta["best_val_loss"] if meta.get("best_val_loss") is not None else math.inf
        self.best_val_step = int(meta.get("best_val_step") or 0)
        self._losses = deque(st["losses"].tolist(), maxlen=1000)
        self._sync_optimizer(reschedule=False)  # the saved groups carry the save's settings; the config wins
        self._slow = None
        self._alarm = None

    def _rollback(self) -> None:
        try:
            loaded = soul.load_newest(self.run_dir, self.cfg, self.librarian.tokenizer,
                                      say=lambda m: self._event("error", m), apply=self._apply_save)
        except BabyError as e:
            self._event("error", f"rollback failed: {e}")
            return
        self._error = None
        self.history.rewind(loaded.step + 1)  # the plots keep only the live branch
        with self._io_lock:
            self._writer.rollback(loaded.step)
        self._event("info", f"rolled back to {loaded.path.name} (step {loaded.step}); paused")
        self._set_state("paused")

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> State:
        """Train until stop(), train.steps or an alarm followed by stop(); returns the final state.

        "finished" (train.steps reached), "stopped", "alarm" (stopped while the alarm was up) or
        "error" (an unexpected exception; snapshot().error has it). Saves on the way out (rank 0).
        """
        self._serve()
        watchdog = self._start_watchdog()
        try:
            final = self._train()
            self._set_state(final)  # (subscribers get this last snapshot before the socket closes)
        finally:
            self._watchdog_stop.set()
            if watchdog is not None:
                watchdog.join()
            self._unserve()
        self.close()
        return final

    def _train(self) -> State:
        """run()'s body: the loop and the save on the way out; the final state (never raising)."""
        try:
            self._set_state("running")
            self._say_how_it_runs()
            if self.is_main and not _finite(self.val_loss):
                self._validate()
            final = self._loop()
            self._set_state("stopping")
            if self.last_saved_step != self.step_count or self.last_save_path is None:
                self._save("save")
            distributed.barrier()  # every rank waits for rank 0's save, then all exit together
            return final
        except Exception as e:  # the loop must report, never vanish silently
            self._crashed(e)
            return "error"

    def _serve(self) -> None:
        """Rank 0 serves the control socket while it trains; a socket that cannot start is a warning only."""
        if not self.is_main or self._endpoint is not None:
            return
        try:
            endpoint = Endpoint(self.run_dir, self, world_size=self.world_size, log=self.counsellor.log)
        except OSError as e:  # (its wake-up socketpair: e.g. out of file descriptors)
            self._event("error", f"control socket not started ({e.strerror or e}); training goes on without it")
            return
        try:
            endpoint.start()
        except BabyError as e:
            endpoint.close()
            self._event("error", f"{e}; training goes on without it (no babyllm ctl or --attach)")
            return
        self._endpoint = endpoint
        if self._board.current is not None:
            endpoint.publish(self._board.current)

    def _unserve(self) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()

    def _loop(self) -> State:
        """Steps, acting on requests between them, until stopped or done; the state to end in."""
        while True:
            self._service()
            if self._stopping:
                return "alarm" if self._state == "alarm" else "stopped"
            if self._state in WAITING:
                if self._beat is not None:  # (no stall while waiting; the clock starts again on resume)
                    self._beat = time.monotonic()
                self._maybe_publish()
                self._requests.wait(0.1)
                if self.world_size > 1:
                    self._heartbeat()
                continue
            if self._done():
                return "finished"
            self._after_step(self.step())
            self._beat = time.monotonic()
            self._maybe_publish()

    def _done(self) -> bool:
        t = self.cfg.train
        return bool(t.steps and self.step_count >= t.steps) or bool(t.minutes and self.train_seconds >= t.minutes * 60)

    def _after_step(self, stats: dict[str, float]) -> None:
        """Validate, record, sample and save as the step count says; a bad step raises the alarm instead."""
        if self._votes.settings_agreed:  # (every rank saw the flag in this step's all-reduce)
            self._agree_settings()
        t, n = self.cfg.train, self.step_count
        if self._alarm is None and self.is_main and n % t.eval_every == 0:
            self._validate(stats["loss_100"])  # before recording, so this step's stats carry the new val loss
            stats["val_loss"], stats["perplexity"] = self.val_loss, _exp(self.val_loss)
            stats["val_bpb"] = self.val_bpb
        self._record(stats)
        if self._alarm is not None:
            self._error = self._alarm
            self._event("alarm", f"{self._alarm}; the step was not applied, training paused")
            self._set_state("alarm")
            return
        for alert in self._alerts.step(n, stats) if self._alerts is not None else ():
            self._raise_alert(alert)
        if self.is_main and n % t.sample_every == 0:
            self._sample = self.make_sample()
        if t.save_every and n % t.save_every == 0:
            self._save("save")
        if self._votes.pause_agreed:
            self._votes.pause_agreed = False
            self._set_state("paused")

    def _raise_alert(self, alert: Alert) -> None:
        """An alert's event; the configured command (in the background) and pause (through the request queue,
        so on several ranks the vote: every rank pauses at the same step)."""
        a = self.cfg.alerts
        self._event("alert", alert.message)
        if a.command.strip():
            run_command(a.command, alert.message, a.command_timeout, lambda why: self._event("error", why))
        if a.pause:
            self.pause(by=f"alert ({alert.rule})")

    def _start_watchdog(self) -> threading.Thread | None:
        """Rank 0's stall watchdog: a stuck step cannot notice itself, so this thread reads the loop's beat."""
        if self._alerts is None or "stall" not in self._alerts.rules:
            return None
        self._watchdog_stop.clear()
        thread = threading.Thread(target=self._watch_stalls, name="stall-watchdog", daemon=True)
        thread.start()
        return thread

    def _watch_stalls(self) -> None:
        assert self._alerts is not None
        every = min(1.0, self.cfg.alerts.stall_seconds / 4)
        while not self._watchdog_stop.wait(every):
            beat = self._beat  # (watched only while running: not paused, waiting, stopping or before a step)
            watched = beat is not None and self._state == "running" and not self._stopping
            seconds = time.monotonic() - beat if beat is not None and watched else None
            for alert in self._alerts.clock(self.step_count, seconds):
                self._raise_alert(alert)

    def _say_how_it_runs(self) -> None:
        if self.cfg.train.compile:
            self._event("info", "torch.compile: the first steps compile the model (this can take a minute)")
        elif self.device.type == "cpu" and self.dtype == "fp32" and gemm.onednn_fp32():
            self._event("info", "fp32 matmuls through oneDNN (faster than torch.mm here; "
                                f"{gemm.MATMUL_ENV}=torch to compare)")

    def _crashed(self, e: Exception) -> None:
        if self.world_size > 1 and distributed.is_comm_failure(e):
            self._error = distributed.lost_contact(e, self.last_saved_step)
        else:
            self._error = f"step {self.step_count}: {type(e).__name__}: {e}"
        self.counsellor.log("".join(traceback.format_exception(e)))
        self._event("error", self._error)

    # --- control: requests from any thread (each returns at once), acted on between steps --------

    def _request(self, what: Request, by: str) -> None:  # (pause, resume, ... from Controls)
        self._requests.put(what, by)

    def set_settings(self, items: Sequence[tuple[str, str]], by: str = DEFAULT_BY) -> None:
        """Queue live changes, (key, text as after --set KEY=) each (babyllm.live.LIVE_KEYS), applied together
        at the next step boundary; raises ConfigError at once, queueing none of them, for a bad value or a
        key that cannot change mid-run (the same one-line error as --set)."""
        self._requests.put("set", by, live.check(self.cfg, items))

    def debug_log(self, text: str) -> None:
        """Append a line to the run's debug.log (the Counsellor owns that file)."""
        if hasattr(self, "counsellor"):
            self.counsellor.log(text)

    def snapshot(self) -> Snapshot:
        assert self._board.current is not None  # published once at the end of _build
        return self._board.current

    def chat_session(self, settings: Settings | None = None) -> Infer2:
        """A conversation with the model as it trains (replies take the weights lock between optimizer steps)."""
        return Infer2(self.model, self.librarian.tokenizer, settings or Settings.from_config(self.cfg.chat),
                      lock=self.weights_lock)

    @property
    def state(self) -> State:
        return self._state

    def _service(self) -> None:
        for what, by, setting in self._requests.take():
            if what == "set" and setting is not None:
                self._change(setting, by)
                continue
            refused = refusal(what, self.world_size)
            self._event("error" if refused else "info",
                        f"{what} requested by {by}" + (f": refused ({refused})" if refused else ""))
            if refused:
                continue
            if self.world_size > 1 and what in AGREED:
                self._vote(what)
            elif what == "pause" and self._state in PAUSABLE:
                self._set_state("paused")
            elif what == "resume" and self._state in WAITING:
                self._resume()
            elif what in ("save", "checkpoint"):
                self._save(what)
            elif what == "rollback":
                self._rollback()
            elif what == "stop":
                self._stopping = True

    def _vote(self, what: Request) -> None:
        """Several ranks: a request acted on once every rank agrees (step, _heartbeat). A vote that does not
        apply now is dropped, as one rank would ignore it: a stale pause or resume must not fire later."""
        votes = self._votes
        if what == "stop":
            votes.stop = True
        elif what == "pause" and self._state in PAUSABLE:
            votes.pause = True
        elif what == "resume" and votes.pause:
            votes.pause = False  # not sent yet: resuming cancels it
        elif what == "resume" and self._state in WAITING:
            votes.resume = True

    def _change(self, change: Change, by: str) -> None:
        """A live change: applied now on one rank; on several, sent by rank 0 after the next step (_agree_settings)."""
        if self.world_size > 1:
            self._votes.settings.append((change, by))
        else:
            self._apply_change(change, by)

    def _agree_settings(self) -> None:
        """Several ranks, at a step boundary every rank reaches: rank 0 sends its queued changes; all apply them."""
        votes = self._votes
        votes.settings_agreed = False
        pending = distributed.share(lambda: [([list(kv) for kv in c], by) for c, by in votes.settings])
        votes.settings.clear()
        for change, by in pending:
            self._apply_change(tuple((key, value) for key, value in change), by)

    def _apply_change(self, change: Change, by: str) -> None:
        """Apply a change's settings together, or none of them (each is one event)."""
        trial = copy.deepcopy(self.cfg)  # checked again: an earlier change may have moved a bound (min_lr <= lr)
        for key, value in change:
            live.put(trial, key, value)
        try:
            validate(trial, where="set " + " ".join(key for key, _ in change))
        except ConfigError as e:
            self._event("error", f"{e} (requested by {by}; not applied)")
            return
        for key, value in change:
            old = live.get(self.cfg, key)
            live.put(self.cfg, key, value)
            was = self._overrides.pop(key, (old, None))[0]
            if value != was:
                self._overrides[key] = (was, value)
            self._event("info", f"set {key} {live.shown(old)} -> {live.shown(value)} by {by}")
        train = [key for key, _ in change if key.startswith("train.")]
        if train:
            self._sync_optimizer(reschedule=any(key in live.SCHEDULE for key in train))

    def _resume(self) -> None:
        if self._state == "alarm":
            self._event("info", "resumed after the alarm (the bad step was not applied)")
            self._reopen_logs()
        self._alarm = self._error = None
        self._set_state("running")

    def _heartbeat(self) -> None:
        """While paused on several ranks: agree on stop and resume requests (one tiny all-reduce)."""
        votes = self._votes
        stop, resume, settings = distributed.any_rank([votes.stop, votes.resume, bool(votes.settings)], self.device)
        votes.resume = False
        if settings:
            self._agree_settings()
        if stop:
            self._stopping = True
        elif resume:
            self._resume()

    # --- records, events, snapshots -------------------------------------------------------------

    def _record(self, stats: dict[str, float]) -> None:
        self._last_stats = stats
        self.history.add(int(stats["step"]), stats)
        with self._io_lock:
            self._writer.metrics(stats)

    def _event(self, kind: EventKind, message: str) -> None:
        """Log and publish an event (from the training thread, the stall watchdog or an alert command's thread)."""
        with self._io_lock:
            ev = Event(self.step_count, kind, message)
            self._board.add(ev)
            if hasattr(self, "counsellor"):
                self.counsellor.log(f"event {kind} step {ev.step}: {message}")
            self._writer.event(ev)
            self._maybe_publish(force=True)

    def _set_state(self, state: State) -> None:
        with self._io_lock:
            if state != self._state:
                self._state = state
                self._writer.flush()
                self._maybe_publish(force=True)

    def _log_failed(self, name: str, e: OSError) -> None:
        """A log's write failed (a full disk): the writer dropped it; raise the alarm, naming what is safe."""
        saved = (f"the last save ({self.last_save_path.name}) is intact" if self.last_save_path is not None
                 else "no save was written yet")
        msg = f"step {self.step_count}: writing {name} failed ({e.strerror or e}); {saved}; training paused"
        self._error = msg
        self._event("alarm", msg)
        if self._state in ("running", "paused", "starting"):
            self._set_state("alarm")

    def _tboard_failed(self, message: str) -> None:
        """The TensorBoard file could not be written: it is dropped (one event), training goes on."""
        self._event("error", message)

    def _reopen_logs(self) -> None:
        """After an alarm: reopen a log that failed (once the user has freed space), cutting a torn line."""
        for error in self._writer.reopen() if self.is_main else ():
            self._event("error", error)

    def _fields(self) -> dict[str, Any]:
        """The Snapshot's fields (the board adds the recent events)."""
        path = self.last_save_path
        return dict(
            step=self.step_count, tokens=self.tokens, state=self._state, stats=self._last_stats,
            max_steps=self.cfg.train.steps, sample=self._sample, error=self._error, device=str(self.device),
            config_name=self.cfg.name, run_dir=str(self.run_dir), dtype=self.dtype, params=self._param_count,
            corpus=self._corpus, best_val=self.best_val, best_val_step=self.best_val_step,
            last_save_step=self.last_saved_step, last_save_path=str(path) if path is not None else None,
            last_save_error=self.last_save_error,
            system=self._system.read() if self._system is not None else {},
            overrides={k: now for k, (_, now) in self._overrides.items()},
            settings={k: live.get(self.cfg, k) for k in live.LIVE_KEYS}, gate_hist=self._gate_hist)

    def _maybe_publish(self, force: bool = False) -> None:
        if self._board.current is None:  # (not while building: the first snapshot comes at its end)
            return
        with self._io_lock:
            if self._board.offer(self._fields, force) and self._endpoint is not None:
                self._endpoint.publish(self._board.current)  # hands it over; never waits on a client

    def _publish_failed(self, e: Exception) -> None:
        self.counsellor.log(f"publish callback failed: {type(e).__name__}: {e}")

    def close(self) -> None:
        """Flush and close the run's files (run() does this on the way out)."""
        with self._io_lock:  # (an alert command's thread may still report)
            self._writer.close()
        if hasattr(self, "counsellor"):
            self.counsellor.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def __enter__(self) -> Tutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
