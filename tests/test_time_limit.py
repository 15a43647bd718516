"""Work in chunks that stops before a time (explanation/time_limit.py): how a report's explaining
sections keep a `--time` budget when the machine turns slower than the plan measured it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from foveal.explanation.faithfulness import faithfulness
from foveal.explanation.time_limit import NO_LIMIT, TimeLimit
from foveal.models.registry import create_model
from foveal.predictor.network import TorchNetwork


def test_without_a_limit_every_chunk_runs() -> None:
    assert list(NO_LIMIT.chunks(10, 4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert NO_LIMIT.seconds_left() == float("inf")


def test_a_limit_already_past_runs_nothing() -> None:
    assert list(TimeLimit.after(-1.0).chunks(10, 4)) == []


def test_the_next_chunk_runs_only_if_it_would_end_in_time() -> None:
    """Chunks of 0.3 s against 1.0 s: the fourth would end at 1.2 s, so it does not start; the work
    ends before the limit, not a chunk after it."""
    limit = TimeLimit.after(1.0)
    started, ran = time.perf_counter(), 0
    for _ in limit.chunks(100, 1):
        time.sleep(0.3)
        ran += 1
    elapsed = time.perf_counter() - started
    assert 1 <= ran <= 3  # 3 on an idle machine; a slower one fits fewer
    assert elapsed < 1.0 + 0.3 * 0.5  # at most a slowed chunk's overrun, never a whole chunk more


@dataclass(frozen=True)
class FirstChunkOnly:
    """A limit that leaves time for one chunk: what a slow machine's TimeLimit does, without the clock."""

    def chunks(self, total: int, size: int) -> Iterator[slice]:
        yield slice(0, min(size, total))


def test_faithfulness_under_a_limit_scores_the_images_it_had_time_for() -> None:
    """Stopped after its first 4 images, faithfulness gives what it gives on those 4 alone: the same
    maps, curves and random maps (drawn chunk after chunk), and says it measured 4."""
    torch.manual_seed(0)
    model = create_model("foveal-nano", num_classes=3, img_size=16).eval()
    network = TorchNetwork(model)
    images = torch.randn(8, 3, 16, 16)
    methods = ["pool", "gradcam"]
    cut = faithfulness(network, images, methods, steps=4, batch_size=4, limit=FirstChunkOnly())
    alone = faithfulness(network, images[:4], methods, steps=4, batch_size=4)
    assert [s.images for s in cut] == [4, 4, 4] and [s.method for s in cut] == ["pool", "gradcam", "random"]
    for a, b in zip(cut, alone):
        assert a.deletion_curve == b.deletion_curve and a.insertion_vs_random == b.insertion_vs_random
    whole = faithfulness(network, images, methods, steps=4, batch_size=4)
    assert [s.images for s in whole] == [8, 8, 8]
    assert faithfulness(network, images, methods, steps=4, limit=TimeLimit.after(-1.0)) == []
