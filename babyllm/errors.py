"""User-facing errors: one clear line naming the file/key/value and what to do."""


class BabyError(Exception):
    """A mistake in the user's input (config, corpus, checkpoint, prompt); shown without a traceback."""

    exit_status = 2  # what a command exits with (babyllm ctl: 1 when a live run refused)


class ConfigError(BabyError):
    """A config file or override that cannot be used."""


class CorpusError(BabyError):
    """A corpus that has no usable text, or too little of it."""


class CheckpointError(BabyError):
    """A missing, damaged or mismatched checkpoint."""


def exit_code(e: BabyError) -> int:
    """The exit status of a command that ended with `e`: 1 when a live run refused what was asked (babyllm ctl),
    2 for every other mistake or fault."""
    return e.exit_status
