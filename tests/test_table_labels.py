"""Labels from a table (issue #34): data.csv, data.jsonl or a folder's metadata.csv of file_name,label
trains, evaluates and predicts like class folders; its split column is honoured, its bad rows are
skipped and reported by line number, and predict's CSV reads back as a table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clirun import foveal_cli
from synthetic import CLASSES, make_class_folder

from foveal.config import make_train_config
from foveal.data.preprocess import Preprocessing
from foveal.data.sources import (
    count_folder_images,
    default_img_size,
    load_evaluation_data,
    load_training_data,
)
from foveal.data.table import SHOWN_BAD_ROWS, find_table, read_table
from foveal.errors import DataError
from foveal.training.recipe import fit_img_size, is_photo_run

PER_CLASS = 8
# Per class, by image index: the split column's value (train 5, val 2, test 1), HF's name for val once.
SPLITS = ["train"] * 5 + ["val", "validation", "test"]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    return path


def shape_rows(split: bool = False) -> list[list[str]]:
    """One row per image of a `make_class_folder` folder: file_name, label (and split)."""
    return [
        [f"{name}/{i:03d}.png", name] + ([SPLITS[i]] if split else [])
        for name in CLASSES
        for i in range(PER_CLASS)
    ]


# The bad rows appended to a good table, each with the reason the report gives for it. Line 1 is the
# header, so the first of these is line 2 + the number of good rows.
BAD_ROWS = [
    (["circle/missing.png", "circle", "train"], "file circle/missing.png not found"),
    (["square/000.png", "", "train"], "empty label"),
    (["circle/000.png", "circle", "train"], "duplicate of line 2 (circle/000.png)"),
    (["square/001.png", "triangle", "train"], "square/001.png labelled both 'square' and 'triangle'"),
    (["circle/002.png", "circle", "train", "extra"], "4 values, but the header names 3 columns"),
    (
        ["triangle/009.png", "triangle", "holdout"],
        "split 'holdout' is not train, val (or validation) or test",
    ),
]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(run folder, table, stderr) of one CLI run on a CSV with a split column and every kind of
    bad row (shared by the tests below: a run costs seconds)."""
    base = tmp_path_factory.mktemp("table")
    make_class_folder(base / "shapes", per_class=PER_CLASS)
    (base / "shapes" / "triangle" / "009.png").write_bytes(
        (base / "shapes" / "triangle" / "000.png").read_bytes()
    )
    table = write_csv(
        base / "shapes" / "data.csv",
        [["file_name", "label", "split"], *shape_rows(split=True), *(row for row, _ in BAD_ROWS)],
    )
    done = foveal_cli(
        "train", str(table), "--model", "foveal-tiny", "--epochs", "1", "--batch-size", "8",
        "--img-size", "16", "--out", str(base / "runs"), "--no-report",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return base / "runs" / "train", table, done.stderr


def test_the_split_column_is_honoured(table_run: tuple[Path, Path, str]) -> None:
    run, _, _ = table_run
    split = json.loads((run / "split.json").read_text())
    assert split["classes"] == list(CLASSES)
    good_train = [f"{n}/{i:03d}.png" for n in CLASSES for i in range(5) if (n, i) not in {("square", 1)}]
    assert sorted(split["train"]) == sorted(good_train)  # square/001.png: its labels conflict
    assert sorted(split["val"]) == sorted(f"{n}/{i:03d}.png" for n in CLASSES for i in (5, 6))
    config = json.loads((run / "config.json").read_text())
    assert (config["train_images"], config["val_images"]) == (14, 6) and "its split column" in config["data"]


def test_bad_rows_are_reported_in_one_message_with_their_lines(table_run: tuple[Path, Path, str]) -> None:
    run, table, stderr = table_run
    first_bad = 2 + len(CLASSES) * PER_CLASS
    said = [line for line in stderr.splitlines() if "rows skipped" in line]
    assert len(said) == 1, stderr
    message = said[0]
    assert f"data.csv: {len(BAD_ROWS) + 1} rows skipped: " in message  # a conflict skips both its rows
    for offset, (_, reason) in enumerate(BAD_ROWS):
        line = first_bad + offset
        where = f"lines 11 and {line}" if "labelled both" in reason else f"line {line}"
        assert f"{where}: {reason}" in message, message
    recorded = (run / "skipped.txt").read_text().splitlines()
    assert f"{table}:{first_bad}\tfile circle/missing.png not found" in recorded
    assert f"{table}:11\tsquare/001.png labelled both 'square' and 'triangle'" in recorded
    assert len(recorded) == len(BAD_ROWS) + 1


def test_evaluate_takes_the_tables_test_rows(table_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    run, table, _ = table_run
    done = foveal_cli("evaluate", str(run), str(table), "--json", "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["num_samples"] == len(CLASSES) and "its test rows" in result["data"]
    assert len(result["skipped"]) == len(BAD_ROWS) + 1  # the bad rows, with where they are
    assert f"{table}:{2 + len(CLASSES) * PER_CLASS}" in {entry["path"] for entry in result["skipped"]}


def test_predicts_csv_is_a_table_train_reads(table_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    run, table, _ = table_run
    done = foveal_cli("predict", str(run), str(table.parent), "--format", "csv", "-k", "2")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert list(rows[0])[:2] == ["file_name", "label"] and len(rows) == len(CLASSES) * PER_CLASS + 1
    assert {"probability", "label_2", "probability_2", "unknown", "familiarity"} <= set(rows[0])
    # Saved elsewhere (its paths are absolute), it is a table of labels: one row per image.
    predictions = tmp_path / "elsewhere" / "predictions.csv"
    predictions.parent.mkdir()
    predictions.write_text(done.stdout)
    read = read_table(predictions)
    assert not read.bad_rows and len(read.keys) == len(rows)
    assert [read.classes[label] for label in read.labels] == [row["label"] for row in rows]
    # Checked by a person (here: the folder names say the right labels), it trains, every column kept.
    for row in rows:
        row["label"] = Path(row["file_name"]).parent.name
    with predictions.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = load_training_data(str(predictions), 16)  # what `foveal train predictions.csv` reads
    assert data.classes == list(CLASSES) and len(data.train) + len(data.val) == len(rows)
    assert not data.skipped_rows and "stratified auto-split" in data.description


def test_an_all_bad_table_is_one_clear_error(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "shapes", per_class=2)
    table = write_csv(
        tmp_path / "shapes" / "data.csv", [["file_name", "label"], ["nope.png", "circle"], ["", "x"]]
    )
    done = foveal_cli("train", str(table), "--out", str(tmp_path / "runs"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "has no usable rows" in done.stderr and "line 2: file nope.png not found" in done.stderr
    assert (
        "line 3: empty file_name" in done.stderr
        and "expected a header row naming a file column" in done.stderr
    )
    assert not (tmp_path / "runs").exists()


def test_jsonl_and_a_folders_metadata_read_like_csv(tmp_path: Path) -> None:
    """data.jsonl, a folder's metadata.csv (HF imagefolder) and metadata.jsonl; the columns' other
    names (file, path, image; class) and an absolute path; the sorted labels are the classes."""
    root = make_class_folder(tmp_path / "shapes", per_class=4)
    rows = [[f"{n}/{i:03d}.png", n] for n in CLASSES for i in range(4)]
    rows[0][0] = str(root / rows[0][0])  # absolute paths are allowed
    lines = [json.dumps({"image": name, "class": label, "size": 20}) for name, label in rows]
    # A blank line is passed over but counted: the bad row after it is line 14.
    lines += ["", json.dumps({"image": "circle/gone.png", "class": "circle"}), json.dumps({"image": "x"})]
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    said = read_table(root / "data.jsonl").bad_rows_message()
    assert said == "data.jsonl: 2 rows skipped: line 14: file circle/gone.png not found; line 15: empty class"
    write_csv(root / "metadata.csv", [["File_Name", "label"], *rows])
    meta_jsonl = tmp_path / "meta"
    meta_jsonl.mkdir()
    (meta_jsonl / "metadata.jsonl").write_text(
        "\n".join(json.dumps({"path": str(root / n), "label": lab}) for n, lab in rows[1:])
    )
    for source, images in [(root / "data.jsonl", 12), (root, 12), (meta_jsonl, 11)]:
        data = load_training_data(str(source), 16, val_fraction=0.25)
        assert data.classes == list(CLASSES) and len(data.train) + len(data.val) == images, source
        assert data.train.class_counts == [3, 3, 3] or source == meta_jsonl
        assert sorted(data.split["train"] + data.split["val"]) == sorted(read_table(find_table(source)).keys)
    assert find_table(root) == root / "metadata.csv"
    (root / "metadata.jsonl").write_text("")
    with pytest.raises(DataError, match="both metadata.csv and metadata.jsonl"):
        find_table(root)


def test_hugging_faces_split_folders_each_with_a_table(tmp_path: Path) -> None:
    """root/train/metadata.csv beside root/test/metadata.csv: train and held-out as given."""
    for split, count in [("train", 4), ("test", 2)]:
        make_class_folder(tmp_path / split, per_class=count)
        rows = [[f"{n}/{i:03d}.png", n] for n in CLASSES for i in range(count)]
        write_csv(tmp_path / split / "metadata.csv", [["file_name", "label"], *rows])
    data = load_training_data(str(tmp_path), 16)
    assert (len(data.train), len(data.val)) == (12, 6) and "from test/" in data.description
    assert count_folder_images(str(tmp_path)) == (12, 3)
    images, description = load_evaluation_data(str(tmp_path), list(CLASSES), Preprocessing(16))
    assert len(images) == 6 and str(tmp_path / "test" / "metadata.csv") in description
    (tmp_path / "test" / "metadata.csv").unlink()
    with pytest.raises(DataError, match="has no metadata.csv or metadata.jsonl"):
        load_training_data(str(tmp_path), 16)


def test_malformed_tables_say_what_was_expected(tmp_path: Path) -> None:
    make_class_folder(tmp_path, per_class=2)
    cases = {
        "columns.csv": (
            "name,kind\ncircle/000.png,circle\n",
            r"has columns \['name', 'kind'\]; expected a header",
        ),
        "quote.csv": ('file_name,label\ncircle/000.png,"circle\n', "line 2 is not valid CSV"),
        "bad.jsonl": (
            '{"file_name": "circle/000.png", "label": "circle"}\n{"file_name": \n',
            "line 2 is not a JSON",
        ),
        "list.jsonl": ('["circle/000.png", "circle"]\n', "line 1 is not a JSON object .got list"),
        "empty.csv": ("", "is empty"),
        "header.csv": ("file_name,label\n", "has no rows"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=expected):
            load_training_data(str(tmp_path / name), 16)
    write_csv(
        tmp_path / "one.csv", [["file", "label"], ["circle/000.png", "circle"], ["circle/001.png", "circle"]]
    )
    with pytest.raises(DataError, match="one label .'circle'. in its usable rows"):
        load_training_data(str(tmp_path / "one.csv"), 16)
    rows = [
        ["file_name", "label", "split"],
        ["circle/000.png", "circle", "val"],
        ["square/000.png", "square", "test"],
    ]
    with pytest.raises(DataError, match="no rows whose split is train"):
        load_training_data(str(write_csv(tmp_path / "held.csv", rows)), 16)


def test_many_bad_rows_are_capped_with_how_many_more(tmp_path: Path) -> None:
    make_class_folder(tmp_path, per_class=2)
    missing = [[f"circle/gone{i}.png", "circle"] for i in range(SHOWN_BAD_ROWS + 5)]
    table = write_csv(tmp_path / "data.csv", [["file_name", "label"], *shape_rows()[:2], *missing])
    message = read_table(table).bad_rows_message()
    assert message.startswith(f"data.csv: {SHOWN_BAD_ROWS + 5} rows skipped: line 4: file circle/gone0.png")
    assert message.count("not found") == SHOWN_BAD_ROWS and message.endswith("; and 5 more")


def test_evaluation_rows_and_labels(tmp_path: Path) -> None:
    make_class_folder(tmp_path, per_class=2)
    only_train = write_csv(
        tmp_path / "train.csv", [["file_name", "label", "split"], ["circle/000.png", "circle", "train"]]
    )
    with pytest.raises(DataError, match="no test or val rows"):
        load_evaluation_data(str(only_train), list(CLASSES), Preprocessing(16))
    val_rows = write_csv(
        tmp_path / "val.csv",
        [
            ["file_name", "label", "split"],
            ["circle/000.png", "circle", "train"],
            ["square/000.png", "square", "val"],
        ],
    )
    images, description = load_evaluation_data(str(val_rows), list(CLASSES), Preprocessing(16))
    assert len(images) == 1 and images.labels.tolist() == [1] and "its val rows" in description
    strange = write_csv(tmp_path / "strange.csv", [["file_name", "label"], ["circle/000.png", "oval"]])
    with pytest.raises(DataError, match=r"labels \['oval'\] that the model does not know"):
        load_evaluation_data(str(strange), list(CLASSES), Preprocessing(16))


def test_planning_counts_and_sizes_a_table(tmp_path: Path) -> None:
    """The counting before decoding (images, classes, the data's side, the photo rule) reads a table."""
    make_class_folder(tmp_path / "photos", per_class=4, size=72)
    split = ["train", "train", "train", "test"]
    rows = [[f"{n}/{i:03d}.png", n, split[i]] for n in CLASSES for i in range(4)]
    table = write_csv(tmp_path / "photos" / "data.csv", [["file_name", "label", "split"], *rows])
    assert count_folder_images(str(table)) == (9, 3)  # its train rows: the test rows are held out
    plain = write_csv(tmp_path / "photos" / "plain.csv", [["file_name", "label"], *(r[:2] for r in rows)])
    assert count_folder_images(str(plain), val_fraction=0.25) == (9, 3)
    assert default_img_size(str(table)) == 72
    config = make_train_config(data=str(table))
    assert is_photo_run(config, 72)
    assert fit_img_size(config, 72, training_gflops=1000.0) == 72  # 9 images: the plan affords 72 px
