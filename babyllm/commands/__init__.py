"""The command-line entry points (babyllm train, chat, sample, info, bench, eval, plot, ctl, runs); nothing
outside this folder imports it (babyllm-tui's tui.cli takes its shared arguments from commands.cli and its
start-up guard from commands.startup)."""
