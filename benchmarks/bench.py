"""Measure speed and accuracy: `framestamp bench latency|overhead|decoding|objectives ...`.

Each benchmark prints a table and, with --out, writes JSON + markdown (+ a PNG where a chart helps)
into benchmarks/results/<device>/, with the command that reproduces it at the top.
"""

from __future__ import annotations

import argparse
import importlib

from framestamp.runtime.errors import needs_toolkit

# name -> (module, help); latency has its own options, the others pass their arguments through.
BENCHMARKS = {
    "latency": ("framestamp.benchmarks.latency", "frame-level vs autoregressive timestamps (the paper's Fig. 3)"),
    "overhead": ("framestamp.benchmarks.runtime_overhead", "the runtime's own cost vs the forward pass, and scaling"),
    "decoding": ("framestamp.benchmarks.decoding_speed", "posterior-mode decoding cost"),
    "objectives": ("framestamp.benchmarks.objectives_table", "tables of the objective and length-generalization runs"),
    "recipes": ("framestamp.benchmarks.recipes_table", "equal-budget accuracy curves of training runs, table and PNG"),
    "long-audio": ("framestamp.benchmarks.long_audio", "long recordings: windowed vs one pass, time and memory 10 s .. 60 min"),
    "merging": ("framestamp.benchmarks.merging", "audio-token merging: accuracy against decoder speed, local and global"),
    "serve-load": ("framestamp.benchmarks.serve_load", "64 concurrent clients against `framestamp serve`: p50/p99, throughput, batching on/off"),
    "corpus": ("framestamp.benchmarks.corpus_scaling", "`framestamp locate-corpus` on Ray: 1 vs 2 actors, a killed job run again"),
    "peers": ("framestamp.benchmarks.peers", "framestamp beside pocketsphinx forced alignment, per task and speech engine"),
    "word-errors": ("framestamp.benchmarks.word_errors", "where word answers go wrong: other occurrence, other word, no word; by position"),
    "occurrence-counts": ("framestamp.benchmarks.occurrence_counts", "a head of every occurrence: its k-th answer, "
                          "the same given the true count, and how often it counts right"),
    "stages": ("framestamp.benchmarks.stage_curve", "held-out accuracy by shipped stage against targets, table and PNG"),
    "transcripts": ("framestamp.benchmarks.transcripts", "transcripts timed by their words vs one transcript question: accuracy, stacking, time"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = benchmarks.add_parser(name, help=help_text, description=help_text)
        if name == "latency":
            importlib.import_module(module_name).configure(sub)
        else:
            sub.add_argument("arguments", nargs=argparse.REMAINDER, help=f"see python -m {module_name} --help")


@needs_toolkit("bench")
def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    if args.benchmark == "latency":
        return module.run(args)
    return module.main(args.arguments)
