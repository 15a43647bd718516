"""The grid pointing game (Böhle et al. 2022) of trained models, every explanation method of each.

    python benchmarks/pointing_game.py RUN [RUN ...] --data ../shared/data/pets --name pointing_pets
    python benchmarks/pointing_game.py --quick          # CI: a 1-epoch digits model, 16 mosaics

Each model is shown the same --mosaics 2 x 2 mosaics of its held-out images (at its own input size):
one cell of a target class, three of other classes. Each method's map explains the target class;
the score is the mean share of the map's positive mass in the target's cell (1.0 perfect, 0.25
chance), with its standard error. Give the CNN of the same trunk among the RUNs for Grad-CAM's score
side by side. A picture of the first mosaics and each method's maps goes beside the JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import load_average, quick_digits_run, save

import foveal
from foveal.data.sources import load_evaluation_data
from foveal.explanation.pixels import upsample
from foveal.explanation.pointing import CHANCE, make_mosaics, pointing_game
from foveal.explanation.render import render_method_comparison


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", help="Run folders or .safetensors models (not with --quick).")
    parser.add_argument("--data", help="Held-out data: a data set root, class folders or a built-in.")
    parser.add_argument("--mosaics", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="Which mosaics (the same for every model).")
    parser.add_argument("--sheet", type=int, default=6, help="Mosaics in the picture of the maps.")
    parser.add_argument("--name", default="pointing_game")
    parser.add_argument("--out", type=Path, help="Results folder [default: benchmarks/results].")
    parser.add_argument("--quick", action="store_true", help="CI: train a 1-epoch digits model first.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.models = [quick_digits_run(scratch, "hybrid-nano")]
            args.data, args.mosaics, args.sheet = "digits", 16, 2
        if not args.models or not args.data:
            parser.error("give RUN ... and --data, or --quick")
        measure(args)


def measure(args: argparse.Namespace) -> None:
    load_before = load_average()
    rows, table = [], [f"{'model':<40} {'grid':>6} {'method':<13} {'score':>7} {'± se':>6}"]
    for index, model in enumerate(args.models):
        classifier = foveal.load(model, device="cpu")
        preprocessing = classifier.info.preprocessing
        held_out, description = load_evaluation_data(args.data, classifier.classes, preprocessing)
        mosaics = make_mosaics(held_out.images, held_out.labels, args.mosaics, seed=args.seed)
        started = time.perf_counter()
        scores = pointing_game(classifier, mosaics)
        seconds = time.perf_counter() - started
        config = classifier.info.config
        grid = getattr(config, "grid_size", None)
        name = f"{config.name} ({Path(model).parent.name}/{Path(model).name})"
        for score in scores:
            table.append(
                f"{name[:40]:<40} {'x'.join(map(str, grid)) if grid else '-':>6} {score.method:<13} "
                f"{score.score:>7.3f} {score.standard_error:>6.3f}"
            )
        rows.append(
            {
                "model": model,
                "preset": config.name,
                "img_size": classifier.info.preprocessing.img_size,
                "grid": list(grid) if grid else None,
                "data": description,
                "seconds": round(seconds, 1),
                "scores": [s.to_dict() for s in scores],
            }
        )
        figure = (args.out or Path(__file__).parent / "results") / f"{args.name}_{index}.png"
        draw(classifier, mosaics, args.sheet, figure)
        rows[-1]["figure"] = str(figure)
    print("\n".join(table))
    save(
        args.name,
        {
            "quick": args.quick,
            "mosaics": args.mosaics,
            "seed": args.seed,
            "chance": CHANCE,
            "explained_class": "the target cell's class",
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "models": rows,
            "table": "\n".join(table),
        },
        args.out,
    )


def draw(classifier, mosaics, count: int, path: Path) -> None:
    """The first `count` mosaics with each method's map of their target class."""
    images = mosaics.images[:count]
    normalized = classifier.info.preprocessing.normalize(images)
    maps = {}
    for method in classifier.network.methods:
        token_maps = classifier.network.token_maps(normalized, method, mosaics.targets[:count]).maps
        maps[method] = [m.numpy() for m in upsample(token_maps.detach(), tuple(images.shape[-2:]))]
    cells = ("top left", "top right", "bottom left", "bottom right")
    titles = [
        f"{classifier.classes[int(t)]}: {cells[int(c)]}"
        for t, c in zip(mosaics.targets[:count], mosaics.cells[:count])
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    render_method_comparison([image.permute(1, 2, 0).numpy() for image in images], maps, titles, path)


if __name__ == "__main__":
    main()
