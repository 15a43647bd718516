"""Run folders read back: a damaged config.json is named with what is wrong with it, in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from foveal.errors import FovealError
from foveal.runs import read_run_record

DAMAGED = {
    "no train entry": (
        '{"model": {}}',
        'the training options the run started with (its "train" entry) are missing',
    ),
    "train not an object": ('{"train": null}', '(its "train" entry) are not a JSON object'),
    "not an object": ('["train"]', "it is not a JSON object of settings"),
    "not JSON": ('{"train": ', "not valid JSON: Expecting value"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_config_says_what_is_wrong(tmp_path: Path, case: str) -> None:
    text, expected = DAMAGED[case]
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(FovealError) as raised:
        read_run_record(tmp_path, "resumed")
    message = str(raised.value)
    assert expected in message and message.endswith("the run cannot be resumed.")
    assert "('train')" not in message and "KeyError" not in message  # no raw exception text


def test_a_sound_config_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"train": {"model": "foveal-tiny"}, "classes": ["a", "b"]}')
    assert read_run_record(tmp_path, "resumed")["classes"] == ["a", "b"]
