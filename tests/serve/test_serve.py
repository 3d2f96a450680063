"""`vaekit serve`: the explorer's JSON API (good and bad inputs), the page, the CLI, and an
end-to-end check in a real headless Chromium (skipped where none is installed).

The runs are tiny digits models (8x8 images) trained once per module through the CLI; the
clustering and encoder-only variants are untrained models written into copies of a run (their
API paths do not depend on training).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from vaekit.cli import main
from vaekit.core.model import VAE
from vaekit.runs.config import load_run_config, save_json
from vaekit.serve import create_app
from vaekit.serve.app import MAX_BODY_BYTES, MAX_UPLOAD_BYTES, host_name, is_loopback

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--hidden", "64,32", "--quiet", "--no-pictures", "--k", "5", "--epochs", "3"]
CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")


def variant(src: Path, dst: Path, train: dict[str, Any] | None = None, **model: Any) -> Path:
    """A copy of run `src` whose model config has `model` changed, with an untrained model."""
    shutil.copytree(src, dst)
    cfg = load_run_config(dst / "config.json")
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, **model),
        train=dataclasses.replace(cfg.train, **(train or {})),
    )
    save_json(cfg, dst / "config.json")
    VAE.from_config(cfg.model).save(dst / "model.safetensors")
    return dst


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    plain, cond = root / "plain", root / "cond"
    assert main(["train", "--data", "digits", "--out", str(plain), *FAST]) == 0
    args = ["train", "--data", "digits", "--out", str(cond), "--conditional", "--latent-dim", "2"]
    assert main([*args, *FAST]) == 0
    return {
        "plain": plain,
        "cond": cond,
        "cluster": variant(plain, root / "cluster", prior="cluster", num_classes=3, latent_dim=4),
        "encoder": variant(plain, root / "encoder", train={"objective": "infomax"}, decoder=False),
    }


@pytest.fixture(scope="module")
def clients(runs: dict[str, Path]) -> Any:
    before = {name: snapshot(path) for name, path in runs.items()}
    yield {name: TestClient(create_app(path)) for name, path in runs.items()}
    # the server only reads: every run directory is as it was after every request
    assert {name: snapshot(path) for name, path in runs.items()} == before


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def read_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def refused(response: Any, status: int, words: str) -> None:
    """A 4xx with a one-line `detail` that says what is wrong."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.strip() == detail
    assert words in detail, detail


# --- info, page ---------------------------------------------------------------------------------


def test_info_describes_each_kind_of_model(clients: dict[str, TestClient]) -> None:
    plain = clients["plain"].get("/api/info").json()
    assert plain["latent_dim"] == 16 and plain["image_shape"] == [1, 8, 8]
    assert plain["selector"] is None and plain["has_decoder"] and not plain["manifold"]
    assert plain["n_data"] > 100 and plain["data_error"] is None
    cond = clients["cond"].get("/api/info").json()
    assert cond["selector"] == "class" and cond["num_classes"] == 10 and cond["manifold"]
    cluster = clients["cluster"].get("/api/info").json()
    assert cluster["selector"] == "cluster" and cluster["num_classes"] == 3
    assert clients["encoder"].get("/api/info").json()["has_decoder"] is False


def test_page_and_assets_are_served_from_the_package_without_a_cdn(
    clients: dict[str, TestClient],
) -> None:
    c = clients["plain"]
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        r = c.get(asset)
        assert r.status_code == 200
        # offline: no asset loads anything from another host
        assert "http://" not in r.text and "https://" not in r.text, asset
    assert "https://" not in page.text and "http://" not in page.text
    assert c.get("/static/../app.py").status_code == 404
    schema = c.get("/openapi.json").json()
    for path in ("/api/info", "/api/decode", "/api/encode", "/api/sample", "/api/interpolate"):
        assert path in schema["paths"]


# --- decode -------------------------------------------------------------------------------------


def test_decode_gives_an_image_of_the_models_size(clients: dict[str, TestClient]) -> None:
    r = clients["plain"].post("/api/decode", json={"z": [0.1] * 16})
    assert r.status_code == 200
    body = r.json()
    image = read_png(body["image"])
    assert image.shape == (8, 8) and image.dtype == np.uint8
    assert body["values"] is None and body["ms"] >= 0
    other = read_png(clients["plain"].post("/api/decode", json={"z": [2.5] * 16}).json()["image"])
    assert not np.array_equal(image, other)  # z changes the picture


def test_decode_with_a_class_or_cluster(clients: dict[str, TestClient]) -> None:
    cond = clients["cond"]
    a = read_png(cond.post("/api/decode", json={"z": [0.0, 0.0], "y": 1}).json()["image"])
    b = read_png(cond.post("/api/decode", json={"z": [0.0, 0.0], "y": 7}).json()["image"])
    assert not np.array_equal(a, b)  # the class changes the picture at the same z
    assert clients["cluster"].post("/api/decode", json={"z": [0.0] * 4, "y": 2}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"z": [0.0] * 15}, 422, "z must have 16 values"),
        ({"z": [0.0] * 17}, 422, "z must have 16 values"),
        ({"z": []}, 422, "z:"),
        ({"z": [0.0] * 15 + ["x"]}, 422, "z.15"),
        ({"z": [0.0] * 15 + [1e9]}, 422, "z.15"),
        ({"z": [0.0] * 15 + [True]}, 422, "z.15"),
        ({"zz": [0.0] * 16}, 422, "z"),
        ({"z": [0.0] * 16, "extra": 1}, 422, "extra"),
        ({"z": [0.0] * 16, "y": 1}, 422, "no classes"),
        ({}, 422, "z: Field required"),
    ],
)
def test_decode_refuses_bad_vectors(
    clients: dict[str, TestClient], body: dict[str, Any], status: int, words: str
) -> None:
    refused(clients["plain"].post("/api/decode", json=body), status, words)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_decode_refuses_nan_and_infinity(clients: dict[str, TestClient], token: str) -> None:
    # Python's JSON reader accepts these tokens; the API must not decode them
    raw = '{"z": [' + ", ".join(["0"] * 15 + [token]) + "]}"
    r = clients["plain"].post(
        "/api/decode", content=raw, headers={"content-type": "application/json"}
    )
    refused(r, 422, "finite number")


def test_decode_refuses_malformed_bodies(clients: dict[str, TestClient]) -> None:
    c = clients["plain"]
    headers = {"content-type": "application/json"}
    refused(c.post("/api/decode", content="{not json", headers=headers), 422, "not valid JSON")
    refused(c.post("/api/decode"), 422, "JSON body")
    big = b'{"z": [' + b"0," * MAX_BODY_BYTES + b"0]}"
    refused(c.post("/api/decode", content=big, headers=headers), 413, "the limit is")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"z": [0.0, 0.0]}, "give y, a class 0..9"),
        ({"z": [0.0, 0.0], "y": 10}, "y must be a class 0..9, got 10"),
        ({"z": [0.0, 0.0], "y": -1}, "y must be a class 0..9, got -1"),
        ({"z": [0.0, 0.0], "y": "3"}, "y:"),
        ({"z": [0.0, 0.0], "y": 2.5}, "y:"),
    ],
)
def test_decode_refuses_bad_classes(
    clients: dict[str, TestClient], body: dict[str, Any], words: str
) -> None:
    refused(clients["cond"].post("/api/decode", json=body), 422, words)


def test_cluster_index_out_of_range(clients: dict[str, TestClient]) -> None:
    r = clients["cluster"].post("/api/decode", json={"z": [0.0] * 4, "y": 3})
    refused(r, 422, "y must be a cluster 0..2, got 3")


def test_encoder_only_model_encodes_and_refuses_to_decode(clients: dict[str, TestClient]) -> None:
    c = clients["encoder"]
    refused(c.post("/api/decode", json={"z": [0.0] * 16}), 409, "no decoder")
    refused(c.post("/api/sample", json={"n": 2}), 409, "no decoder")
    r = c.post("/api/encode", json={"index": 0})
    assert r.status_code == 200 and r.json()["reconstruction"] is None
    assert len(r.json()["mean"]) == 16


# --- encode -------------------------------------------------------------------------------------


def test_encode_a_data_row_and_the_same_row_uploaded(
    clients: dict[str, TestClient], runs: dict[str, Path]
) -> None:
    c = clients["plain"]
    row = c.post("/api/encode", json={"index": 5}).json()
    assert len(row["mean"]) == 16 and len(row["logvar"]) == 16
    shown = read_png(row["input"])
    assert shown.shape == (8, 8) and read_png(row["reconstruction"]).shape == (8, 8)
    up = c.post("/api/encode", json={"image": data_url(png_bytes(shown))})
    assert up.status_code == 200
    # the PNG round trip quantizes to 8 bits; the code barely moves
    assert np.allclose(up.json()["mean"], row["mean"], atol=0.05)
    # plain base64 (no data-URL prefix) is accepted too
    plain64 = base64.b64encode(png_bytes(shown)).decode()
    assert c.post("/api/encode", json={"image": plain64}).status_code == 200


def test_encode_refuses_bad_uploads(clients: dict[str, TestClient]) -> None:
    c = clients["plain"]
    wrong = png_bytes(np.zeros((28, 28), np.uint8))
    refused(c.post("/api/encode", json={"image": data_url(wrong)}), 422, "takes 8x8")
    refused(c.post("/api/encode", json={"image": "data:image/png;base64,@@@"}), 400, "base64")
    text = base64.b64encode(b"this is not an image").decode()
    refused(c.post("/api/encode", json={"image": text}), 400, "not a readable PNG or JPEG")
    truncated = png_bytes(np.zeros((8, 8), np.uint8))[:40]
    refused(c.post("/api/encode", json={"image": data_url(truncated)}), 400, "PNG or JPEG")
    gif = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif, format="GIF")
    refused(c.post("/api/encode", json={"image": data_url(gif.getvalue())}), 400, "PNG or JPEG")
    oversized = base64.b64encode(b"\0" * (MAX_UPLOAD_BYTES + 1)).decode()
    refused(c.post("/api/encode", json={"image": oversized}), 413, "the limit is")
    refused(c.post("/api/encode", json={}), 422, "exactly one of index")
    refused(c.post("/api/encode", json={"index": 1, "image": text}), 422, "exactly one of index")
    refused(c.post("/api/encode", json={"index": 10**6}), 422, "index must be 0..")
    refused(c.post("/api/encode", json={"index": -1}), 422, "index")


def test_encode_an_upload_for_a_conditional_model_needs_its_class(
    clients: dict[str, TestClient],
) -> None:
    c = clients["cond"]
    image = data_url(png_bytes(np.full((8, 8), 128, np.uint8)))
    refused(c.post("/api/encode", json={"image": image}), 422, "give y")
    assert c.post("/api/encode", json={"image": image, "y": 4}).json()["y"] == 4
    assert c.post("/api/encode", json={"index": 0}).json()["y"] in range(10)  # the row's own


# --- sample, interpolate, scatter, manifold -----------------------------------------------------


def test_sample_draws_repeatably_from_the_prior(clients: dict[str, TestClient]) -> None:
    c = clients["plain"]
    a = c.post("/api/sample", json={"n": 3, "seed": 7}).json()
    b = c.post("/api/sample", json={"n": 3, "seed": 7}).json()
    assert len(a["images"]) == 3 and len(a["z"]) == 3 and len(a["z"][0]) == 16
    assert a == b
    for bad in ({"n": 0}, {"n": 65}, {"n": 2, "seed": -1}, {"n": "2"}):
        refused(c.post("/api/sample", json=bad), 422, "")
    assert len(clients["cond"].post("/api/sample", json={"n": 2, "y": 3}).json()["images"]) == 2
    refused(clients["cond"].post("/api/sample", json={"n": 2}), 422, "give y")
    # a clustering model draws from p(z|y=k) for the chosen cluster, or from p(z)
    assert clients["cluster"].post("/api/sample", json={"n": 2, "y": 1}).status_code == 200
    assert clients["cluster"].post("/api/sample", json={"n": 2}).status_code == 200


def test_interpolate_walks_between_two_inputs(clients: dict[str, TestClient]) -> None:
    c = clients["plain"]
    r = c.post("/api/interpolate", json={"a": {"index": 0}, "b": {"index": 1}, "steps": 5})
    body = r.json()
    assert r.status_code == 200 and len(body["images"]) == 5 and len(body["z"]) == 5
    ends = [c.post("/api/encode", json={"index": i}).json()["mean"] for i in (0, 1)]
    assert np.allclose(body["z"][0], ends[0], atol=1e-5)
    assert np.allclose(body["z"][-1], ends[1], atol=1e-5)
    upload = data_url(png_bytes(read_png(body["a"])))
    r = c.post("/api/interpolate", json={"a": {"index": 0}, "b": {"image": upload}})
    assert r.status_code == 200 and len(r.json()["images"]) == 8
    refused(c.post("/api/interpolate", json={"a": {"index": 0}, "b": {}}), 422, "exactly one")
    refused(
        c.post("/api/interpolate", json={"a": {"index": 0}, "b": {"index": 1}, "steps": 1}),
        422,
        "steps",
    )
    r = clients["cond"].post(
        "/api/interpolate", json={"a": {"index": 0}, "b": {"index": 1}, "y": 11}
    )
    refused(r, 422, "y must be a class")


def test_scatter_and_manifold(clients: dict[str, TestClient]) -> None:
    s = clients["plain"].get("/api/scatter").json()
    n = clients["plain"].get("/api/info").json()["n_data"]
    assert len(s["points"]) == n == len(s["labels"]) and len(s["points"][0]) == 2
    assert s["axes"][0].startswith("PC1")
    assert clients["cond"].get("/api/scatter").json()["axes"] == ["z1", "z2"]
    m = clients["cond"].get("/api/manifold", params={"n": 6, "y": 2}).json()
    assert read_png(m["image"]).shape == (48, 48) and len(m["quantiles"]) == 6
    refused(clients["plain"].get("/api/manifold"), 409, "2-D latent")
    refused(clients["cond"].get("/api/manifold", params={"n": 99, "y": 0}), 422, "n must be")
    refused(clients["cond"].get("/api/manifold", params={"n": "x"}), 422, "n:")


def test_a_run_whose_data_are_gone_still_decodes(runs: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_run_config(runs["plain"] / "config.json")
    moved = tmp_path / "moved"
    shutil.copytree(runs["plain"], moved)
    data = dataclasses.replace(cfg.data, source=str(tmp_path / "gone.csv"))
    save_json(dataclasses.replace(cfg, data=data), moved / "config.json")
    c = TestClient(create_app(moved))
    info = c.get("/api/info").json()
    assert info["n_data"] == 0 and "could not be loaded" in info["data_error"]
    assert c.post("/api/decode", json={"z": [0.0] * 16}).status_code == 200
    refused(c.post("/api/encode", json={"index": 0}), 409, "could not be loaded")
    refused(c.get("/api/scatter"), 409, "could not be loaded")


def test_tabular_runs_travel_as_values_not_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = tmp_path / "table.csv"
    rows = rng.standard_normal((120, 5)).round(4)
    table.write_text("a,b,c,d,e\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    out = tmp_path / "run"
    args = ["train", "--data", str(table), "--out", str(out), "--standardize"]
    assert main([*args, "--likelihood", "gaussian", "--latent-dim", "2", *FAST]) == 0
    c = TestClient(create_app(out))
    info = c.get("/api/info").json()
    assert info["image_shape"] is None and not info["manifold"]
    body = c.post("/api/decode", json={"z": [0.0, 0.0]}).json()
    assert body["image"] is None and len(body["values"]) == 5
    assert len(c.post("/api/encode", json={"index": 0}).json()["input"]) == 5
    image = data_url(png_bytes(np.zeros((5, 1), np.uint8)))
    refused(c.post("/api/encode", json={"image": image}), 422, "not images")
    refused(c.get("/api/manifold"), 409, "not images")


# --- the command --------------------------------------------------------------------------------


def test_serve_command_binds_to_loopback_and_says_so(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.serve import server

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(runs["plain"]), "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/ " in out and "bound to loopback (127.0.0.1)" in out
    assert "token" not in out  # on loopback, as before: no token
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    # on loopback only loopback Host headers are served (no DNS rebinding from a web page)
    assert (
        TestClient(seen["app"], base_url="http://127.0.0.1:8123").get("/api/info").status_code
        == 200
    )
    assert (
        TestClient(seen["app"], base_url="http://evil.example").get("/api/info").status_code == 400
    )
    ipv6 = TestClient(seen["app"], base_url="http://[::1]:8123")
    assert ipv6.get("/api/info").status_code == 200


def test_serve_command_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "not a vaekit run directory" in err and err.count("\n") == 1
    assert main(["serve", str(tmp_path), "--port", "0"]) == 1
    assert "--port must be" in capsys.readouterr().err


def test_host_names() -> None:
    assert host_name("127.0.0.1:8000") == "127.0.0.1" and host_name("LocalHost") == "localhost"
    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


# --- end to end in a real browser ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["loopback", "with-token"])
def test_page_in_headless_chromium_decodes_when_a_slider_moves(
    runs: dict[str, Path], tmp_path: Path, token: str | None
) -> None:
    if not CHROMIUM.exists() or not DRIVER.exists():
        pytest.skip(
            f"no Chromium: {CHROMIUM} or {DRIVER} is missing (apt-get install chromium "
            "chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    import threading

    from vaekit.serve.server import make_server

    # the page under its Content-Security-Policy; with a token it sends the one in its URL
    server = make_server(create_app(runs["plain"], token=token), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1200,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(DRIVER))
    driver = None
    try:
        for _ in range(200):  # the port is chosen by the OS; wait until it is known
            if server.started:
                break
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_script_timeout(20)
        driver.get(f"http://127.0.0.1:{port}/" + (f"?token={token}" if token else ""))

        def pixels() -> list[int]:
            # wait until the page has drawn the decode of the current sliders, then read it
            return driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.vaekitExplorer.settled().then(() => done("
                "window.vaekitExplorer.pixels()));"
            )

        before = pixels()
        assert before and len(before) > 0
        slider = driver.find_element("css selector", "#sliders input[type=range]")
        driver.execute_script(
            "arguments[0].value = 2.5; arguments[0].dispatchEvent(new Event('input'))", slider
        )
        after = pixels()
        assert len(after) == len(before) and after != before  # the decoded image changed
        name = "serve_page_token.png" if token else "serve_page.png"
        shots = [tmp_path / name]
        if os.environ.get("VAEKIT_TEST_ARTIFACTS"):
            folder = Path(os.environ["VAEKIT_TEST_ARTIFACTS"])
            folder.mkdir(parents=True, exist_ok=True)
            shots.append(folder / name)
        for shot in shots:
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
        errors = driver.execute_script("return window.vaekitExplorer.errors")
        assert errors == [], json.dumps(errors)
        console = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert console == [], console  # nothing refused by the CSP, no failed request
    finally:
        if driver is not None:
            driver.quit()
        server.should_exit = True
        thread.join(10)
