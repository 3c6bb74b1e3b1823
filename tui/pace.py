"""Pace: how often the cockpit updates, stretched so the UI thread's CPU use stays near a budget.

Pane text is refreshed at most every PANES_EVERY seconds and plots at most every pane's REDRAW_EVERY
(loss 1 s, windows 2 s): the UI thread's CPU use is what the cockpit costs training. Pace stretches
those intervals when the UI thread uses more than its share of a core (all seven panes on a large
terminal, training on a small CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable

TICK = 0.1  # s between checks for due pane updates and plot redraws (cheap when nothing is due)
PANES_EVERY = 0.4  # s: pane text updates at most ~2.5 times a second
# The UI thread's share of one core that Pace aims for: on a CPU the cores are training's (measured on
# 2 cores: the UI's share costs training about two thirds of it); a GPU run leaves the CPU mostly idle.
UI_BUDGET_CPU = 0.04
UI_BUDGET_GPU = 0.25


def budget_for(device: str) -> float:
    """The UI thread's CPU budget next to training on this device ("cpu", "cuda:0", "" = not known yet)."""
    return UI_BUDGET_CPU if (device or "cpu").startswith("cpu") else UI_BUDGET_GPU


class Pace:
    """Stretches the cockpit's update intervals so the UI thread's CPU use stays near a budget.

    Updates cost about in proportion to their rate, so every PERIOD the stretch moves
    (damped, by a geometric mean) towards stretch * used / budget, within [1, MAX_STRETCH].
    """

    MAX_STRETCH = 8.0
    PERIOD = 1.0  # s between measurements

    def __init__(self, budget: float, cpu_clock: Callable[[], float] = time.thread_time,
                 wall_clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.stretch = 1.0
        self._cpu_clock, self._wall_clock = cpu_clock, wall_clock
        self._cpu, self._wall = cpu_clock(), wall_clock()

    def update(self) -> None:
        """Call from the UI thread (the CPU clock is that thread's)."""
        wall = self._wall_clock()
        if wall - self._wall < self.PERIOD:
            return
        cpu = self._cpu_clock()
        used = (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        wanted = self.stretch * used / self.budget
        self.stretch = min(self.MAX_STRETCH, max(1.0, (self.stretch * wanted) ** 0.5))

    def due(self, last: float, every: float) -> bool:
        """Whether `every` seconds (stretched) have passed since `last` (monotonic)."""
        return time.monotonic() - last >= every * self.stretch - 0.05
