"""Schemathesis drives a real `foveal serve` on loopback from the schema it serves (issue #30): every
check, positive and negative modes, bounded in examples and time. It must find no 500, no status the
schema does not document, no answer outside its schema; the server must log no traceback.

Positive cases send real image files (tests/fuzz_images.py), which must get 200; negative cases send
what the schema forbids (bad parameters, wrong types, missing bodies), which must get a 4xx.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from synthetic import tiny_run

from foveal.serving.process import ServerProcess

pytest.importorskip("schemathesis")

EXAMPLES = 150  # per operation and phase
SECONDS = 300  # the whole run's bound (a fuzzer's --max-time would repeat the fuzzing until it is spent)


@pytest.mark.slow  # ~1-2 minutes: several hundred generated requests, many of them explained
def test_schemathesis_finds_nothing_in_the_served_schema(tmp_path: Path) -> None:
    run, _ = tiny_run(tmp_path, "foveal-nano", per_class=4)
    tests_dir = Path(__file__).parent
    with ServerProcess([str(run), "--threads", "1"]) as server:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_images", "PYTHONPATH": str(tests_dir)}
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run", server.url + "/openapi.json",
            "--checks", "all", "--mode", "all",
            "--max-examples", str(EXAMPLES), "--seed", "30",
            "--workers", "1", "--no-color", "--generation-database", "none",
            "--report", "json", "--report-json-path", str(tmp_path / "fuzz.json"),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS)
        summary = done.stdout[-4000:]
        assert done.returncode == 0, summary
        counted = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
        assert counted and int(counted[1]) >= 400 and counted[1] == counted[2], summary
        answers = answered(server)
        assert not [key for key in answers if key[1].startswith("5") and key[1] != "503"], answers
        assert answers.get(("/predict", "200"), 0) + answers.get(("/explain", "200"), 0) >= 20  # real images
        assert "Traceback" not in server.output()
    print(counted[0], json.dumps({f"{path} {status}": n for (path, status), n in sorted(answers.items())}))


def answered(server: ServerProcess) -> dict[tuple[str, str], float]:
    """{(route, status): requests} from the server's /metrics."""
    return {
        (sample.labels["path"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
        if family.name == "foveal_requests"
        for sample in family.samples
        if sample.name == "foveal_requests_total"
    }
