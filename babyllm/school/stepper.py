"""The step: data, forward, backward, clip, the NaN/inf guard, the optimizer, and the step's fast and slow stats."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

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
TIMED_EVERY_CUDA = 10  # on CUDA, sections are timed (with a device sync) only every this many steps
TIMINGS = REGISTRY.timings()  # published every step, 0 until a section has been timed

Ballot = Callable[[], list[float]]  # this rank's votes, sent with the step's all-reduce (several ranks)
Tally = Callable[[list[bool]], None]  # whether any rank voted for each, heard back


class Stepper:
    """Exactly one training step per call, on one rank's slice of the global batch; its stats.

    A non-finite loss or gradient norm is never applied: the optimizer step is skipped, the step count
    does not advance, and `alarm` names the step and the stat (until the loop clears it). On several
    ranks one small all-reduce sums loss, accuracy, grad norm and the ranks' votes (`ballot`, `tally`),
    so every rank logs the global batch's loss and takes the same decisions at the same step.

    Stats (every step, one host sync for the per-step scalars): step, tokens, loss, loss_100, loss_1000,
    val_loss and val_bpb (latest), unigram_bpb, perplexity (exp of val_loss, or of loss before the first
    validation), accuracy (argmax token accuracy of the batch), lr (the rate this step used), grad_norm
    (before clipping), tokens_per_s, step_ms, the model's readings (window_weight_k, window_size_k,
    mem1_*/mem2_*, mem2_mix), entropy (mean entropy of the predicted distributions), act_mean, act_std,
    act_inactive (fraction of neuron activations <= 0, i.e. GELU inputs at or below zero), norm_<part>
    (L2 norm of each part's weights), and the Counsellor's t_data, t_forward, t_backward, t_optimizer,
    t_stats (EMA ms). Readings, entropy, activation stats, weight norms and the gate histograms are
    computed every SLOW_STATS_EVERY steps and carried forward."""

    def __init__(self, cfg: Config, engine: Engine, librarian: Librarian, progress: Progress,
                 counsellor: Counsellor, weights_lock: threading.Lock, *, world_size: int, unigram_bpb: float,
                 ballot: Ballot, tally: Tally) -> None:
        self.cfg, self.engine, self.librarian, self.progress = cfg, engine, librarian, progress
        self.counsellor, self.weights_lock, self.world_size = counsellor, weights_lock, world_size
        self.device = engine.device
        self.unigram_bpb = unigram_bpb
        self.ballot, self.tally = ballot, tally
        self.timed_every = TIMED_EVERY_CUDA if counsellor.sync is not None else 1
        self.alarm: str | None = None  # the last step's NaN/inf, until cleared (resume, a save applied)
        self.slow: dict[str, float] | None = None  # the slow stats, carried forward between refreshes
        self.gate_hist: dict[str, tuple[int, ...]] = {}  # refreshed with the slow stats

    def forget(self) -> None:
        """A save was applied: no alarm, and the slow stats are computed afresh at the next step."""
        self.slow = None
        self.alarm = None

    def step(self) -> dict[str, float]:
        """One step: data, forward, backward, clip, optimizer, scheduler; returns its stats."""
        t0 = time.perf_counter()
        t, e, p = self.cfg.train, self.engine, self.progress
        c = self.counsellor
        number = p.step_count + 1
        c.enabled = number % self.timed_every == 0 or self.timed_every == 1
        with c.section("data"):
            x, y = self._batch(t.batch)
        with c.section("forward"):
            loss, correct, logits, acts = e.forward(x, y)
        with c.section("backward"):
            loss.backward()
        lr = e.optimizer.param_groups[0]["lr"]
        with c.section("optimizer"):
            norm = clip_grad_norm_(e.params, t.grad_clip if t.grad_clip > 0 else math.inf)
            loss_v, norm_v, correct_v = self._read(loss, norm, correct)
            ok = math.isfinite(loss_v) and math.isfinite(norm_v)  # the NaN/inf guard
            if ok:
                with self.weights_lock:
                    e.optimizer.step()
                e.scheduler.step()
            e.optimizer.zero_grad(set_to_none=True)
        with c.section("stats"):
            n_tokens = y.numel() * self.world_size
            if ok:
                p.step_count = number
                p.tokens += n_tokens
                p.losses.append(loss_v)
            else:
                bad, value = ("loss", loss_v) if not math.isfinite(loss_v) else ("grad_norm", norm_v)
                self.alarm = f"step {number}: {bad} is {value}"
            if self.slow is None or (ok and number % SLOW_STATS_EVERY == 0):
                self.slow = self._slow_stats(logits, acts)
                self.gate_hist = e.model.gate_histograms(GATE_BINS)
            del logits, acts
            stats = self._stats(number, loss_v, norm_v, correct_v / n_tokens, lr)
        step_ms = (time.perf_counter() - t0) * 1000.0
        if ok:
            p.train_seconds += step_ms / 1000.0
        stats["tokens_per_s"] = n_tokens / max(step_ms / 1000.0, 1e-9)
        stats["step_ms"] = step_ms
        stats.update(self.slow)
        timings = c.timings()
        for key in TIMINGS:
            stats[key] = timings.get(key, 0.0)
        return stats

    def _batch(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's windows of the next global batch, on the device: (inputs, next-token targets)."""
        windows = self.librarian.train_batch(batch)
        if self.device.type == "cuda":
            windows = windows.pin_memory().to(self.device, non_blocking=True)
        elif windows.device != self.device:
            windows = windows.to(self.device)
        return windows[:, :-1], windows[:, 1:]

    def _read(self, loss: torch.Tensor, norm: torch.Tensor, correct: torch.Tensor) -> tuple[float, float, float]:
        """The step's loss, grad norm and correct count on the host (one sync); on several ranks, those of the
        global batch, summed with the ranks' votes in one all-reduce."""
        values = torch.stack([loss.detach().float(), norm.detach().float(), correct.float()])
        if self.world_size == 1:
            loss_v, norm_v, correct_v = values.tolist()
            return loss_v, norm_v, correct_v
        votes = torch.tensor(self.ballot(), device=values.device)
        summed = distributed.reduce_sum(torch.cat([values, votes])).tolist()
        self.tally([v > 0 for v in summed[3:]])
        return summed[0] / self.world_size, summed[1] / self.world_size, summed[2]

    def _stats(self, number: int, loss: float, norm: float, accuracy: float, lr: float) -> dict[str, float]:
        p = self.progress
        recent = list(p.losses)
        loss_100 = sum(recent[-100:]) / len(recent[-100:]) if recent else math.nan
        loss_1000 = sum(recent) / len(recent) if recent else math.nan
        ref = p.val_loss if math.isfinite(p.val_loss) else loss
        return {
            "step": number,
            "tokens": p.tokens,
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
    def _slow_stats(self, logits: torch.Tensor, acts: torch.Tensor) -> dict[str, float]:
        model = self.engine.model
        out = dict(model.readings())
        logp = torch.log_softmax(logits.detach().float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        a = acts.detach().float()
        values = [entropy, a.mean(), a.std(), (a <= 0).float().mean()]
        for part in PARTS:
            params = [q.detach().float() for q in getattr(model, part).parameters()]
            values.append(torch.sqrt(sum((q * q).sum() for q in params)))
        names = ["entropy", "act_mean", "act_std", "act_inactive"] + [NORM.format(part=p) for p in PARTS]
        out.update(zip(names, torch.stack(values).tolist(), strict=True))
        return out
