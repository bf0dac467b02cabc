"""The framestamp command: help for every subcommand, and readable errors with exit status 2."""

import subprocess
import sys

import pytest

from framestamp.cli import SUBCOMMANDS, main


def test_every_subcommand_has_help(capsys):
    for name in SUBCOMMANDS:
        try:
            main([name, "--help"])
        except SystemExit as exit:
            assert exit.code == 0
        assert "usage: framestamp " + name in capsys.readouterr().out


def test_bad_input_is_one_line_and_status_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "framestamp", "synth", str(tmp_path), "--tasks", "dance"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "dance" in result.stderr


def test_bench_hands_every_argument_to_its_benchmark_in_order(monkeypatch):
    import framestamp.benchmarks.peers as peers

    seen = []
    monkeypatch.setattr(peers, "main", lambda arguments: seen.append(list(arguments)) or 0)
    for argv in (["m.jsonl", "--limit", "3"], ["--limit", "3", "m.jsonl"], ["--out", "o", "--limit", "3", "m.jsonl"],
                 ["--out=o", "m.jsonl"]):
        assert main(["bench", "peers", *argv]) == 0
        assert seen[-1] == argv
    with pytest.raises(SystemExit):  # other commands still refuse what they do not take
        main(["locate", "--no-such-option", "clip.wav", "--word", "dog"])
