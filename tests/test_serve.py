"""`foveal serve` as a real process on loopback: answers, limits, bad input, overload (issue #14).

Every bad-input case checks its status code and JSON error, then that the server is still ready and
still answers a good image. The body limit is checked on the wire, with raw sockets where an HTTP
client would refuse to send what a hostile one sends (a malformed Content-Length, a chunked body that
never ends), and by the server's resident memory: an over-limit body is never held.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import re
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from synthetic import tiny_run, with_threshold
from wire import assert_json_error, assert_still_serving, bomb_png, png_bytes, raw_http

import foveal
from foveal.serving.process import ServerProcess

MAX_BYTES = 100_000  # the servers' body limit here


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("serve"), "foveal-nano", per_class=6)


@pytest.fixture(scope="module")
def server(run_and_data: tuple[Path, Path]):
    run, _ = run_and_data
    args = [str(run), "--max-bytes", str(MAX_BYTES), "--max-pixels", "1000000", "--threads", "1"]
    with ServerProcess(args) as process:
        yield process


@pytest.fixture(scope="module")
def image_file(run_and_data: tuple[Path, Path]) -> Path:
    _, data = run_and_data
    return sorted(p for p in data.rglob("*.png"))[0]


def test_predict_takes_a_form_file_or_the_raw_body_and_agrees_with_the_library(
    server: ServerProcess, run_and_data: tuple[Path, Path], image_file: Path
) -> None:
    run, _ = run_and_data
    expected = foveal.load(run, device="cpu").predict([image_file], top_k=2)[0]
    data = image_file.read_bytes()
    as_form = httpx.post(server.url + "/predict?top_k=2", files={"file": ("a.png", data, "image/png")})
    as_body = httpx.post(server.url + "/predict?top_k=2", content=data, headers={"content-type": "image/png"})
    for answer in (as_form, as_body):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [p["label"] for p in body["predictions"]] == expected.labels
        assert [p["score"] for p in body["predictions"]] == pytest.approx(expected.probabilities, abs=1e-5)
        assert body["model"].startswith("foveal-nano@") and body["time_ms"] > 0
        assert body["unknown"] == expected.unknown and body["label"] == expected.label
        assert body["familiarity"] == pytest.approx(expected.familiarity, abs=1e-4)
    off = httpx.post(
        server.url + "/predict?reject=false", files={"file": ("a.png", data, "image/png")}
    ).json()
    assert off["familiarity"] is None and off["unknown"] is False and off["label"] == expected.labels[0]


def test_an_image_below_the_threshold_is_answered_unknown(
    run_and_data: tuple[Path, Path], image_file: Path, tmp_path: Path
) -> None:
    run, _ = run_and_data
    model = with_threshold(run, tmp_path / "model.safetensors", float("inf"))  # nothing is familiar
    nearest = foveal.load(run, device="cpu").predict([image_file], top_k=2)[0].labels
    form = {"file": ("a.png", image_file.read_bytes(), "image/png")}
    with ServerProcess([str(model), "--threads", "1"]) as process:
        for route in ("/predict?top_k=2", "/explain?top_k=2&method=pool"):
            body = httpx.post(process.url + route, files=form).json()
            assert body["label"] == "unknown" and body["unknown"] is True, route
            assert [p["label"] for p in body["predictions"]] == nearest  # the nearest classes, still
        kept = httpx.post(process.url + "/predict?top_k=2&reject=false", files=form).json()
        assert kept["label"] == nearest[0] and kept["unknown"] is False


def test_explain_gives_the_map_on_its_grid_and_an_overlay_png(
    server: ServerProcess, image_file: Path
) -> None:
    info = httpx.get(server.url + "/info").json()
    for method in info["methods"]:
        answer = httpx.post(
            server.url + f"/explain?method={method}",
            files={"file": ("a.png", image_file.read_bytes(), "image/png")},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        h, w = body["grid"]
        assert (
            body["method"] == method and len(body["map"]) == h and all(len(row) == w for row in body["map"])
        )
        assert body["target"] == body["predictions"][0]["label"]
        overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
        assert overlay.format == "PNG" and min(overlay.size) >= 224


def test_info_names_the_weights_and_metrics_count_the_requests(
    server: ServerProcess, run_and_data: tuple[Path, Path]
) -> None:
    run, _ = run_and_data
    info = httpx.get(server.url + "/info").json()
    weights = run / "weights" / "best.safetensors"
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["classes"] == foveal.load(run, device="cpu").classes
    assert info["preprocessing"]["img_size"] == 16 and info["runtime"] == "torch"
    assert info["limits"]["max_bytes"] == MAX_BYTES
    assert info["default_method"] == "rollout" and info["default_method"] in info["methods"]
    assert httpx.get(server.url + "/livez").json() == {"status": "alive"}
    httpx.post(server.url + "/predict", content=png_bytes(), headers={"content-type": "image/png"})
    metrics = httpx.get(server.url + "/metrics").text
    assert 'foveal_requests_total{path="/predict",status="200"}' in metrics
    assert "foveal_request_seconds_bucket" in metrics and "foveal_batch_size_count" in metrics
    assert "foveal_requests_in_flight" in metrics
    assert "/predict" in httpx.get(server.url + "/openapi.json").json()["paths"]


BAD_REQUESTS = {
    # name: (body, content type, status)
    "garbage bytes": (b"this is not an image at all" * 10, "image/png", 422),
    "zero bytes": (b"", "image/jpeg", 422),
    "truncated PNG": (png_bytes()[:40], "image/png", 422),
    "decompression bomb": (bomb_png(), "image/png", 422),
    "over the pixel limit": (png_bytes(size=1200), "image/png", 422),
    "a text type": (b"hello", "text/plain", 415),
    "no content type": (b"hello", "", 415),
    "JSON": (b'{"image": "cat.jpg"}', "application/json", 415),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_up(server: ServerProcess, case: str) -> None:
    body, content_type, status = BAD_REQUESTS[case]
    headers = {"content-type": content_type} if content_type else {}
    for route in ("/predict", "/explain"):
        assert_json_error(httpx.post(server.url + route, content=body, headers=headers), status)
    assert_still_serving(server, png_bytes())


def test_bad_forms_and_parameters(server: ServerProcess) -> None:
    url = server.url + "/predict"
    assert_json_error(httpx.post(url, files={"file": ("a.txt", b"hello", "text/plain")}), 415)
    no_file = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nno file here\r\n--xyz--\r\n'
    form_type = {"content-type": "multipart/form-data; boundary=xyz"}
    assert "no file" in assert_json_error(httpx.post(url, content=no_file, headers=form_type), 422)["error"]
    good = {"content": png_bytes(), "headers": {"content-type": "image/png"}}
    assert "top_k" in assert_json_error(httpx.post(url + "?top_k=many", **good), 422)["error"]
    assert_json_error(httpx.post(url + "?top_k=0", **good), 422)
    nope = assert_json_error(httpx.post(server.url + "/explain?method=nope", **good), 422)["error"]
    assert "method" in nope and "'rollout'" in nope  # the four methods, named
    assert_json_error(httpx.get(server.url + "/nowhere"), 404)
    assert_json_error(httpx.get(server.url + "/predict"), 405)
    broken_form = b"--xyz\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\nunterminated"
    answer = httpx.post(
        url, content=broken_form, headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert 400 <= answer.status_code < 500 and answer.json()["error"]
    assert_still_serving(server, png_bytes())


def padded_png(total: int) -> bytes:
    """A decodable PNG padded with trailing bytes (which decoders ignore) to exactly `total` bytes."""
    image = png_bytes()
    return image + b"\0" * (total - len(image))


def test_the_body_limit_is_exact_and_refuses_before_reading(server: ServerProcess) -> None:
    headers = {"content-type": "image/png"}
    at_limit = httpx.post(server.url + "/predict", content=padded_png(MAX_BYTES), headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    over = httpx.post(server.url + "/predict", content=padded_png(MAX_BYTES + 1), headers=headers)
    assert "limit" in assert_json_error(over, 413)["error"]
    form_over = httpx.post(
        server.url + "/predict", files={"file": ("a.png", padded_png(MAX_BYTES), "image/png")}
    )
    assert_json_error(form_over, 413)  # the form's own bytes take it over the limit

    def chunked(body: bytes):
        yield from (body[i : i + 8192] for i in range(0, len(body), 8192))

    chunked_over = httpx.post(
        server.url + "/predict", content=chunked(padded_png(MAX_BYTES + 1)), headers=headers
    )
    assert_json_error(chunked_over, 413)
    chunked_at = httpx.post(server.url + "/predict", content=chunked(padded_png(MAX_BYTES)), headers=headers)
    assert chunked_at.status_code == 200
    assert_still_serving(server, png_bytes())


def test_a_malformed_content_length_gets_400(server: ServerProcess) -> None:
    for length in (b"-5", b"ten", b"5, 6"):
        request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: " + length
        answer = raw_http(server, request + b"\r\n\r\nhello")
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert_still_serving(server, png_bytes())


@pytest.mark.slow  # ~10 s: streams until the limit; the default suite keeps the Content-Length refusals
def test_an_endless_chunked_body_is_refused_without_being_held(server: ServerProcess) -> None:
    """64 MB offered in 64 KB chunks to a server with a 100 KB limit: 413, and the server's memory
    does not grow by anything near what was offered."""
    before = server.rss_bytes()
    request = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer = raw_http(server, request, body_chunks=1024, chunk=b"\xff" * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    grown = server.rss_bytes() - before
    assert grown < 16 * 2**20, f"the server grew by {grown / 2**20:.1f} MiB"
    assert_still_serving(server, png_bytes())


def test_the_page_and_the_docs_are_served(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script" in page.text and not re.search(r'(src|href)="(https?:)?//', page.text)  # no CDN
    assert httpx.get(server.url + "/docs").status_code == 200


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_past_the_queue_limit_the_server_answers_503_with_retry_after(
    run_and_data: tuple[Path, Path], image_file: Path
) -> None:
    run, _ = run_and_data
    args = [str(run), "--max-queue", "1", "--max-batch", "1", "--threads", "1"]
    with ServerProcess(args) as server:
        data = image_file.read_bytes()

        def explain(_: int) -> httpx.Response:  # the slowest route, so that requests pile up
            return httpx.post(
                server.url + "/explain", content=data, headers={"content-type": "image/png"}, timeout=60
            )

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(explain, range(48)))
        statuses = sorted({a.status_code for a in answers})
        assert statuses == [200, 503], statuses
        refused = [a for a in answers if a.status_code == 503]
        assert all(a.headers["retry-after"] == "1" and "busy" in a.json()["error"] for a in refused)
        assert_still_serving(server, data)
        metrics = httpx.get(server.url + "/metrics").text
        assert 'foveal_requests_total{path="/explain",status="503"}' in metrics


def test_a_request_past_the_timeout_gets_504(run_and_data: tuple[Path, Path], image_file: Path) -> None:
    run, _ = run_and_data
    with ServerProcess([str(run), "--timeout", "0.000001", "--threads", "1"]) as server:
        answer = httpx.post(
            server.url + "/predict", content=image_file.read_bytes(), headers={"content-type": "image/png"}
        )
        assert "no answer within" in assert_json_error(answer, 504)["error"]
        assert httpx.get(server.url + "/readyz").status_code == 200


def test_serving_a_missing_model_fails_before_listening(tmp_path: Path) -> None:
    from clirun import foveal_cli

    done = foveal_cli("serve", str(tmp_path / "nothing-here"))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "nothing-here" in done.stderr
    done = foveal_cli("serve", str(tmp_path), "--runtime", "onnx")
    assert done.returncode == 1 and "foveal export" in done.stderr


@pytest.mark.slow  # ~18 s: exports, then starts a second server (the default suite: test_onnx_model)
def test_an_exported_onnx_model_is_served_by_onnxruntime(
    run_and_data: tuple[Path, Path], image_file: Path
) -> None:
    """`--runtime onnx` on a run folder serves the model.onnx of its bundle, with the labels and scores
    PyTorch gives, and the maps the graph carries."""
    run, _ = run_and_data
    bundle = foveal.export(run, format="onnx", parity_images=16)
    expected = foveal.load(run, device="cpu").predict([image_file], top_k=2)[0]
    data = image_file.read_bytes()
    for args in ([str(run), "--runtime", "onnx"], [str(bundle / "model.onnx")]):
        with ServerProcess([*args, "--threads", "1"]) as server:
            info = httpx.get(server.url + "/info").json()
            assert (
                info["runtime"] == "onnx"
                and info["weights_sha256"] == hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
            )
            answer = httpx.post(
                server.url + "/predict?top_k=2", content=data, headers={"content-type": "image/png"}
            )
            predictions = answer.json()["predictions"]
            assert [p["label"] for p in predictions] == expected.labels
            assert [p["score"] for p in predictions] == pytest.approx(expected.probabilities, abs=1e-4)
            explained = httpx.post(
                server.url + "/explain?method=pool", content=data, headers={"content-type": "image/png"}
            )
            assert explained.status_code == 200 and explained.json()["method"] == "pool"


@pytest.mark.slow  # ~25 s: two uvicorn worker processes each load and warm the model
def test_two_worker_processes_serve_one_model_and_one_count_of_requests(
    run_and_data: tuple[Path, Path], image_file: Path
) -> None:
    run, _ = run_and_data
    with ServerProcess([str(run), "--workers", "2", "--threads", "1"]) as server:
        data = image_file.read_bytes()
        deadline, ready_in_a_row = time.monotonic() + 60, 0
        while ready_in_a_row < 10 and time.monotonic() < deadline:  # each worker loads its own model
            ready_in_a_row = ready_in_a_row + 1 if httpx.get(server.url + "/readyz").status_code == 200 else 0
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        server.url + "/predict", content=data, headers={"content-type": "image/png"}
                    ),
                    range(12),
                )
            )
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["predictions"][0]["label"] for a in answers}) == 1
        # Whichever worker a scrape reaches, it counts every worker's requests (each scrape is itself
        # counted once it is answered, hence the /metrics count rising by one each time).
        for scrape in range(8):
            families = text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
            counts = {
                (s.labels["path"], s.labels["status"]): s.value
                for family in families
                if family.name == "foveal_requests"
                for s in family.samples
                if s.name == "foveal_requests_total"
            }
            assert counts[("/predict", "200")] == 12
            assert counts.get(("/metrics", "200"), 0) == scrape
