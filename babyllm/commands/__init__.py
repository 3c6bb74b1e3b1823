"""The command-line entry points (babyllm train, chat, sample, info, bench, eval, export, plot, ctl, runs,
completion); nothing outside this folder imports it (babyllm-tui's tui.cli takes its parser from commands.cli
and its start-up guard from commands.startup)."""
