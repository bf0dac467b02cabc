"""Latency: frame-level timestamps (one forward pass + decoding) against generating them as text.

    framestamp bench latency --quick                       # batch 1, 1-5 and 26+ timestamps, 3 repeats, no fp16 ONNX
    framestamp bench latency --out benchmarks/results/cpu  # the full grid on the shipped model
    framestamp bench latency --backbone omni-3b --device cuda --precision bf16 --out benchmarks/results/h100

The same backbone and the same audio answer "the start of every word of this transcript" two ways
(the paper's Fig. 3):
- frame-level: encoder + decoder + head, then posterior-mode decoding; in PyTorch, in ONNX Runtime
  (fp32 and fp16 artifacts exported on the fly or given with --artifact; the shipped model's own fp32
  export is timed as it ships), and with TensorRT engines
  when tensorrt is importable;
- autoregressive: the same encoder and decoder generating the paper's JSON answer greedily with
  transformers' generate (dynamic KV cache), and an optimized variant (static KV cache, plus
  torch.compile with --compile: where CUDA is present it also captures CUDA graphs).
Generation is forced to the true answer's token count (min_new_tokens = max_new_tokens), so random
weights at large shapes do the same work a trained model would. Timestamps per question are
bucketed 1-5, 6-10, 11-15, 16-20, 21-25, 26+ (a representative count for each), at batch sizes 1, 4, 16.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from framestamp.runtime.artifact import SHIPPED_ARTIFACT
from framestamp.runtime.errors import InputError

BUCKETS = [("1-5", 3), ("6-10", 8), ("11-15", 13), ("16-20", 18), ("21-25", 23), ("26+", 30)]
QUICK_BUCKETS = [("1-5", 3), ("26+", 30)]
QUICK = "batch 1, 1-5 and 26+ timestamps, 3 repeats, no fp16 ONNX"  # what --quick runs: its help, output and README


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--backbone", help="a preset with random weights instead of --model (e.g. omni-3b)")
    parser.add_argument("--artifact", type=Path, action="append", default=[],
                        help="ONNX artifact(s) of the model to time (default: export fp32 and fp16 on the fly "
                             "from --model, the shipped export and its fp16 without --model; none with --backbone)")
    parser.add_argument("--clips", type=Path,
                        help="a manifest with long transcript clips to use instead of generating them "
                             "(machines without espeak-ng: generate with `framestamp synth --tasks words "
                             "--min-seconds 16 --max-seconds 20` elsewhere and carry the folder)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="run in the order given (default 1,4,16)")
    parser.add_argument("--buckets", help="comma-separated bucket labels, run in the order given (default: all six)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="PyTorch dtype")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimized autoregressive baseline")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK}")
    parser.add_argument("--out", type=Path, help="folder for latency.json, latency.md and latency.png")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.quick:
        args.batch_sizes, args.repeats, args.buckets = "1", min(args.repeats, 3), ",".join(b for b, _ in QUICK_BUCKETS)
        print(f"--quick: {QUICK}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    buckets = chosen_buckets(args.buckets)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    model, description, source, checkpoint = load_model(args)
    with tempfile.TemporaryDirectory(prefix="framestamp-latency.") as scratch:
        scratch = Path(scratch)
        examples, features = benchmark_clips(scratch, max(n for _, n in buckets), args.clips)
        artifacts = list(args.artifact)
        if not artifacts and checkpoint is not None:
            shipped = SHIPPED_ARTIFACT if args.model is None else None  # exported from this checkpoint
            artifacts = export_artifacts(checkpoint, scratch, ["fp32"] if args.quick else ["fp32", "fp16"], shipped)
        timer = Timer(model, args.device, args.repeats, artifacts, args.threads, args.compile)
        report = {"command": "framestamp bench latency " + " ".join(sys.argv[3:] if sys.argv[1:2] == ["bench"] else []),
                  "device": device_name(args.device), "model": source,
                  "parameters": description["backbone"]["num_parameters"], "precision": args.precision,
                  "repeats": args.repeats, "versions": versions(),
                  "optimized_autoregressive": timer.optimized_description, "rows": []}
        # Rows run in the order asked for (most wanted first) and the report is rewritten after each,
        # so a run stopped at a deadline keeps every row it finished.
        for label, count in buckets:
            for batch_size in batch_sizes:
                chosen = [truncated(example, count) for example in examples[:batch_size]]
                row = {"bucket": label, "timestamps": count, "batch_size": batch_size,
                       "audio_seconds": float(sum(example.duration for example in chosen)),
                       **timer.measure(chosen, features)}
                report["rows"].append(row)
                print(summary_line(row), flush=True)
                if args.out:
                    write_report(report, args.out, with_chart=False)
    print(markdown(report))
    if args.out:
        write_report(report, args.out, with_chart=True)
    return 0


def chosen_buckets(labels: str | None) -> list[tuple[str, int]]:
    """(label, timestamps) in the order given (default: all six, fewest timestamps first)."""
    if not labels:
        return list(BUCKETS)
    known = dict(BUCKETS)
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in wanted if label not in known]
    if unknown or not wanted:
        raise InputError(f"unknown bucket(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return [(label, known[label]) for label in wanted]


def write_report(report: dict, out: Path, with_chart: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "latency.md").write_text(markdown(report))
    if with_chart:
        chart(report, out / "latency.png")


def load_model(args):
    import torch

    from framestamp.training.checkpoint import build_model, load_checkpoint
    from framestamp.training.model import HeadConfig

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    if args.backbone:
        model = build_model(args.backbone, HeadConfig(objective="poisson"), seed=0, dtype=dtype)
        description = {"backbone": {"num_parameters": model.info.num_parameters}}
        source, path = f"{args.backbone} (random weights)", None
    else:
        from framestamp.demo import SHIPPED_MODEL

        path = args.model or SHIPPED_MODEL
        model, description = load_checkpoint(path, dtype=dtype)
        source = "the shipped omni-tiny-synth" if args.model is None else str(path)
    if dtype is not None:
        model.head.to(dtype)  # build_model and load_checkpoint leave the head in fp32, which refuses bf16 states
    return model.to(args.device).eval(), description, source, path


def benchmark_clips(folder: Path, longest: int, manifest: Path | None = None):
    """Speech long enough to hold ``longest`` words per transcript: ``manifest``'s, or generated."""
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.features import DEFAULT_SETTINGS
    from framestamp.training.batches import AudioCache

    if manifest is None:
        seconds = max(4, int(longest * 0.45) + 2)
        manifest = folder / "clips" / "manifest.jsonl"
        main(["synth", str(manifest.parent), "--tasks", "words", "--count", "24", "--seed", "9",
              "--min-seconds", str(seconds), "--max-seconds", str(seconds + 4)])
    examples = [e for e in read_manifest(manifest) if e.task == "transcript" and len(e.times) >= longest]
    if not examples:
        raise InputError(f"{manifest}: no transcript with at least {longest} words; generate longer clips")
    if len(examples) < 16:
        examples = (examples * 16)[:16]
    return examples, AudioCache(manifest.parent, DEFAULT_SETTINGS)


def truncated(example, count: int):
    """The question about the first ``count`` words of the transcript (its answer: their starts)."""
    words = example.prompt["transcript"].split()[:count]
    ends = tuple(example.ends[:count]) if example.ends is not None else None
    return replace(example, prompt={"transcript": " ".join(words)}, times=tuple(example.times[:count]), ends=ends)


def export_artifacts(checkpoint: Path, folder: Path, precisions: list[str], fp32: Path | None = None) -> list[Path]:
    """Artifacts of ``checkpoint`` at ``precisions`` (fp32 first) in ``folder``; ``fp32``: its existing export."""
    from framestamp.export.artifact import convert_artifact, export_fp32

    if fp32 is None:
        fp32 = folder / "fp32"
        export_fp32(checkpoint, fp32)
    for precision in precisions[1:]:
        convert_artifact(fp32, folder / precision, precision)
    return [fp32] + [folder / precision for precision in precisions[1:]]


class Timer:
    """Times every method on one batch of questions; median, min and max over repeats."""

    def __init__(self, model, device: str, repeats: int, artifacts: list[Path], threads: int | None, compile: bool):
        from framestamp.runtime.artifact import GraphSessions

        self.model, self.device, self.repeats = model, device, repeats
        opened = [GraphSessions.open(artifact, threads=threads) for artifact in artifacts]
        self.sessions = {f"onnxruntime {graphs.manifest['precision']}": graphs for graphs in opened}
        self.engines = self._engines(artifacts)
        self.compiled = compile
        self.optimized_description = "static KV cache"
        if compile:
            self.optimized_description += " + torch.compile" + (" (CUDA graphs)" if device.startswith("cuda") else "")

    @staticmethod
    def _engines(artifacts):
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return {}
        from framestamp.runtime.engines import EngineGraphs

        engines = {}
        for artifact in artifacts:
            if (artifact / "engines").is_dir():
                for precision in ("fp16", "int8"):
                    if (artifact / "engines" / f"encoder.{precision}.engine").is_file():
                        engines[f"tensorrt {precision}"] = EngineGraphs(artifact, precision)
        return engines

    def _timed(self, function) -> dict:
        import torch

        result = function()  # warm-up (and compilation)
        timings = []
        for _ in range(self.repeats):
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = function()
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - start)
        return {"median": float(np.median(timings)), "min": float(np.min(timings)), "max": float(np.max(timings))}, result

    def measure(self, examples, features) -> dict:
        import torch

        from framestamp.runtime.decoding import posterior_mode
        from framestamp.runtime.prompts import ANSWER_END, answer_text
        from framestamp.training.batches import collate

        model = self.model
        batch = collate(examples, features, model.prompt_ids, model.pad_id).to(self.device)
        counts = [len(example.times) for example in examples]
        answer_tokens = max(len(model.tokenizer.encode(answer_text(e.task, e.prompt, e.times) + ANSWER_END,
                                                       add_special_tokens=False).ids) for e in examples)

        def decode(scores, frame_counts):
            return [posterior_mode(scores[row, : int(frame_counts[row]), 0].astype(np.float64), counts[row])
                    for row in range(len(counts))]

        @torch.no_grad()
        def frame_pytorch():
            output = model.run_batch(batch)
            return decode(output.scores.float().cpu().numpy(), output.frame_mask.sum(-1).cpu().numpy())

        methods = {"frame pytorch": frame_pytorch}
        feeds = {name: tensor.cpu().numpy() for name, tensor in
                 (("mel", batch.mel), ("mel_lengths", batch.mel_lengths), ("input_ids", batch.input_ids),
                  ("attention_mask", batch.attention_mask), ("audio_start", batch.audio_start))}
        for name, graphs in {**self.sessions, **self.engines}.items():
            def frame_graphs(graphs=graphs):
                audio, frame_counts = graphs.encode(feeds["mel"].astype(np.float32), feeds["mel_lengths"])
                scores = graphs.scores(feeds["input_ids"], feeds["attention_mask"], feeds["audio_start"], audio, frame_counts)
                return decode(scores, frame_counts)
            methods[f"frame {name}"] = frame_graphs
        if len(examples) == 1 and examples[0].task == "transcript":
            methods[BY_WORDS] = self._by_words(examples[0], features)
        methods["autoregressive generate"] = lambda: self._answers(self.generate(batch, answer_tokens, static=False))
        methods["autoregressive static cache"] = lambda: self._answers(self.generate(batch, answer_tokens, static=True))
        methods["autoregressive lean loop"] = lambda: self._answers(self.lean_loop(batch, answer_tokens))
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        timed = {name: self._timed(function) for name, function in methods.items()}
        peak = {"peak_gpu_memory_bytes": int(torch.cuda.max_memory_allocated(self.device))} if self.device.startswith("cuda") else {}
        # Every frame-level path must decode what PyTorch decodes: the largest difference, in ms.
        reference = timed["frame pytorch"][1]
        disagreement = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) * 1000
                           for name, (_, result) in timed.items() if name.startswith("frame")
                           for a, b in zip(result, reference))
        return {"answer_tokens": answer_tokens, "frame_methods_max_difference_ms": disagreement, **peak,
                "seconds": {name: stats for name, (stats, _) in timed.items()}}

    def _by_words(self, example, features):
        """The transcript timed as the runtime times it by default: a question per word, the k-th time the
        transcript says it, in one batch about the one clip, aligned in order and paced by the words (one
        transcript: rows grow with its words, so only batches of one are timed this way)."""
        import torch

        from framestamp.runtime.decoding import align_word_tracks
        from framestamp.runtime.prompts import transcript_word_questions
        from framestamp.training.batches import collate

        words = example.prompt["transcript"].split()
        questions = [replace(example, task="word", prompt=fields, times=(0.0,), ends=None)
                     for fields in transcript_word_questions(words)]
        batch = collate(questions, features, self.model.prompt_ids, self.model.pad_id, share_clips=True).to(self.device)

        @torch.no_grad()
        def by_words():
            output = self.model.run_batch(batch)
            frames = int(output.frame_mask[0].sum())
            return [align_word_tracks(output.scores[:, :frames].float().cpu().numpy(), "poisson", words=words)[0]]
        return by_words

    def _prompt(self, batch):
        """Left-padded prompts (as generation needs) with the audio merged in: the prefill's input."""
        import torch

        model = self.model
        rows = [model.prompt_ids(example, int(frames), with_answer=False)
                for example, frames in zip(batch.examples, batch.num_audio_frames.tolist())]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), model.pad_id, dtype=torch.long, device=self.device)
        attention_mask = torch.zeros_like(input_ids)
        audio_start = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        for b, (ids, start) in enumerate(rows):
            input_ids[b, width - len(ids):] = torch.tensor(ids, device=self.device)
            attention_mask[b, width - len(ids):] = 1
            audio_start[b] = width - len(ids) + start
        audio, frame_counts = model.encode_audio(batch.mel, batch.mel_lengths)
        return model.merged_embeddings(input_ids, audio_start, audio, frame_counts), attention_mask

    def _answers(self, generated) -> list:
        from framestamp.runtime.prompts import parse_answer

        return [parse_answer(self.model.tokenizer.decode(row), "transcript") for row in generated.tolist()]

    def generate(self, batch, tokens: int, static: bool):
        """transformers' generate, greedy, forced to ``tokens`` new tokens: their ids (B, tokens)."""
        import torch

        model = self.model
        with torch.no_grad():
            embeddings, attention_mask = self._prompt(batch)
            options = self._static_options() if static else {}
            generated = model.backbone.generate(inputs_embeds=embeddings, attention_mask=attention_mask,
                                                max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                                pad_token_id=model.pad_id, **options)
        return generated

    def _static_options(self) -> dict:
        """generate's options for the static-cache path. On CUDA, transformers compiles the decoding step
        of a static cache on its own (CUDA graphs included): --compile asks for exactly that, on any
        device, and without it compilation is switched off so the row measures the cache alone. Only
        this path is compiled: the dynamic cache's shapes change every step and would recompile."""
        if not self.compiled:
            return {"cache_implementation": "static", "disable_compile": True}
        from transformers import CompileConfig

        config = CompileConfig()  # reduce-overhead: CUDA graphs on a GPU
        config._compile_all_devices = True  # transformers' own switch for compiling off CUDA too
        return {"cache_implementation": "static", "compile_config": config}

    def lean_loop(self, batch, tokens: int):
        """Greedy decoding without generate's machinery: prefill, then one decoder step per token."""
        import torch

        model = self.model
        with torch.no_grad():
            embeddings, attention_mask = self._prompt(batch)
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            output = model.language_model(inputs_embeds=embeddings, attention_mask=attention_mask,
                                          position_ids=positions, use_cache=True)
            next_position, generated = positions[:, -1:] + 1, []
            for _ in range(tokens):
                token = model.backbone.lm_head(output.last_hidden_state[:, -1]).argmax(-1, keepdim=True)
                generated.append(token)
                attention_mask = torch.cat((attention_mask, torch.ones_like(token)), dim=1)
                output = model.language_model(input_ids=token, attention_mask=attention_mask, position_ids=next_position,
                                              use_cache=True, **model.next_step_cache(output))
                next_position = next_position + 1
        return torch.cat(generated, dim=1)


BY_WORDS = "by words pytorch"


def summary_line(row: dict) -> str:
    seconds = row["seconds"]
    frame = seconds["frame pytorch"]["median"]
    return (f"{row['bucket']:>6} x{row['batch_size']:<3} frame {frame * 1000:8.1f} ms, generate "
            f"{seconds['autoregressive generate']['median'] * 1000:8.1f} ms ({row['answer_tokens']} tokens)")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()} ({__import__('os').cpu_count()} cores)"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "transformers", "onnxruntime", "tensorrt"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def markdown(report: dict) -> str:
    methods = list(dict.fromkeys(m for row in report["rows"] for m in row["seconds"]))
    frame_methods = [m for m in methods if m.startswith("frame")]
    rows = sorted(report["rows"], key=lambda row: (row["timestamps"], row["batch_size"]))
    # Older reports lack these: their columns appear only when every row has them.
    with_audio = all("audio_seconds" in row for row in rows)
    with_memory = all("peak_gpu_memory_bytes" in row for row in rows)
    extra = (["real-time factor (frame)"] if with_audio else []) + (["peak GPU memory"] if with_memory else [])
    lines = [f"# Latency: frame-level vs autoregressive timestamps ({report['device']})", "",
             f"Reproduce: `{report['command']}`", "",
             f"Model: {report['model']} ({report['parameters'] / 1e6:.1f}M parameters, {report['precision']}); "
             f"versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}. Median over "
             f"{report['repeats']} repeats (min-max in latency.json). Autoregressive: transformers' generate "
             f"(dynamic KV cache), generate with a {report['optimized_autoregressive']}, and a lean greedy loop "
             "over the decoder with its KV cache (no generate machinery); each is forced to the answer's "
             "token count.", "",
             "| timestamps | batch | answer tokens | " + " | ".join(methods + ["speedup vs generate",
                                                                          "speedup vs best autoregressive"] + extra) + " |",
             "|" + "---|" * (len(methods) + 5 + len(extra))]
    for row in rows:
        seconds = {m: row["seconds"][m]["median"] if m in row["seconds"] else None for m in methods}
        best_frame = min(seconds[m] for m in frame_methods)
        best_autoregressive = min(seconds[m] for m in methods if m.startswith("autoregressive"))
        cells = ["-" if seconds[m] is None else f"{seconds[m] * 1000:.1f} ms" for m in methods]
        cells += [f"{seconds['autoregressive generate'] / best_frame:.1f}x", f"{best_autoregressive / best_frame:.1f}x"]
        if with_audio:
            cells.append(f"{row['audio_seconds'] / best_frame:.0f}x")
        if with_memory:
            cells.append(f"{row['peak_gpu_memory_bytes'] / 2**30:.1f} GiB")
        lines.append(f"| {row['bucket']} | {row['batch_size']} | {row['answer_tokens']} | " + " | ".join(cells) + " |")
    lines += ["", "Speedups divide an autoregressive median (transformers' generate; the fastest of the three "
              "autoregressive implementations) by the fastest frame-level median of the row."]
    if BY_WORDS in methods:
        lines.append(f"{BY_WORDS}: a transcript as the runtime times it by default, one word question per word in one "
                     "forward pass, aligned in order (batches of one transcript only): one decoder row per word.")
    if with_audio:
        lines.append("Real-time factor: seconds of audio in the batch per second of the fastest frame-level method.")
    if with_memory:
        lines.append("Peak GPU memory: the most PyTorch held allocated while the row ran, weights included.")
    return "\n".join(lines + [""])


def chart(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install 'framestamp[plot]')", file=sys.stderr)
        return
    batch_sizes = sorted({row["batch_size"] for row in report["rows"]})
    figure, axes = plt.subplots(1, len(batch_sizes), figsize=(5 * len(batch_sizes), 4), squeeze=False)
    for axis, batch_size in zip(axes[0], batch_sizes):
        rows = sorted((row for row in report["rows"] if row["batch_size"] == batch_size), key=lambda row: row["timestamps"])
        for method in rows[0]["seconds"]:
            axis.plot([row["bucket"] for row in rows], [row["seconds"][method]["median"] * 1000 for row in rows],
                      marker="o", linestyle="--" if method.startswith("auto") else "-", label=method)
        axis.set_yscale("log")
        axis.set_title(f"batch {batch_size}")
        axis.set_xlabel("timestamps per question")
        axis.set_ylabel("latency (ms, median)")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{report['model']} on {report['device']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
