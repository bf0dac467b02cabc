"""Fixtures shared across test modules. An ONNX export is the suite's slowest setup (about 30 s of
tracing on 2 cores), so each tiny model the modules share is exported once per session: once in all
when run serially, once per pytest-xdist worker that needs it under `make test`."""

import pytest


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """``tiny_export(backbone)`` -> (checkpoint, fp32 artifact) of a random-init tiny preset with a
    look-ahead-2 Poisson head (seed 0). Tests read both and write nothing into them."""
    from framestamp.export.artifact import export_fp32
    from framestamp.runtime.features import DEFAULT_SETTINGS
    from framestamp.training.checkpoint import build_model, save_checkpoint
    from framestamp.training.model import HeadConfig

    made = {}

    def export(backbone: str):
        if backbone not in made:
            folder = tmp_path_factory.mktemp(backbone)
            model = build_model(backbone, HeadConfig(objective="poisson", lookahead=2), seed=0)
            checkpoint = save_checkpoint(model, folder / "checkpoint", features=DEFAULT_SETTINGS.to_json())
            export_fp32(checkpoint, folder / "fp32")
            made[backbone] = checkpoint, folder / "fp32"
        return made[backbone]

    return export
