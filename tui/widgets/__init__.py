"""The cockpit's panes, one module each."""

from tui.widgets.chat import ChatPane
from tui.widgets.events import EventsPane
from tui.widgets.loss import LossPane
from tui.widgets.sample import SamplePane
from tui.widgets.stats import StatsPane
from tui.widgets.status import StatusBar
from tui.widgets.system import SystemPane
from tui.widgets.timing import TimingPane
from tui.widgets.windows import WindowsPane

__all__ = ["ChatPane", "EventsPane", "LossPane", "SamplePane", "StatsPane", "StatusBar", "SystemPane", "TimingPane",
           "WindowsPane"]
