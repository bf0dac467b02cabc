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


# What `framestamp train/export/bench/demo` import and a runtime-only install lacks.
TOOLKIT_MODULES = ("torch", "transformers", "safetensors", "onnx", "onnxscript", "onnxslim", "polygraphy")


def needs_toolkit(command: str):
    """Decorate a subcommand's ``run``: a toolkit module missing at run time becomes one readable line."""
    import functools

    def decorate(run):
        @functools.wraps(run)
        def checked(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except ImportError as error:  # ModuleNotFoundError, or a module that refuses to load
                missing = (error.name or "").split(".")[0]
                if missing not in TOOLKIT_MODULES:
                    raise
                raise FramestampError(f"`framestamp {command}` needs {missing}, which is not installed; install the "
                                      "full toolkit (pip install 'framestamp[train,export]'), the runtime alone covers "
                                      "`locate`") from None
        return checked
    return decorate
