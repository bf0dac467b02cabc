"""Errors that speak to the user: what was wrong with their input and what to do about it."""


class FramestampError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class InputError(FramestampError, ValueError):
    """The caller's input (audio, manifest, arguments) cannot be used as given."""


class ManifestError(InputError):
    """A dataset manifest or label file is malformed; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem
