"""The build and schedule: model, optimizer, the module steps run through (DDP, compile), LR schedule, budget clock."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from babyllm.config import Config
from babyllm.model import gemm
from babyllm.model.network import BabyLLM, next_token_loss
from babyllm.model.runtime import autocast
from babyllm.school.optimizers import decay_groups, make_optimizer
from babyllm.school.progress import Progress

# torch 2.13's CPU compiler (inductor) gives this model NaN gradients in bf16 (Memory 2's decays and gates,
# measured; tests/test_step_paths.py checks it still does), while eager bf16 and compiled fp32 are right: so a
# bf16 CPU run trains eagerly. (CUDA compiles through Triton instead; tests/test_cuda.py compares its gradients.)
CPU_BF16_COMPILE = ("train.compile = true is not used: on a CPU in bf16, torch's compiler gets this model's "
                    "gradients wrong (NaN); training eagerly (train.dtype = fp32 compiles)")


def lr_multiplier(step: int, warmup: int, total: int, lr: float, min_lr: float,
                  fraction: float | None = None) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to min_lr at step `total` (flat after).

    With a time budget, `fraction` (of the budget's training time used) replaces the step count's progress.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup)) if fraction is None else min(1.0, fraction)
    return (min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))) / lr


class _Runner(torch.nn.Module):
    """The model's training forward as a plain module returning (logits, acts), for DDP to wrap."""

    def __init__(self, model: BabyLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.model.run(ids, train=True)
        return p.logits, p.acts


class Engine:
    """The model and what trains it, seeded from train.seed; the schedule reads the live config.

    `forward(x, y)` is the training forward (loss, correct-token count, logits, activations) through
    `train_module`: the model itself, DistributedDataParallel around it on several ranks, torch.compile'd
    when asked (see wrap). `self.model` stays the eager module sharing its parameters (validation,
    samples, chat and saves use it)."""

    def __init__(self, cfg: Config, device: torch.device, dtype: str, world_size: int, progress: Progress) -> None:
        self.cfg, self.device, self.dtype, self.world_size = cfg, device, dtype, world_size
        self.progress = progress
        t = cfg.train
        torch.manual_seed(t.seed)
        random.seed(t.seed)
        self.model = BabyLLM(cfg.model).to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, t, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: self.lr_multiplier(s))
        self.train_module: torch.nn.Module = self.model
        self.forward: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]] = self._forward

    def wrap(self) -> None:
        """The module training steps run through (after a resume has put the save's weights in): DDP on several
        ranks (its construction checks the ranks' parameters agree), then torch.compile'd when asked."""
        if self.world_size > 1:
            cuda = self.device.type == "cuda"
            self.train_module = DistributedDataParallel(
                _Runner(self.model), device_ids=[self.device.index] if cuda else None,
                output_device=self.device.index if cuda else None)  # (no buffers to broadcast)
        self.forward = torch.compile(self._forward) if self.compiled else self._forward

    @property
    def compiled(self) -> bool:
        """train.compile as run: "auto" compiles on CUDA only (on CPU the compiled step measured slower); never
        bf16 on a CPU, where torch's compiler gets the gradients wrong (CPU_BF16_COMPILE)."""
        asked = self.cfg.train.compile
        if self.device.type == "cpu" and self.dtype == "bf16":
            return False
        return asked if isinstance(asked, bool) else self.device.type == "cuda"

    def sync_grads(self, last: bool) -> contextlib.AbstractContextManager:
        """Around a micro-batch's forward and backward: on several ranks, gradients are all-reduced only with the
        last micro-batch of a step (DDP's no_sync for the others)."""
        no_sync = getattr(self.train_module, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

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

    # --- the schedule and the budget clock --------------------------------------------------------

    def lr_multiplier(self, step: int) -> float:
        """The schedule at `step`, read from the live config (a changed train.lr or warmup counts at once)."""
        t = self.cfg.train
        total = t.steps if t.steps > 0 else t.decay_steps
        return lr_multiplier(step, t.warmup, total, t.lr, t.min_lr, self.budget_used())

    def sync_optimizer(self, reschedule: bool) -> None:
        """Make the optimizer follow the config: weight decay on the decay group, the schedule's base rate;
        with `reschedule`, the rate for the next step recomputed (a schedule setting changed)."""
        t, groups = self.cfg.train, self.optimizer.param_groups
        for g in decay_groups(self.optimizer):
            g["weight_decay"] = t.weight_decay
        if self.scheduler.base_lrs != [t.lr] * len(groups):
            reschedule = True  # e.g. resumed with --set train.lr=...
        if not reschedule:
            return
        self.scheduler.base_lrs = [t.lr] * len(groups)
        multiplier = self.lr_multiplier(self.scheduler.last_epoch)
        for g in groups:
            g["initial_lr"] = t.lr
            g["lr"] = t.lr * multiplier

    def unstep(self) -> None:
        """Take back one scheduler step (its optimizer step was refused): the next step gets the rate again."""
        self.scheduler.last_epoch -= 1
        self.sync_optimizer(reschedule=True)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def budget_used(self) -> float | None:
        """The fraction of `train.minutes` the training clock has used; None without a time budget."""
        minutes = self.cfg.train.minutes
        return self.progress.train_seconds / (minutes * 60.0) if minutes > 0 else None

    def done(self) -> bool:
        """Whether train.steps or the time budget (train.minutes of training clock) is reached."""
        t, p = self.cfg.train, self.progress
        return bool(t.steps and p.step_count >= t.steps) or bool(t.minutes and p.train_seconds >= t.minutes * 60)

    def needs_model_after(self, n: int) -> bool:
        """Whether the loop needs the model as of step n once it is taken (validation, a sample, a save, the end):
        the stepper then reads step n before queueing the next."""
        t = self.cfg.train
        return (n % t.eval_every == 0 or n % t.sample_every == 0 or bool(t.save_every and n % t.save_every == 0)
                or bool(t.steps and n >= t.steps))

    def how_it_runs(self) -> str | None:
        """A note for the event log on how the steps will run (None: nothing worth saying)."""
        if self.compiled:
            return "torch.compile: the first steps compile the model (this can take a minute)"
        if self.cfg.train.compile is True and self.device.type == "cpu" and self.dtype == "bf16":
            return CPU_BF16_COMPILE
        if self.device.type == "cpu" and self.dtype == "fp32" and gemm.onednn_fp32():
            return f"fp32 matmuls through oneDNN (faster than torch.mm here; {gemm.MATMUL_ENV}=torch to compare)"
        return None
