"""TUTOR: the training loop for one run; runs in its own thread, steered through TutorControl.

`Tutor.run()` trains until stopped, `train.steps` (or the `train.minutes` budget) is reached, or an alarm;
`Tutor._loop` is one iteration, top to bottom. The Tutor holds its parts, each in its own module:

    progress  where the run stands (steps, tokens, the training clock, losses, validation, the last save)
    handout   the corpus across ranks (the Librarian)
    engine    model, optimizer, the DDP/compile wrapper, the LR schedule and the budget clock
    stepper   one step: data, forward, backward, clip, the NaN/inf guard, optimizer, fast and slow stats
    examiner  validation and bits per byte, samples, the held-out score
    saves     what a save holds, writing one, applying one (resume, rollback)
    steering  the request queue, the ranks' votes, live changes, the alerts and the stall watchdog
    recorder  records, events, state and publishing: run files, TensorBoard, the Board, the control socket

Threads: other threads steer the Tutor only through the TutorControl methods (pause, resume, request_save,
request_checkpoint, rollback, stop) and set_settings (babyllm.live.LIVE_KEYS; checked at once): each
queues a request and returns at once; the loop acts on requests between steps. The Tutor never waits on
a reader and never calls UI code: it publishes immutable Snapshots (at most every `publish_every`
seconds, and at once on a state change or event) and appends every step's stats to the bounded
`history`. Rank 0 judges the alerts (the [alerts] config) after each step and validation; a watchdog
thread raises a stall from outside a stuck step, so events, state changes and publishing take the
recorder's lock. Chat replies take `weights_lock`, which the optimizer step holds.

Several ranks (torchrun; babyllm.school.distributed must be initialised first): the model trains through
DistributedDataParallel (`model` stays the eager module sharing its parameters) on each rank's slice of one
global batch (train.batch x train.accumulate x world_size windows); rank 0 prepares the tokenizer, picks the
save to resume from and sends both on, and alone writes files (babyllm.run.runfiles), validates and samples.
The stepper's one all-reduce a step keeps the ranks' losses, guard decisions, stops and pauses in step. A
failed collective (a lost rank) ends the run with state "error" and a line naming the last save.

On one CUDA device the loop reads a step's stats once the next step is queued (the stepper's overlap), except
where it needs the model as of that step (Engine.needs_model_after: validation, samples, saves, the end; and
requests). The stats themselves are listed by babyllm.school.stepper.Stepper.
"""

from __future__ import annotations

import math
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from babyllm import live
from babyllm.config import Config
from babyllm.control import DEFAULT_BY, WAITING, Controls, Request
from babyllm.errors import BabyError, ConfigError
from babyllm.infer2 import Infer2, Settings
from babyllm.model import bpb, footprint, peaks
from babyllm.model.runtime import apply_precision, choose_precision, cuda_name, pick_device
from babyllm.run import rundir, runfiles
from babyllm.school import batching, distributed, soul
from babyllm.school.counsellor import Counsellor, cuda_sync
from babyllm.school.engine import Engine
from babyllm.school.examiner import Examiner
from babyllm.school.handout import hand_out
from babyllm.school.librarian import ProgressFn
from babyllm.school.progress import Progress
from babyllm.school.recorder import Recorder
from babyllm.school.saves import Saves
from babyllm.school.steering import Steering
from babyllm.school.stepper import Stepper
from babyllm.snapshot import Corpus, Publish, Sample, Say, Snapshot, State
from babyllm.system import SystemSampler


class Tutor(Controls):
    """The training loop for one run (implements babyllm.snapshot.TutorControl)."""

    def __init__(self, cfg: Config, run_dir: Path, *, resume: bool = False,
                 publish: Publish | None = None, publish_every: float = 0.25,
                 say: Say | None = None, rank: int = 0, world_size: int = 1,
                 progress: ProgressFn | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        t = cfg.train
        if not 0 <= t.seed < 2**63:  # torch's generators take 64 bits; say so rather than overflow
            raise ConfigError(f"train.seed {t.seed}: must be a whole number from 0 to {2**63 - 1}")
        if world_size > 1 and distributed.world_size() != world_size:
            raise BabyError(f"world_size {world_size} needs torch.distributed set up with that many ranks "
                            "(babyllm.school.distributed.init_from_env under torchrun)")
        self.device = pick_device(t.device)
        if world_size > 1 and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", distributed.local_rank())
        self.precision = choose_precision(t.dtype, self.device, t.tf32)  # "auto" settled once, on this device
        self.dtype = self.precision.dtype
        apply_precision(self.precision)
        self.weights_lock = threading.Lock()
        self.progress = Progress()
        self.counsellor = Counsellor(enabled=True, sync=cuda_sync(self.device),  # (it opens debug.log lazily)
                                     log_path=self.run_dir / runfiles.DEBUG_LOG if self.is_main else None)
        # rank 0's process and machine in every snapshot (an attached cockpit shows the training side's) and the logs
        self._system = SystemSampler(str(self.device)) if self.is_main else None
        self.recorder = Recorder(self.run_dir, self.progress, main=self.is_main, publish=publish,
                                 publish_every=publish_every, log=self.counsellor.log, system=self._system)
        self.history = self.recorder.history
        self._sample: Sample | None = None

        self._claim: rundir.Claim | None = None
        try:
            footprint.check(cfg, self.device, world_size)  # a config too big for the machine: one line, nothing made
            if self.is_main:  # one owner per run: taken before anything in the run directory is touched
                self._claim = rundir.claim(self.run_dir, resume)
                soul.clean_temp(self.run_dir)
            self._build(resume, progress)
        except BaseException:  # (a mistake, e.g. an empty corpus, or a signal: no half-made run is left behind)
            claim, self._claim = self._claim, None
            self.close()
            if claim is not None:
                claim.abandon()  # a directory this start made goes, before its lock does
            raise

    def _build(self, resume: bool, progress: ProgressFn | None) -> None:
        """The parts, in the order their side effects need (logs, corpus, seeded model, the save resumed from,
        the DDP wrapper); ends with the first snapshot. A new run starts its logs afresh, a resumed one appends."""
        cfg, rec, world, mode = self.cfg, self.recorder, self.world_size, "a" if resume else "w"
        rec.open_events(mode)
        self.counsellor.log(f"tutor start: config {cfg.name}, device {self.device}, resume={resume}")
        if self.is_main:
            rec.write_header(runfiles.Header.now(cfg.name, str(self.device), self.dtype, torch.__version__, resume,
                                                 world))
        self.librarian = hand_out(cfg, self.run_dir, resume, rank=self.rank, world_size=world,
                                  say=self._corpus_warning, progress=progress)
        train_tokens = len(self.librarian.train_tokens)
        settled = distributed.share(lambda: batching.settle(cfg, self.device, self.dtype, train_tokens, world))
        cfg.train.batch = settled.batch  # (the saves keep the number: a resume trains on with it)
        self.global_batch = settled.batch * cfg.train.accumulate * world
        shape = batching.global_batch_text(settled.batch, cfg.train.accumulate, world, cfg.model.context)
        # said as it starts: how it computes and why
        self._setup: tuple[str, ...] = (f"precision: {self.precision.reason}", f"{settled.reason}; {shape}")
        self.engine = Engine(cfg, self.device, self.dtype, world, self.progress)
        self.model, self.optimizer = self.engine.model, self.engine.optimizer  # (the engine keeps both for good)
        self.exam = Examiner(cfg, self.engine.model, self.librarian, self.progress, device=self.device,
                             dtype=self.dtype, world_size=world, event=rec.event)
        self.steering = Steering(cfg, self.progress, main=self.is_main, world_size=world, device=self.device,
                                 state=lambda: rec.state, set_state=rec.set_state, event=rec.event,
                                 resume=self._resume, save=self.save, rollback=self._rollback,
                                 reconfigure=self.engine.sync_optimizer)
        self.stepper = Stepper(cfg, self.engine, self.librarian, self.progress, self.counsellor, self.weights_lock,
                               world_size=world, unigram_bpb=self.exam.unigram_bpb,
                               ballot=self.steering.ballot, tally=self.steering.tally)
        if self.stepper.resident:
            self._setup += (f"corpus: the training split stays on {self.device} ({train_tokens:,} tokens), "
                            "each step's windows gathered there",)
        self.saves = Saves(self.run_dir, cfg, self.engine, self.librarian, self.progress, self.weights_lock,
                           main=self.is_main, rank=self.rank, world_size=world, live=self.steering.saved_changes,
                           event=rec.event, log=self.counsellor.log)
        discarded = False
        if resume:  # every rank applies the save rank 0 picked; History and events come from the run's logs
            loaded = self.saves.resume_newest(say=self._fallback_note)
            self.steering.restore_changes(loaded.meta.get("live"))
            discarded = rec.replay(loaded.step)
            rec.event("info", f"resumed from {loaded.path.name} (step {loaded.step})")
        self.engine.wrap()
        rec.open_metrics(mode, self.progress.step_count, discarded, cfg)
        lib = self.librarian
        self._corpus = Corpus(str(lib.root), len(lib.train_tokens), len(lib.val_tokens))
        self._param_count = sum(p.numel() for p in self.model.parameters())
        self.peak = peaks.peak_for(self.device, self.dtype, self.precision.tf32,
                                   cuda_name(self.device) if self.device.type == "cuda" else "")
        self.stepper.mfu = (self.model.train_flops_per_token(), self.peak.flops)
        self._epoch = batching.EpochWatch(train_tokens)
        rec.start_publishing(self._fields)

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> State:
        """Train until stop(), train.steps or an alarm followed by stop(); returns the final state.

        "finished" (train.steps reached), "stopped", "alarm" (stopped while the alarm was up) or
        "error" (an unexpected exception; snapshot().error has it). Saves on the way out (rank 0).
        """
        self.recorder.serve(self, self.world_size)
        watchdog = self.steering.start_watchdog()
        try:
            final = self._train()
            self.recorder.set_state(final)  # (subscribers get this last snapshot before the socket closes)
        finally:
            self.steering.stop_watchdog(watchdog)
            self.recorder.unserve()
        self.close()
        return final

    def _train(self) -> State:
        """run()'s body: the loop and the save on the way out; the final state (never raising)."""
        p, rec = self.progress, self.recorder
        try:
            rec.set_state("running")
            for line in self._setup:  # the run's first lines: how it computes and why
                rec.event("info", line)
            note = self.engine.how_it_runs()
            if note is not None:
                rec.event("info", note)
            rec.event("info", f"mfu: against the {self.peak.source} peak, {self.peak.flops / 1e12:.3g} TFLOP/s")
            if self.is_main and not math.isfinite(p.val_loss):
                self._validate()
            final = self._loop()
            rec.set_state("stopping")
            if p.last_saved_step != p.step_count or p.last_save_path is None:
                self.save()
            distributed.barrier()  # every rank waits for rank 0's save, then all exit together
            return final
        except Exception as e:  # the loop must report, never vanish silently
            self._crashed(e)
            return "error"

    def _loop(self) -> State:
        """One iteration a turn until stopped or done; the state to end in."""
        steering, rec, stepper = self.steering, self.recorder, self.stepper
        while True:
            asked = steering.requests.take()  # queued by any thread since the last turn
            if asked or steering.stopping or self.engine.done():
                self._after(stepper.drain())  # (they act on the model as of the last step queued)
            steering.act(asked)
            if steering.stopping:
                return "alarm" if rec.state == "alarm" else "stopped"
            if rec.state in WAITING:  # paused, or the alarm is up: until resume, rollback or stop
                rec.publish()
                steering.idle()
                continue
            if self.engine.done():  # train.steps or the time budget
                return "finished"
            # One step (on CUDA left in flight, read once the next is queued, unless this one's model is needed)
            self._after(stepper.step(overlap=not self.engine.needs_model_after(stepper.next_number)))
            steering.stepped()
            rec.publish()

    def _after(self, landed: list[dict[str, float]]) -> None:
        """Each step read: validate when due, record, then the alarm, or the alerts, sample and save when due."""
        t, rec, steering = self.cfg.train, self.recorder, self.steering
        for stats in landed:
            steering.settle()  # several ranks: the live changes agreed in this step
            n, alarm = self.progress.step_count, self.stepper.alarm
            # validated every eval_every steps, and at the last step of a run that reached its limit (so
            # best val, best/ and the final save describe the model the steps or the budget produced)
            if alarm is None and self.is_main and (n % t.eval_every == 0 or self.engine.done()):
                self._validate(stats["loss_100"])  # before recording, so this step's stats carry it
                stats.update(self.exam.latest())
            rec.record(stats)
            if alarm is not None:
                rec.alarm(alarm, "the step was not applied, training paused")
                continue
            steering.judge_step(n, stats)  # the alerts
            if self.is_main and n % t.sample_every == 0:
                self._sample = self.make_sample()
                rec.write_sample(self._sample)
            if t.save_every and n % t.save_every == 0:
                self.save()
            steering.pause_if_agreed()  # several ranks: every rank pauses after the same step
            warning = self._epoch.check(n, stats["tokens_per_s"]) if self.is_main else None
            if warning is not None:
                rec.event("info", f"warning: {warning}")

    def _validate(self, train_loss: float = math.nan) -> None:
        """Validate now (rank 0); a new best goes to best/. `train_loss` is for the overfitting alert."""
        val, new_best = self.exam.examine()
        if new_best:
            self.saves.keep_best(val)
        self.steering.judge_validation(self.progress.step_count, val, train_loss)

    def _resume(self) -> None:
        rec = self.recorder
        if rec.state == "alarm":
            rec.event("info", "resumed after the alarm (the bad step was not applied)")
            rec.reopen()
        self.stepper.alarm = rec.error = None
        rec.set_state("running")

    def _rollback(self) -> None:
        """Back to the newest save that applies, paused: the logs and plots keep only the live branch."""
        rec = self.recorder
        try:
            loaded = self.saves.load_newest(say=lambda m: rec.event("error", m))
        except BabyError as e:
            rec.event("error", f"rollback failed: {e}")
            return
        self.stepper.forget()  # (its alarm and slow stats belong to the branch left behind)
        rec.rewind(loaded.step)
        rec.event("info", f"rolled back to {loaded.path.name} (step {loaded.step}); paused")
        rec.set_state("paused")

    def _crashed(self, e: Exception) -> None:
        if self.world_size > 1 and distributed.is_comm_failure(e):
            error = distributed.lost_contact(e, self.progress.last_saved_step)
        else:
            error = f"step {self.progress.step_count}: {type(e).__name__}: {e}"
        self.recorder.error = error
        self.counsellor.log("".join(traceback.format_exception(e)))
        self.recorder.event("error", error)

    def _corpus_warning(self, message: str) -> None:
        self.say(f"warning: {message}")  # now (a large corpus takes minutes to prepare), and in the log
        self.recorder.event("info", message, said=True)

    def _fallback_note(self, message: str) -> None:
        self.say(message)
        self.recorder.event("error", message, said=True)

    def _fields(self) -> dict[str, Any]:
        """The Snapshot's fields (the recorder's board adds the recent events)."""
        p, rec = self.progress, self.recorder
        path = p.last_save_path
        return dict(
            step=p.step_count, tokens=p.tokens, state=rec.state, stats=rec.last_stats,
            max_steps=self.cfg.train.steps, max_minutes=self.cfg.train.minutes, sample=self._sample, error=rec.error,
            device=str(self.device),
            config_name=self.cfg.name, run_dir=str(self.run_dir), dtype=self.dtype, params=self._param_count,
            corpus=self._corpus, best_val=p.best_val, best_val_step=p.best_val_step,
            last_save_step=p.last_saved_step, last_save_path=str(path) if path is not None else None,
            last_save_error=p.last_save_error,
            system=self._system.read() if self._system is not None else {},
            overrides={k: now for k, (_, now) in self.steering.changes.items()},
            settings={k: live.get(self.cfg, k) for k in live.LIVE_KEYS}, gate_hist=self.stepper.gate_hist,
            global_batch=self.global_batch)

    # --- what callers use (besides run): the parts' work, from the Tutor's thread or when it is not running

    def step(self) -> dict[str, float]:
        """Exactly one training step; its stats. A NaN/inf step is not applied and sets `stepper.alarm`."""
        landed = self.stepper.drain() + self.stepper.step()
        return landed[-1]

    def validate(self) -> float:
        """Mean loss over the fixed validation batches (same batches every time)."""
        return self.exam.validate()

    def make_sample(self) -> Sample:
        """The model's argmax guess versus the true next token on a validation snippet."""
        return self.exam.make_sample(self.progress.step_count)

    def score_held_out(self) -> bpb.Score:
        """The model's bits per byte on all the held-out text as it is now (`babyllm bench --quality`)."""
        return self.exam.score_held_out()

    def save(self, kind: str = "save") -> Path | None:
        """Write a "save", "checkpoint" or "best" now; None if not written (a failure is an event)."""
        self.recorder.before_save()  # (metrics.jsonl holds every step a save has, before the save exists)
        return self.saves.save(kind)

    def budget_used(self) -> float | None:
        """The fraction of `train.minutes` the training clock has used; None without a time budget."""
        return self.engine.budget_used()

    def snapshot(self) -> Snapshot:
        return self.recorder.snapshot()

    def chat_session(self, settings: Settings | None = None) -> Infer2:
        """A conversation with the model as it trains (replies take the weights lock between optimizer steps)."""
        return Infer2(self.model, self.librarian.tokenizer, settings or Settings.from_config(self.cfg.chat),
                      lock=self.weights_lock)

    def _request(self, what: Request, by: str) -> None:  # (pause, resume, ... from Controls)
        self.steering.requests.put(what, by)

    def set_settings(self, items: Sequence[tuple[str, str]], by: str = DEFAULT_BY) -> None:
        """Queue live changes, (key, text as after --set KEY=) each (babyllm.live.LIVE_KEYS), applied together
        at the next step boundary; raises ConfigError at once, queueing none of them, for a bad value or a
        key that cannot change mid-run (the same one-line error as --set)."""
        self.steering.requests.put("set", by, live.check(self.cfg, items))

    def debug_log(self, text: str) -> None:
        """Append a line to the run's debug.log (the Counsellor owns that file)."""
        self.counsellor.log(text)

    # --- where the run stands (kept by the parts) -------------------------------------------------

    state = property(lambda self: self.recorder.state, doc="The run's state (the recorder keeps it).")
    step_count = property(lambda self: self.progress.step_count, doc="Steps applied.")
    tokens = property(lambda self: self.progress.tokens, doc="Tokens trained on, over all ranks.")
    train_seconds = property(lambda self: self.progress.train_seconds, doc="The training clock.")
    val_loss = property(lambda self: self.progress.val_loss, doc="The latest validation loss.")
    best_val = property(lambda self: self.progress.best_val, doc="The lowest validation loss so far.")
    best_val_step = property(lambda self: self.progress.best_val_step, doc="The step of best_val.")
    last_saved_step = property(lambda self: self.progress.last_saved_step, doc="The last save's step.")
    last_save_path = property(lambda self: self.progress.last_save_path, doc="The last save's folder.")
    last_save_error = property(lambda self: self.progress.last_save_error, doc="Why the last save failed.")

    def close(self) -> None:
        """Flush and close the run's files and let the run go (run() does this on the way out)."""
        self.recorder.close()
        self.counsellor.close()
        if self._claim is not None:
            self._claim.lock.release()
            self._claim = None

    def __enter__(self) -> Tutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
