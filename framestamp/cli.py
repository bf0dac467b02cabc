"""The ``framestamp`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job and exposes ``configure(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported (as polygraphy does): some
import torch at the top, and ``framestamp locate`` must start without it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("framestamp.data.synth", "generate a synthetic dataset (words, speakers, events) from a seed"),
    "train": ("framestamp.training.train", "train a frame-head or token-baseline model (resumes after a kill)"),
    "evaluate": ("framestamp.training.evaluate", "score a checkpoint on a manifest: acc@20/40/100 ms and MAD per task"),
    "export": ("framestamp.export.artifact", "export a checkpoint to ONNX graphs (fp32, fp16 or int8) with a manifest"),
    "parity": ("framestamp.export.parity", "compare an exported artifact with its PyTorch checkpoint on real audio"),
    "build-engine": ("framestamp.export.tensorrt", "build TensorRT engines (fp16, int8) from an artifact on this GPU"),
    "locate": ("framestamp.runtime.locate", "when does a word / speaker / event / every word of a transcript start (torch-free)"),
    "serve": ("framestamp.serve", "serve an artifact with Triton Inference Server (PyTriton): HTTP, gRPC, dynamic batching"),
    "triton-repo": ("framestamp.triton_repo", "write a Triton model repository (onnxruntime/tensorrt graphs behind a Python BLS front)"),
    "locate-corpus": ("framestamp.corpus", "timestamp a whole corpus with Locator actors on Ray Data (sharded, resumable)"),
    "bench": ("framestamp.benchmarks.bench", "measure latency (vs autoregressive), runtime overhead, decoding, accuracy"),
    "gpu-kit": ("framestamp.benchmarks.gpu", "prepare, run (or --dry-run) and collect the one-lease GPU measurements"),
    "demo": ("framestamp.demo", "the tour: fresh clips, accuracy, ONNX export, parity, the runtime, latency"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: its subcommand's module imported, the others only named (all are imported
    when no subcommand is given, so that ``--help`` can say which ones this install lacks)."""
    from framestamp import __version__

    parser = argparse.ArgumentParser(
        prog="framestamp",
        description="Frame-level timestamps from audio language models.",
    )
    parser.add_argument("--version", action="version", version=f"framestamp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = chosen_subcommand(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if chosen is not None and name != chosen:
            commands.add_parser(name, help=help_text)  # never parsed in this process: not imported
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:  # e.g. a runtime-only install has no torch for `train`
            sub = commands.add_parser(name, help=f"{help_text} [unavailable: {error.name} is not installed]")
            sub.add_argument("arguments", nargs=argparse.REMAINDER)
            sub.set_defaults(_run=_unavailable(name, error))
            continue
        sub = commands.add_parser(name, help=help_text, description=module.__doc__.strip().splitlines()[0])
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def one_line(message: str) -> str:
    """``message`` with characters that would break or garble the line (newlines, other control characters the
    user typed into an argument) written as escapes."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in message)


def chosen_subcommand(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or None."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def _unavailable(name: str, error: ImportError):
    def run(args) -> int:
        from framestamp.runtime.errors import FramestampError

        raise FramestampError(f"`framestamp {name}` needs {error.name}, which is not installed; install the full "
                              "toolkit (pip install 'framestamp[train,export]'), the runtime alone covers `locate`")
    return run


def main(argv: list[str] | None = None) -> int:
    from framestamp.runtime.errors import FramestampError

    parser = build_parser(argv)
    # `bench NAME ...` hands everything after NAME to that benchmark's own parser; argparse leaves a leading
    # option (`bench serve-load --out DIR`) out of the catch-all, so it is put back in front, in order.
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "bench" and isinstance(getattr(args, "arguments", None), list):
        args.arguments = unknown + args.arguments
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args._run(args) or 0)
    except (FramestampError, OSError) as error:
        # Errors raised on purpose for bad input carry a message meant for the user; so do the system's (a file
        # missing, no permission, a disk full), which name the path.
        print(f"framestamp {args.command}: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"framestamp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
