"""The step: data, forward and backward over the micro-batches, clip, the NaN/inf guard (decided on the device),
the optimizer, and the step's fast and slow stats, read from the device without holding it up."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.utils import clip_grad_norm_

from babyllm.config import Config
from babyllm.school import distributed
from babyllm.school.counsellor import Counsellor
from babyllm.school.engine import Engine
from babyllm.school.librarian import Librarian
from babyllm.school.progress import Progress, perplexity
from babyllm.stats import GATE_BINS, NORM, PARTS, REGISTRY

SLOW_STATS_EVERY = 10  # steps between the costlier stats (readings, entropy, activations, norms)
SLOW_ROWS = 512  # positions the entropy and activation stats look at (a spread sample: no copy of whole tensors)
TIMED_EVERY_CUDA = 10  # on CUDA, sections are timed (with a device sync) only every this many steps
TIMINGS = REGISTRY.timings()  # published every step, 0 until a section has been timed
# AdamW moves a weight by about lr * (1 + weight_decay * |w|) a step at most (its normalised update is a few
# units for betas with beta1^2 < beta2), so a rate beyond this can only overflow or wipe out the weights.
LR_LIMIT = 1e6
ACTIVITY = ("entropy", "act_mean", "act_std", "act_inactive")

Ballot = Callable[[], list[float]]  # this rank's votes, sent with the step's all-reduce (several ranks)
Tally = Callable[[list[bool]], None]  # whether any rank voted for each, heard back


@dataclass
class InFlight:
    """A step queued on the device whose numbers have not been read yet (their copies are on their way)."""

    t0: float  # when its launch began
    lr: float  # the rate it used
    tokens: int  # tokens of the global batch
    values: torch.Tensor | None  # on the host: [loss (summed over ranks), grad norm, correct, refused, votes...]
    refused: str | None  # why the step was refused before it ran (its settings), else None
    slow: torch.Tensor | None  # the slow stats (readings, activity, norms), when this step refreshed them
    counts: torch.Tensor | None  # the gate histograms, likewise
    ready: torch.cuda.Event | None  # the device has written `values` (and the slow ones): CUDA only


class Stepper:
    """Training steps on one rank's slice of the global batch (train.batch x train.accumulate x ranks), and
    their stats.

    The guard: a step whose loss or gradient norm is not finite is never applied, and neither is one whose
    settings could only make the weights non-finite (LR_LIMIT). The decision is taken on the device: the
    fused optimizer skips the update itself (its `found_inf`), so nothing waits for the host before the
    optimizer runs; the step count does not advance and `alarm` names the step and the stat (until the loop
    clears it). A step queued after a refused one is refused with it (the chained flag), so nothing past a
    bad step is ever applied. Optimizers without that kernel decide on the host.

    With `overlap` (one CUDA device) the stats of a step are read once the next step is queued: the device
    never waits for the host between steps. `step(overlap=...)` returns the stats of every step it read
    (0, 1 or 2); the loop asks for no overlap where it needs the model as of the step (validation, samples,
    saves, requests, the end), and a timed step (the Counsellor syncs) starts with nothing in flight. On
    several ranks one small all-reduce per step sums loss, accuracy, grad norm, the refusal and the ranks'
    votes (`ballot`, `tally`); they never overlap (every rank must take the same path).

    Stats (every step): step, tokens, loss, loss_100, loss_1000, val_loss and val_bpb (latest), unigram_bpb,
    perplexity (exp of val_loss, or of loss before the first validation), accuracy (argmax token accuracy of
    the batch), lr (the rate this step used), grad_norm (before clipping), tokens_per_s, step_ms, the model's
    readings (window_weight_k, window_size_k, mem1_*/mem2_*, mem2_mix), entropy (mean entropy of the
    predicted distributions), act_mean, act_std, act_inactive (fraction of neuron activations <= 0), norm_<part>
    (L2 norm of each part's weights), and the Counsellor's t_data, t_forward, t_backward, t_optimizer, t_stats
    (EMA ms). Readings, activity, weight norms and the gate histograms are computed every SLOW_STATS_EVERY steps
    (entropy and activity on SLOW_ROWS positions of the last micro-batch) and carried forward."""

    def __init__(self, cfg: Config, engine: Engine, librarian: Librarian, progress: Progress,
                 counsellor: Counsellor, weights_lock: threading.Lock, *, world_size: int, unigram_bpb: float,
                 ballot: Ballot, tally: Tally) -> None:
        self.cfg, self.engine, self.librarian, self.progress = cfg, engine, librarian, progress
        self.counsellor, self.weights_lock, self.world_size = counsellor, weights_lock, world_size
        self.device = engine.device
        self.unigram_bpb = unigram_bpb
        self.ballot, self.tally = ballot, tally
        self.timed_every = TIMED_EVERY_CUDA if counsellor.sync is not None else 1
        self.overlap_ok = self.device.type == "cuda" and world_size == 1  # tests force it to check the path
        self.on_device = bool(engine.optimizer.defaults.get("fused"))  # the guard without a host sync
        self.alarm: str | None = None  # the last step's NaN/inf, until cleared (resume, a save applied)
        self.slow: dict[str, float] | None = None  # the slow stats, carried forward between refreshes
        self.gate_hist: dict[str, tuple[int, ...]] = {}  # refreshed with the slow stats
        self.inflight: InFlight | None = None  # a queued step not read yet (overlap)
        self._chain: torch.Tensor | None = None  # the in-flight step's refusal flag: a step after it follows it
        self._slow_names: list[str] = []
        self._landed_at: float | None = None  # when the previous step's numbers were read (overlap timing)
        self.mfu: tuple[int, float] | None = None  # (training FLOPs a token, the peak FLOP/s): the mfu stat
        # on a GPU the training split stays there when it is small beside its free memory
        self.resident = self.device.type == "cuda" and librarian.keep_on(
            self.device, torch.cuda.mem_get_info(self.device)[0])

    @property
    def next_number(self) -> int:
        """The number the next step queued will have (if the steps before it are applied)."""
        return self.progress.step_count + 1 + (self.inflight is not None)

    def forget(self) -> None:
        """A save was applied or the run resumes: no alarm, no chain, slow stats afresh at the next step."""
        self.slow = None
        self.alarm = None
        self._chain = None

    # --- one step, and the steps in flight ----------------------------------------------------------

    def step(self, overlap: bool = False) -> list[dict[str, float]]:
        """Queue one step; return the stats of the steps read: the one queued before it (if any), and this one
        unless `overlap` leaves it in flight."""
        landed: list[dict[str, float]] = []
        timed = self._timed(self.next_number)
        if self.inflight is not None and timed:  # a timed step starts on an idle device
            landed += self.drain()
        launched = self._launch(timed)
        older, self.inflight = self.inflight, launched
        if older is not None:
            landed += self._read(older)
        if not (overlap and self.overlap_ok) or self.alarm is not None:
            landed += self.drain()
        return landed

    def drain(self) -> list[dict[str, float]]:
        """Read the step still in flight (none: nothing)."""
        inflight, self.inflight = self.inflight, None
        return self._read(inflight) if inflight is not None else []

    def _timed(self, number: int) -> bool:
        return number % self.timed_every == 0 or self.timed_every == 1

    def _launch(self, timed: bool) -> InFlight:
        """Queue data, forward, backward, clip, the guarded optimizer step and the slow stats; read nothing."""
        t0 = time.perf_counter()
        t, e, c = self.cfg.train, self.engine, self.counsellor
        c.enabled = timed
        k = t.accumulate
        with c.section("data"):
            windows = self._windows(self.cfg.batch_size * k)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for i, micro in enumerate(windows.chunk(k) if k > 1 else (windows,)):
            x, y = micro[:, :-1], micro[:, 1:]
            with e.sync_grads(i == k - 1):  # several ranks: only the last micro-batch all-reduces
                with c.section("forward"):
                    loss, right, logits, acts = e.forward(x, y)
                with c.section("backward"):
                    (loss / k if k > 1 else loss).backward()
            loss_sum += loss.detach().float()
            correct += right
        lr = e.optimizer.param_groups[0]["lr"]
        refused = self._refusal(lr)
        with c.section("optimizer"):
            norm = clip_grad_norm_(e.params, t.grad_clip if t.grad_clip > 0 else math.inf)
            values = self._gather(loss_sum / k, norm, correct, refused is not None)
            flag = self._flag(values)
            self._apply(flag)
            e.scheduler.step()  # (taken back when the step turns out refused: see _read)
            e.optimizer.zero_grad(set_to_none=True)
        with c.section("stats"):
            number = self.progress.step_count + 1
            slow = counts = None
            if self.slow is None or number % SLOW_STATS_EVERY == 0:
                slow, counts = self._slow_stats(logits, acts)
            del logits, acts
            launched = InFlight(t0, lr, y.numel() * k * self.world_size, self._to_host(values), refused,
                                self._to_host(slow), self._to_host(counts), None)
            if self.device.type == "cuda":
                launched.ready = torch.cuda.Event()
                launched.ready.record()
        return launched

    def _windows(self, batch: int) -> torch.Tensor:
        """This rank's windows of the next global batch [batch, T+1], on the device."""
        windows = self.librarian.train_batch(batch)
        if windows.device == self.device:  # (gathered there: the corpus stays on the GPU)
            return windows
        if self.device.type == "cuda":
            return windows.pin_memory().to(self.device, non_blocking=True)
        return windows.to(self.device)

    def _refusal(self, lr: float) -> str | None:
        """Why this step's settings could only make the weights non-finite (None: they cannot)."""
        reach = lr * (1.0 + self.cfg.train.weight_decay)
        if math.isfinite(reach) and reach < LR_LIMIT:
            return None
        return (f"train.lr {lr:g} with train.weight_decay {self.cfg.train.weight_decay:g} would make the weights "
                f"non-finite (lr x (1 + weight_decay) must stay under {LR_LIMIT:g})")

    def _gather(self, loss: torch.Tensor, norm: torch.Tensor, correct: torch.Tensor, refused: bool) -> torch.Tensor:
        """[loss, grad norm, correct, refused, votes...] on the device: summed over the ranks in one all-reduce."""
        values = torch.stack([loss, norm.detach().float(), correct.float(),
                              torch.tensor(float(refused), device=self.device)])
        if self.world_size == 1:
            return values
        votes = torch.tensor(self.ballot(), device=values.device)
        return distributed.reduce_sum(torch.cat([values, votes]))

    def _flag(self, values: torch.Tensor) -> torch.Tensor:
        """1.0 where the step must not be applied: a non-finite loss or norm, refused settings, or the step
        queued before it refused (the chain); on the device."""
        bad = (~torch.isfinite(values[:2]).all() | (values[3] > 0)).float()
        if self._chain is not None:
            bad = torch.maximum(bad, self._chain)
        self._chain = bad if self.overlap_ok else None
        values[3] = bad  # read back: the landing step knows whether the device applied it
        return bad

    def _apply(self, flag: torch.Tensor) -> None:
        """The optimizer step, skipped where `flag` is 1: by the fused kernel on the device, else on the host."""
        optimizer = self.engine.optimizer
        if self.on_device:
            optimizer.found_inf = flag  # type: ignore[attr-defined]  # read by the fused AdamW kernel
            with self.weights_lock:
                optimizer.step()
        elif not flag.item():
            with self.weights_lock:
                optimizer.step()

    def _to_host(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """A copy on its way to the host (pinned, asynchronous on CUDA; read after `ready`)."""
        if x is None or self.device.type != "cuda":
            return x.detach().clone() if x is not None else None
        out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        return out.copy_(x.detach(), non_blocking=True)

    # --- reading a step -------------------------------------------------------------------------------

    def _read(self, f: InFlight) -> list[dict[str, float]]:
        """A queued step's numbers: the counters advance (or the alarm rises), its stats; a step queued after a
        refused one is dropped (the device refused it too), its schedule step taken back."""
        if f.ready is not None:
            f.ready.synchronize()
        assert f.values is not None
        summed = f.values.tolist()
        if self.world_size > 1:
            self.tally([v > 0 for v in summed[4:]])
        world = self.world_size
        loss, norm, correct, refused = summed[0] / world, summed[1] / world, summed[2], summed[3] > 0
        if refused and self.alarm is not None:  # chained to the refused step before it: never applied
            self.engine.unstep()
            return []
        p, c = self.progress, self.counsellor
        number = p.step_count + 1
        now = time.perf_counter()
        start = f.t0 if self._landed_at is None or self._landed_at < f.t0 else self._landed_at
        self._landed_at = now if self.inflight is not None else None  # (an overlapped step's time runs from here)
        step_ms = (now - start) * 1000.0
        if refused:
            self.engine.unstep()
            bad, value = ("loss", loss) if not math.isfinite(loss) else ("grad_norm", norm)
            self.alarm = f"step {number}: " + (f.refused or f"{bad} is {value}")
        else:
            p.step_count = number
            p.tokens += f.tokens
            p.losses.append(loss)
            p.train_seconds += step_ms / 1000.0
        if f.slow is not None and (self.slow is None or not refused):
            self.slow = dict(zip(self._slow_names, f.slow.tolist(), strict=True))
            assert f.counts is not None
            self.gate_hist = self.engine.model.gate_histograms_from(f.counts.tolist())
        stats = self._stats(number, loss, norm, correct / f.tokens, f.lr)
        stats["tokens_per_s"] = f.tokens / max(step_ms / 1000.0, 1e-9)
        stats["step_ms"] = step_ms
        if self.mfu is not None:
            flops, peak = self.mfu
            stats["mfu"] = flops * stats["tokens_per_s"] / peak
        stats.update(self.slow or {})
        timings = c.timings()
        for key in TIMINGS:
            stats[key] = timings.get(key, 0.0)
        return [stats]

    def _stats(self, number: int, loss: float, norm: float, accuracy: float, lr: float) -> dict[str, float]:
        p = self.progress
        recent = list(p.losses)
        loss_100 = sum(recent[-100:]) / len(recent[-100:]) if recent else math.nan
        loss_1000 = sum(recent) / len(recent) if recent else math.nan
        ref = p.val_loss if math.isfinite(p.val_loss) else loss
        return {
            "step": number,
            "tokens": p.tokens,
            "train_s": p.train_seconds,
            "loss": loss,
            "loss_100": loss_100,
            "loss_1000": loss_1000,
            "val_loss": p.val_loss,
            "val_bpb": p.val_bpb,
            "unigram_bpb": self.unigram_bpb,
            "perplexity": perplexity(ref),
            "accuracy": accuracy,
            "lr": lr,
            "grad_norm": norm,
        }

    @torch.no_grad()
    def _slow_stats(self, logits: torch.Tensor, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(readings, activity, weight norms) as one fp32 tensor, and the gate histograms: on the device."""
        model = self.engine.model
        names, readings = model.reading_values()
        rows = _spread(logits.detach().reshape(-1, logits.shape[-1]))
        logp = torch.log_softmax(rows.float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        a = _spread(acts.detach().reshape(-1, acts.shape[-1])).float()
        norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(getattr(model, part).parameters()))))
                 for part in PARTS]
        self._slow_names = names + list(ACTIVITY) + [NORM.format(part=p) for p in PARTS]
        activity = [entropy, a.mean(), a.std(), (a <= 0).float().mean()]
        return torch.cat([readings, torch.stack([v.float() for v in activity + norms])]), model.gate_counts(GATE_BINS)


def _spread(rows: torch.Tensor) -> torch.Tensor:
    """At most SLOW_ROWS rows, evenly spread (a view: nothing copied)."""
    return rows[:: max(1, -(-rows.shape[0] // SLOW_ROWS))]
