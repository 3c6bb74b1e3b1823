"""A deterministic stand-in for the Tutor: fixed stats, history and events, and a record of every call.

Used by the tests and by ``python -m tui.fake`` (a cockpit demo without torch training).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

from babyllm import live
from babyllm.config import Config, ModelConfig
from babyllm.control import DEFAULT_BY
from babyllm.snapshot import Event, History, Publish, Sample, Snapshot, State
from babyllm.stats import MEMORIES, REGISTRY, WINDOW_SIZE, WINDOW_WEIGHT

WINDOW_SIZES = (2.0, 3.1, 5.2, 8.4, 15.7, 31.0, 62.5)
WINDOW_WEIGHTS = (0.09, 0.21, 0.18, 0.16, 0.14, 0.12, 0.10)
BYTES_PER_TOKEN = 3.3
UNIGRAM_BPB = 2.45
FAKE_MODEL = ModelConfig(windows=list(WINDOW_SIZES))  # the registry's {i} stats: one per fake window
OTHER_VALUE = 0.5  # a registered stat this file gives no value of its own


def fake_stats(step: int) -> dict[str, float]:
    """Plausible values of every registered stat for a step, a pure function of the step number."""
    loss = 2.2 + 5.4 * math.exp(-step / 180) + 0.15 * math.sin(step / 7)
    values = {
        "step": float(step), "tokens": float(step * 1024), "loss": loss, "loss_100": loss + 0.05,
        "loss_1000": loss + 0.2, "val_loss": loss + 0.12, "perplexity": math.exp(loss),
        "accuracy": max(0.0, 0.45 - loss / 20), "lr": 2e-3 * min(1.0, step / 50),
        "grad_norm": 0.8 + 0.1 * math.cos(step),
        "tokens_per_s": 5120.0 + 10 * math.sin(step), "step_ms": 200.0, "train_s": step * 0.2,
        # bits per byte of the held-out text (about 3.3 bytes a token) and its unigram reference
        "val_bpb": (loss + 0.12) / math.log(2) / BYTES_PER_TOKEN, "unigram_bpb": UNIGRAM_BPB,
        "mem2_mix": 0.5, "entropy": loss * 0.9, "act_mean": 0.12, "act_std": 0.4, "act_inactive": 0.31,
        "norm_embed": 45.2, "norm_neurons": 31.9, "norm_windows": 1.2, "norm_memory1": 8.8,
        "norm_memory2": 8.7, "norm_logits": 60.3, "t_data": 4.0, "t_forward": 70.0,
        "t_backward": 100.0, "t_optimizer": 20.0, "t_stats": 6.0,
    }
    for i, (size, weight) in enumerate(zip(WINDOW_SIZES, WINDOW_WEIGHTS, strict=True)):
        values[REGISTRY.key(WINDOW_WEIGHT, i)] = weight + 0.01 * math.sin(step / 40 + i)
        values[REGISTRY.key(WINDOW_SIZE, i)] = size
    for m in MEMORIES:
        values.update({f"{m}_decay_short": 0.5, f"{m}_decay_long": 0.95, f"{m}_gate_short": 0.25,
                       f"{m}_gate_long": 0.25, f"{m}_gate_input": 0.3, f"{m}_gate_proj": 0.2})
    return {name: values.get(name, OTHER_VALUE) for name in REGISTRY.names(FAKE_MODEL)}


# The training process's readings (babyllm.system.READINGS): a CPU machine's, and what NVML adds on CUDA
FAKE_CPU_SYSTEM = {"cpu_percent": 187.0, "cpu_cores": 2.0, "rss_gib": 1.23, "mem_total_gib": 31.2,
                   "mem_available_gib": 20.4}
FAKE_GPU_SYSTEM = {"gpu_util": 87.0, "gpu_mem_used_gib": 12.3, "gpu_mem_total_gib": 79.6, "gpu_temp_c": 61.0,
                   "gpu_power_w": 312.0}
FAKE_SYSTEM = {**FAKE_CPU_SYSTEM, **FAKE_GPU_SYSTEM}

SAMPLE = Sample(
    step=300,
    context="The kettle sang and we sat by the window",
    guesses=(" the", " was", " and", " the", " down", " the", " the", " the", "."),
    truths=(" kettle", " sang", " and", " we", " sat", " by", " the", " window", "."),
)


class FakeChat:
    """A canned chat session (the ChatSession protocol): every reply is the same few words."""

    REPLY = (" the", " kettle", " sang", ".")

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.hit_limit = False

    def stream(self, prompt: str) -> Iterator[str]:
        yield from self.REPLY

    def command(self, line: str) -> str:
        return "demo: no settings to change"


class FakeTutor:
    """Implements TutorControl with canned, deterministic data; ``calls`` records every request."""

    def __init__(self, steps: int = 300, max_steps: int = 1000, publish: Publish | None = None,
                 state: State = "running", run_dir: str = "runs/demo", events: tuple[Event, ...] | None = None,
                 system: dict[str, float] | None = None, max_minutes: float = 0.0) -> None:
        self.system = dict(FAKE_SYSTEM if system is None else system)
        self.history = History()
        for s in range(1, steps + 1):
            stats = fake_stats(s)
            if s % 50:
                stats.pop("val_loss")
                stats.pop("val_bpb")
            self.history.add(s, stats)
        self.step = steps
        self.max_steps, self.max_minutes = max_steps, max_minutes
        self.state: State = state
        self.error: str | None = None
        self.publish = publish
        self.calls: list[str] = []
        self.asked_by: list[str] = []  # who asked, for each control request in calls
        self.debug_lines: list[str] = []
        self.run_dir = run_dir
        self.events = events if events is not None else (
            Event(100, "val", "val loss 3.912 (best)", 0.0),
            Event(200, "val", "val loss 3.107 (best)", 0.0),
            Event(250, "save", "saved step 250 to runs/demo/save-00000250", 0.0),
            Event(300, "checkpoint", "saved step 300 to runs/demo/checkpoint-00000300", 0.0),
        )
        self.last_saved_step: int | None = 250
        self.last_save_path: str | None = None  # (the demo run has no folder)
        self.last_save_error: str | None = None
        self._cfg = Config()  # the settings set_settings changes (babyllm.live)
        self.overrides: dict[str, object] = {}
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(step=self.step, tokens=self.step * 1024, state=self.state, stats=fake_stats(self.step),
                            max_steps=self.max_steps, max_minutes=self.max_minutes, sample=SAMPLE, events=self.events,
                            event_count=len(self.events),
                            error=self.error, device="cpu", config_name="cpu", run_dir=self.run_dir,
                            last_save_step=self.last_saved_step, last_save_path=self.last_save_path,
                            last_save_error=self.last_save_error, system=dict(self.system),
                            overrides=dict(self.overrides),
                            settings={k: live.get(self._cfg, k) for k in live.LIVE_KEYS})

    def chat_session(self) -> FakeChat:
        self._record("chat_session")
        return FakeChat()

    def _record(self, name: str, by: str | None = None) -> None:
        with self._lock:
            self.calls.append(name)
            if by is not None:
                self.asked_by.append(by)

    def pause(self, by: str = DEFAULT_BY) -> None:
        self._record("pause", by)
        self.state = "paused"

    def resume(self, by: str = DEFAULT_BY) -> None:
        self._record("resume", by)
        self.state = "running"

    def request_save(self, by: str = DEFAULT_BY) -> None:
        self._record("request_save", by)

    def request_checkpoint(self, by: str = DEFAULT_BY) -> None:
        self._record("request_checkpoint", by)

    def rollback(self, by: str = DEFAULT_BY) -> None:
        self._record("rollback", by)
        self.state = "paused"

    def stop(self, by: str = DEFAULT_BY) -> None:
        self._record("stop", by)
        self._stopped.set()

    def debug_log(self, text: str) -> None:
        self.debug_lines.append(text)

    def set_settings(self, items: Sequence[tuple[str, str]], by: str = DEFAULT_BY) -> None:
        """Checked as the Tutor checks them (ConfigError at once), applied at once to the defaults' copy."""
        checked = live.check(self._cfg, items)
        for key, value in checked:
            live.put(self._cfg, key, value)
        self._record("set_settings", by)
        with self._lock:
            self.overrides.update(checked)

    def raise_alarm(self, message: str = "loss is nan at step 300: step skipped") -> Snapshot:
        """Switch to the NaN-alarm state (as the real Tutor does) and return the snapshot."""
        with self._lock:
            self.state = "alarm"
            self.error = message
            self.events = (*self.events, Event(self.step, "alarm", message, 0.0))
        return self.snapshot()

    def run(self) -> State:
        if self.publish is not None:
            self.publish(self.snapshot())
        self._stopped.wait()
        self.state = "stopped"
        return "stopped"


def main() -> None:
    """Show the cockpit on fake data (no training): ``python -m tui.fake``."""
    from tui.app import CockpitApp

    CockpitApp(lambda publish, say: FakeTutor(publish=publish), subtitle="demo · fake data").run()


if __name__ == "__main__":
    main()
