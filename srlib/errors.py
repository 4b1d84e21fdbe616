"""The faults a command reports in one line (:mod:`srlib.cli` maps them to exit statuses). Plain Python, no
torch, so that the command line handles them without importing the modules that raise them. Each is also
importable from the module that raises it (``srlib.infer.CheckpointError``, ...)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


class DatasetNotFound(FileNotFoundError):
    pass


class TrainingDiverged(RuntimeError):
    pass


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run stopped and how to resume it."""
