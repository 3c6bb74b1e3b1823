"""User-facing errors: one clear line naming the file/key/value and what to do."""


class BabyError(Exception):
    """A mistake in the user's input (config, corpus, checkpoint, prompt); shown without a traceback."""


class ConfigError(BabyError):
    """A config file or override that cannot be used."""


class CorpusError(BabyError):
    """A corpus that has no usable text, or too little of it."""


class CheckpointError(BabyError):
    """A missing, damaged or mismatched checkpoint."""
