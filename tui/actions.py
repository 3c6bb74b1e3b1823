"""The cockpit's one table of actions: the bindings (the app's, each dialog's and the chat input's), the
footer, the help screen, the command palette, the README's keys table and every text that names a key are
all generated from ACTIONS (and the pane keys from tui.panes.PANES). A row with a ``target`` is a pane's
action: the app runs it on that pane (harlequin's Action.target)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.actions import parse
from textual.binding import Binding

from tui.keys import KEY_NAMES, Action, Keys, Scope, Where
from tui.panes import PANES, PaneSlot
from tui.widgets import LossPane, StatsPane, WindowsPane

__all__ = ["ACTIONS", "KEY_NAMES", "PALETTE_KEY", "VIEWER_INTRO", "Action", "Keys", "Scope", "Where", "bindings",
           "help_rows", "keys_of", "markdown_keys", "palette_entries", "pane_actions", "rows_for", "targets"]

PALETTE_KEY = "ctrl+p"  # the command palette's key (Textual binds it: CockpitApp.COMMAND_PALETTE_BINDING)
SHOW_ALL = "show_pane('')"  # the 0 key; the help lists the pane keys just above it
LOSS, WINDOWS, STATS = LossPane.NAME, WindowsPane.NAME, StatsPane.NAME  # the panes rows below target
_QUESTIONS = (Scope.QUESTION, Scope.RISKY_QUESTION)

# In footer order (the footer lists the shown bindings in the order they are bound); the help screen,
# the palette and the README list the rows in this order too, the dialogs' and the chat input's last.
ACTIONS: tuple[Action, ...] = (
    Action("q", "quit", "quit", footer=True, where=Where.LIVE, help_keys="q  ctrl+c",
           help="quit: asks, then saves, stops the Tutor and exits", palette="Quit (saves first)"),
    Action("q", "quit", "quit", footer=True, where=Where.VIEWER, help_keys="q  ctrl+c",
           help="quit the viewer (the training goes on)", palette="Quit the viewer"),
    # pause and resume share keys: check_action shows (and runs) the one that applies now; the palette
    # offers the toggle, which check_action never hides
    Action("space,p", "pause", "pause", footer=True, where=Where.LIVE, key_display="p",
           help="pause / resume training (also resumes after a NaN alarm)"),
    Action("space,p", "resume", "resume", footer=True, where=Where.LIVE, key_display="p"),
    Action("", "toggle_pause", where=Where.LIVE, palette="Pause / resume training", help_keys="space  p"),
    Action("s", "save", "save", footer=True, where=Where.LIVE,
           help="save now (the rolling save a resume starts from)", palette="Save now"),
    Action("c", "checkpoint", "ckpt", footer=True, where=Where.LIVE,
           help="checkpoint (a step-numbered save that is kept)", palette="Checkpoint"),
    Action("d", "detach", "detach", where=Where.LIVE,
           help="detach: the cockpit closes, training carries on (attach again with babyllm-tui --attach)",
           palette="Detach (training carries on)"),
    Action("r", "rollback", "roll back", where=Where.LIVE,
           help="roll back to the last save (asks: {risky_question:answer(True)} confirms; at once after a NaN "
                "alarm)", palette="Roll back to the last save"),
    Action("less_than_sign", "scale_lr(0.5)", "lr/2", where=Where.LIVE, help_keys="<  >",
           help="halve / double the learning rate (train.lr, from the next step; the save keeps it)",
           palette="Learning rate: halve"),
    Action("greater_than_sign", "scale_lr(2.0)", "lr*2", where=Where.LIVE, palette="Learning rate: double"),
    Action("", "setting_form", where=Where.LIVE, help_keys=PALETTE_KEY,
           help="any live setting: type set lr 5e-4 in the palette, or pick Set a live setting for a form",
           palette="Set a live setting…"),
    Action("r", "reload", "reload", footer=True, where=Where.VIEWER,
           help="chat: load the newest save at the next message (/reload)",
           palette="Chat: load the newest save at the next message"),
    Action("i,ctrl+t", "chat", "chat", footer=True, where=Where.LIVE, key_display="i",
           help="chat: focus the chat input (shows the chat pane)", palette="Chat with the model"),
    Action("i,ctrl+t", "chat", "chat", footer=True, where=Where.VIEWER, key_display="i",
           help="chat with the run's newest save (loaded on the CPU here)", palette="Chat with the model"),
    Action("escape", "leave", "leave", footer=True,
           help="leave the chat input / close a dialog / un-maximise"),
    Action("a", "dismiss_alert", "dismiss", help="dismiss the alert banner (the event log keeps the alert)",
           palette="Dismiss the alert banner"),
    Action("0", SHOW_ALL, "all panes", help="back to all panes", palette="Show all panes"),
    Action("", "", help_keys="tab  shift+tab",
           help="move focus between panes (not out of the chat input: {cockpit:leave short})"),
    # the panes' own actions (each runs on its target pane)
    Action("l", "toggle_log", "log", target=LOSS, help="loss plot: log scale on/off",
           palette="Loss plot: toggle log scale"),
    Action("m", "toggle_smoothing", "smooth", target=LOSS, help="loss plot: smoothing on/off",
           palette="Loss plot: toggle smoothing"),
    Action("plus,equals_sign", "smoothing(1)", "smoother", target=LOSS, help_keys="+  -",
           help="loss plot: stronger / weaker smoothing", palette="Loss plot: stronger smoothing"),
    Action("minus", "smoothing(-1)", "rougher", target=LOSS, palette="Loss plot: weaker smoothing"),
    Action("o", "pick_runs", "compare", target=LOSS, show_target=True,
           help="loss plot: compare runs: pick runs of the same folder to overlay",
           palette="Loss plot: compare runs (overlay others)"),
    Action("x", "toggle_x_axis", "x axis", target=LOSS,
           help="loss plot: x axis by step / by tokens seen (every curve)",
           palette="Loss plot: x axis by step or tokens"),
    Action("w", "toggle_window_plot", "view", target=WINDOWS,
           help="windows pane: weightings / sizes over steps / memory gate histograms",
           palette="Windows pane: weightings, sizes or gate histograms"),
    Action("left_square_bracket", "cycle_stat(-1)", "prev stat", target=STATS, help_keys="[  ]",
           help="stats: previous / next stat whose band thresholds are shown"),
    Action("right_square_bracket", "cycle_stat(1)", "next stat", target=STATS),
    Action("", "focus_stat", target=STATS, show_target=True),  # the palette's "Thresholds of <stat>"
    Action("S", "screenshot_svg", "shot", help="save an SVG screenshot of the cockpit (into the run's screenshots/; "
           "a viewer: into the current folder)", palette="Save a screenshot (SVG)"),
    Action("question_mark,f1", "help", "help", footer=True, key_display="?", help="this help",
           palette="Help: keys"),
    Action("", "", help_keys=PALETTE_KEY, help="command palette: every action here, by name"),
    # the dialogs' keys and the chat input's
    Action("y,enter", "answer(True)", "yes", footer=True, where=Where.LIVE, scopes=(Scope.QUESTION,),
           help="the quit question: quit"),
    Action("ctrl+y", "answer(True)", "yes", footer=True, where=Where.LIVE, scopes=(Scope.RISKY_QUESTION,),
           help="the roll back question: roll back (no letter or enter does, so typing meant for the chat can't)"),
    Action("n,escape", "answer(False)", "no", footer=True, where=Where.LIVE, scopes=_QUESTIONS,
           help="the quit or roll back question: no, carry on"),
    Action("d,enter", "answer('detach')", "detach", footer=True, where=Where.LIVE, scopes=(Scope.ATTACHED_QUIT,),
           help="quitting an attached cockpit: detach (the run trains on)"),
    # (t, not s: s saves everywhere else, and a letter in a dialog means what it means in the cockpit, or nothing)
    Action("t", "answer('stop')", "stop the run", footer=True, where=Where.LIVE, scopes=(Scope.ATTACHED_QUIT,),
           help="quitting an attached cockpit: stop the run (it saves first)"),
    Action("n,escape", "answer('')", "cancel", footer=True, where=Where.LIVE, scopes=(Scope.ATTACHED_QUIT,),
           help="quitting an attached cockpit: cancel"),
    Action("enter", "submit", where=Where.LIVE, scopes=(Scope.SETTING,), builtin=True,
           help="the live-setting form: enter in the key goes to the value; in the value, sets it"),
    Action("escape", "cancel", "cancel", footer=True, where=Where.LIVE, scopes=(Scope.SETTING,),
           help="the live-setting form: cancel"),
    Action("space", "select", scopes=(Scope.PICK_LIST,), builtin=True, help="compare runs: tick or untick a run"),
    Action("enter", "screen.apply", "show the ticked runs", scopes=(Scope.PICK_LIST,),
           help="compare runs: show the ticked runs"),
    Action("escape", "cancel", "cancel", footer=True, scopes=(Scope.PICKER,), help="compare runs: cancel"),
    Action("escape", "dismiss", "look at the panes", footer=True, scopes=(Scope.ERROR,),
           help="the error screen: close it, look at the panes"),
    Action("q", "app.quit_now", "quit", footer=True, scopes=(Scope.ERROR,), help="the error screen: quit"),
    Action("escape,q,question_mark,f1", "dismiss", "close", footer=True, scopes=(Scope.HELP,),
           help="this help: close it"),
    Action("enter", "submit", scopes=(Scope.CHAT,), builtin=True, help="the chat input: send the message"),
    Action("tab,shift+tab", "stay", scopes=(Scope.CHAT,)),  # (a space: focus leaves the input only by esc)
)

# What a viewer's help says first (pause, save, checkpoint and roll back are not in its table).
VIEWER_INTRO = ("viewer: another process trains the run; this only reads its files "
                "(no pause, save, checkpoint or roll back here)")


def pane_actions(panes: Sequence[PaneSlot]) -> tuple[Action, ...]:
    """One "show pane" action per pane, on its number key (help: one row for them all)."""
    return tuple(Action(p.key, f"show_pane('{p.pane.NAME}')", f"pane {p.key}", palette=f"Show pane: {p.pane.TITLE}")
                 for p in panes)


def pane_keys_help(panes: Sequence[PaneSlot], show_all: str) -> tuple[str, str]:
    """The help row of the number keys: ("1 … 7", "stats loss …: show one …"); `show_all` restores all panes."""
    keys = f"{panes[0].key} … {panes[-1].key}" if len(panes) > 1 else panes[0].key
    names = " ".join(p.pane.SHORT for p in panes)
    return keys, f"{names}: show one (small terminal) or maximise it (big terminal; again or {show_all} restores)"


def keys_of(actions: Iterable[Action], action: str) -> str:
    """The keys bound to `action` in the cockpit, as people read them ("" when none is)."""
    return Keys(actions).all(action)


def rows_for(actions: Iterable[Action], viewer: bool, scope: Scope | None = Scope.COCKPIT) -> list[Action]:
    """The rows of one cockpit (live or viewer), in table order: those bound in `scope` (None: all)."""
    return [a for a in actions if a.where.includes(viewer) and (scope is None or scope in a.scopes)]


def targets(actions: Iterable[Action]) -> dict[str, Action]:
    """The panes' actions: action name (without its parameters) -> its row (whose ``target`` names the pane)."""
    return {parse(a.action)[1]: a for a in actions if a.target and Scope.COCKPIT in a.scopes}


def bindings(actions: Sequence[Action], panes: Sequence[PaneSlot], viewer: bool) -> list[Binding]:
    """The app's bindings. A viewer keeps the live-only keys that no viewer action took, hidden: the
    app answers them ("training is controlled by the training process") instead of ignoring them."""
    own = [a for a in (*rows_for(actions, viewer), *pane_actions(panes)) if a.keys and a.action]
    taken = {k for a in own for k in a.keys.split(",")}
    refused = [] if not viewer else [
        a for a in rows_for(actions, viewer=False)
        if a.where is Where.LIVE and a.keys and not taken & set(a.keys.split(","))]
    out = [a.binding() for a in own]
    return out + [Binding(a.keys, a.action, a.label, show=False, key_display=a.key_display) for a in refused]


def help_rows(actions: Sequence[Action], panes: Sequence[PaneSlot], viewer: bool) -> list[tuple[str, str]]:
    """(keys, what they do) for the help screen: the cockpit's (the pane keys just before the 0 key),
    then the dialogs' and the chat input's."""
    keys = Keys(actions)
    out: list[tuple[str, str]] = []
    for a in rows_for(actions, viewer, scope=None):
        if a.action == SHOW_ALL and panes:
            out.append(pane_keys_help(panes, a.bound_keys()))
        if a.help:
            out.append((a.help_text_keys(), keys.say(a.help)))
    return out


def palette_entries(actions: Sequence[Action], panes: Sequence[PaneSlot], viewer: bool) -> list[tuple[str, str, str]]:
    """(name, action, keys) for the command palette: the table's actions, then one per pane."""
    rows = [*rows_for(actions, viewer), *pane_actions(panes)]
    return [(a.palette, a.action, a.bound_keys(" / ") or " / ".join(a.help_keys.split()))
            for a in rows if a.palette and a.action]


def markdown_keys(actions: Sequence[Action] = ACTIONS, panes: Sequence[PaneSlot] = PANES, viewer: bool = False) -> str:
    """The README's keys table (markdown), from the same rows as the help screen:
    ``python -c "from tui.actions import markdown_keys; print(markdown_keys())"``."""
    lines = ["| key | action |", "| --- | --- |"]
    for keys, what in help_rows(actions, panes, viewer):
        shown = " / ".join(f"`{k}`" for k in keys.split("  "))  # two spaces part keys; "1 … 7" is one
        lines.append(f"| {shown} | {what} |")
    return "\n".join(lines)
