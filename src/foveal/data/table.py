"""Labels from a table: one row per image, `file_name,label` (a CSV or JSON Lines file).

Kaggle-style data sets and Hugging Face's `imagefolder` convention (a folder holding `metadata.csv`
or `metadata.jsonl`) label images in a table rather than by class folder. `read_table` turns one into
what a folder of class folders gives (files relative to a root, class indices, the sorted class
names) plus each row's split, so the rest (decoding, cache, split manifest, bad files) is the
folders' path. Rows that cannot be used are skipped and reported with their line numbers; the good
rows train.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from foveal.errors import DataError
from foveal.messages import counted

TABLE_SUFFIXES = (".csv", ".jsonl")
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")  # Hugging Face imagefolder's table in a folder
FILE_COLUMNS = ("file_name", "file", "path", "image")  # the first one a table has is used
LABEL_COLUMNS = ("label", "class")
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}  # HF: validation
SHOWN_BAD_ROWS = 8  # the message names this many bad rows, then "and N more"
EXPECTED = (
    "expected a header row naming a file column (file_name, file, path or image) and a label "
    "column (label or class), an optional split column (train, val or test), then one row per image "
    "with its path relative to the table's folder"
)


@dataclass
class BadRow:
    """Rows of a table that are not used, and why."""

    lines: list[int]  # 1-based line numbers in the table file (a conflict names every line)
    reason: str

    def describe(self) -> str:
        """'line 7: empty label', 'lines 20 and 31: ...'"""
        if len(self.lines) == 1:
            return f"line {self.lines[0]}: {self.reason}"
        numbers = ", ".join(map(str, self.lines[:-1])) + f" and {self.lines[-1]}"
        return f"lines {numbers}: {self.reason}"


@dataclass
class LabelTable:
    """The usable rows of a table, in file order.

    root: the folder relative file names are read from (the table's own folder).
    keys: each row's file name as written (relative to `root`, or absolute).
    labels: each row's class index into `classes`, the sorted distinct labels.
    splits: each row's split ("train", "val" or "test"), or None when the table has no split column.
    bad_rows: the rows skipped.
    """

    path: Path
    root: Path
    keys: list[str]
    labels: list[int]
    classes: list[str]
    splits: list[str] | None
    bad_rows: list[BadRow] = field(default_factory=list)

    def file(self, key: str) -> str:
        """The path of the file a row names (an absolute name is kept as it is)."""
        return str(self.root / key)

    def keys_in(self, split: str) -> list[str]:
        """The keys of the rows of `split` (every row's without a split column)."""
        if self.splits is None:
            return list(self.keys)
        return [key for key, s in zip(self.keys, self.splits) if s == split]

    @property
    def skipped_rows(self) -> list[tuple[str, str]]:
        """(table:line, reason) of every row skipped, for a run's skipped.txt."""
        return [(f"{self.path}:{line}", bad.reason) for bad in self.bad_rows for line in bad.lines]

    def bad_rows_message(self) -> str:
        """One line on the rows skipped ('' for none): 'data.csv: 3 rows skipped: line 7: ...'."""
        if not self.bad_rows:
            return ""
        rows = sum(len(bad.lines) for bad in self.bad_rows)
        return f"{self.path.name}: {counted(rows, 'row')} skipped: {_listed(self.bad_rows)}"


def _listed(bad_rows: list[BadRow]) -> str:
    """'line 7: ...; line 12: ...', the first SHOWN_BAD_ROWS, then '; and N more'."""
    shown = "; ".join(bad.describe() for bad in bad_rows[:SHOWN_BAD_ROWS])
    more = len(bad_rows) - SHOWN_BAD_ROWS
    return shown + (f"; and {more} more" if more > 0 else "")


def find_table(source: str | Path) -> Path | None:
    """The table `source` names: a .csv or .jsonl file, or a folder's metadata.csv or
    metadata.jsonl; None when it names none (a folder of class folders, a built-in name)."""
    path = Path(source)
    if path.is_file():
        return path if path.suffix.lower() in TABLE_SUFFIXES else None
    if not path.is_dir():
        return None
    found = [path / name for name in METADATA_NAMES if (path / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{path} holds both {' and '.join(f.name for f in found)}; keep one of them.")
    return found[0] if found else None


def read_table(path: Path) -> LabelTable:
    """The usable rows of the table `path`, with the rows skipped.

    Raises:
        DataError: the file cannot be read, is not valid CSV or JSON Lines, has no file or label
            column, or has no usable row.
    """
    try:
        names, rows = _read_json_lines(path) if path.suffix.lower() == ".jsonl" else _read_csv(path)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason}); save it as UTF-8.") from None
    except OSError as error:
        raise DataError(f"cannot read the table {path}: {error.strerror or error}.") from None
    if not rows:
        raise DataError(f"{path} has no rows; {EXPECTED}.")
    columns = _Columns.of(path, names)
    bad: list[BadRow] = []
    checked: list[_Row] = []
    for line, row in rows:
        entry = row if isinstance(row, str) else columns.check(row)
        if isinstance(entry, str):
            bad.append(BadRow([line], entry))
        else:
            checked.append(_Row(line, *entry))
    kept = [row for row in _drop_repeats(checked, bad) if _exists(path.parent, row, bad)]
    bad.sort(key=lambda b: b.lines[0])
    if not kept:
        raise DataError(f"{path} has no usable rows ({_listed(bad)}); {EXPECTED}.")
    classes = sorted({row.label for row in kept})
    index = {name: i for i, name in enumerate(classes)}
    return LabelTable(
        path=path,
        root=path.parent,
        keys=[row.name for row in kept],
        labels=[index[row.label] for row in kept],
        classes=classes,
        splits=[row.split for row in kept] if columns.split is not None else None,
        bad_rows=bad,
    )


@dataclass(order=True)
class _Row:
    """A row whose values are all there: its line, file name, label and split (None: no column)."""

    line: int
    name: str
    label: str
    split: str | None


@dataclass
class _Columns:
    """Which of a table's columns hold the file name, the label and the split."""

    file: str
    label: str
    split: str | None

    @classmethod
    def of(cls, path: Path, names: list[str]) -> _Columns:
        """The columns among `names` (a CSV's header, or the keys of a JSON Lines file), or a
        DataError naming the columns expected."""
        named = {name.strip().lower(): name for name in names}
        file = next((named[c] for c in FILE_COLUMNS if c in named), None)
        label = next((named[c] for c in LABEL_COLUMNS if c in named), None)
        if file is None or label is None:
            raise DataError(f"{path} has columns {list(names)}; {EXPECTED}.")
        return cls(file, label, named.get(SPLIT_COLUMN))

    def check(self, row: dict[str, object]) -> tuple[str, str, str | None] | str:
        """(file name, label, split) of a row, or why it cannot be used."""
        name, label = _text(row.get(self.file)), _text(row.get(self.label))
        if not name:
            return f"empty {self.file}"
        if not label:
            return f"empty {self.label}"
        if self.split is None:
            return name, label, None
        given = _text(row.get(self.split))
        split = SPLIT_NAMES.get(given.lower())
        if split is None:
            return f"{self.split} {given!r} is not train, val (or validation) or test"
        return name, label, split


def _text(value: object) -> str:
    """A cell as text: a JSON number label (3) reads as "3", a missing or null one as ""."""
    return "" if value is None else str(value).strip()


def _drop_repeats(rows: list[_Row], bad: list[BadRow]) -> list[_Row]:
    """`rows` without repeats of a file: a later row with the same label is a duplicate of the
    first; rows giving one file different labels conflict, and none of them is kept."""
    by_file: dict[str, list[_Row]] = {}
    for row in rows:
        by_file.setdefault(os.path.normpath(row.name), []).append(row)
    kept = []
    for same in by_file.values():
        labels = sorted({row.label for row in same})
        if len(labels) > 1:
            named = " and ".join(map(repr, labels))
            bad.append(BadRow([row.line for row in same], f"{same[0].name} labelled both {named}"))
            continue
        kept.append(same[0])
        first = same[0]
        bad += [BadRow([row.line], f"duplicate of line {first.line} ({row.name})") for row in same[1:]]
    return sorted(kept)


def _exists(root: Path, row: _Row, bad: list[BadRow]) -> bool:
    """Whether the file `row` names is there; if not, the row joins `bad`."""
    path = root / row.name
    if path.is_file():
        return True
    bad.append(BadRow([row.line], f"file {row.name} {'is a folder' if path.is_dir() else 'not found'}"))
    return False


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, object] | str]]]:
    """The header of a CSV file and (line number, row by column, or why it is unusable) of each
    data row; blank lines are passed over."""
    rows: list[tuple[int, dict[str, object] | str]] = []
    with path.open(encoding="utf-8-sig", newline="") as text:  # -sig: as spreadsheets save CSV
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty; {EXPECTED}.")
            for values in reader:
                if not values:
                    continue
                line = reader.line_num  # the row's last line (a quoted value may span several)
                if len(values) == len(header):
                    rows.append((line, dict(zip(header, values))))
                else:
                    columns = counted(len(header), "column")
                    rows.append((line, f"{counted(len(values), 'value')}, but the header names {columns}"))
        except csv.Error as error:
            raise DataError(
                f"{path} line {reader.line_num} is not valid CSV ({error}); {EXPECTED}. A value "
                "holding a comma or a quote is written in double quotes, its quotes doubled."
            ) from None
    return header, rows


def _read_json_lines(path: Path) -> tuple[list[str], list[tuple[int, dict[str, object] | str]]]:
    """Every key of a JSON Lines file (first seen first) and (line number, object) of each
    non-blank line."""
    names: dict[str, None] = {}
    rows: list[tuple[int, dict[str, object] | str]] = []
    with path.open(encoding="utf-8-sig") as text:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                reason = f"got {type(row).__name__}"
            except json.JSONDecodeError as error:
                row, reason = None, str(error)
            if not isinstance(row, dict):
                raise DataError(
                    f"{path} line {number} is not a JSON object ({reason}); expected one object a "
                    'line, such as {"file_name": "cats/1.jpg", "label": "cat"}.'
                )
            names.update(dict.fromkeys(map(str, row)))
            rows.append((number, {str(key): value for key, value in row.items()}))
    return list(names), rows
