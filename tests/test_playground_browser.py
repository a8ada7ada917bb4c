"""The playground page in a real browser (Playwright driving Debian's chromium), against a live server.

Skipped where there is no browser or no Playwright, except under ``$CI``, where that is a failure
(``.ci/run`` installs chromium; Playwright is in the ``test`` extra).  ``PLAYGROUND_SCREENSHOT=path``
also saves the trained circle page there (how docs/playground.png is made).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from kernel_cases import missing_tool

try:
    import uvicorn
    from playwright.sync_api import sync_playwright
except ImportError as exc:
    missing_tool(f"{exc.name} is not installed (pip install \".[test]\")")

from gpunn.cli.main import cli
from gpunn.playground.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    missing_tool("no chromium to drive (apt-get install chromium)")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", ws="auto")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A page with its console errors collected (a test fails on any)."""

    def __init__(self, browser, url):
        self.context = browser.new_context(viewport={"width": 1400, "height": 950}, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.wait_epoch(lambda e: e >= 0)

    def epoch(self) -> int:
        return int(self.page.get_by_test_id("epoch").text_content().replace(",", ""))

    def wait_epoch(self, ok, timeout=20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.page.get_by_test_id("loss-test").get_attribute("data-value") is not None and ok(self.epoch()):
                return self.epoch()
            self.page.wait_for_timeout(50)
        raise AssertionError(f"epoch {self.epoch()} did not get there")

    def loss(self, which="test") -> float:
        return float(self.page.get_by_test_id(f"loss-{which}").get_attribute("data-value"))

    def close(self):
        self.context.close()
        assert self.errors == [], self.errors


@pytest.fixture
def open_page(browser, server):
    pages = []

    def make(hash_=""):
        page = Page(browser, server + hash_)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def test_the_page_loads_without_console_errors(open_page):
    p = open_page()  # the defaults: circle data, 2-4-2-2 tanh
    values = p.page.get_by_test_id("dataset").locator("option").evaluate_all("options => options.map(o => o.value)")
    assert {"circle", "xor", "gauss", "spiral", "digits"} <= set(values)
    for testid in ("network", "neuron-0-1", "neuron-1-3", "neuron-2-1", "neuron-3-1", "play", "step", "reset",
                   "upload", "save-model", "save-onnx"):
        assert p.page.get_by_test_id(testid).count() == 1, testid
    assert p.epoch() == 0 and p.page.get_by_test_id("message").text_content() == ""
    # Page.close (the fixture's teardown) fails the test on any console error


def test_the_model_and_its_onnx_download(open_page, tmp_path):
    import gpunn

    p = open_page("#dataset=xor&hidden=3")
    p.page.get_by_test_id("step").click()
    p.wait_epoch(lambda e: e == 1)
    for testid, name in (("save-model", "m.npz"), ("save-onnx", "m.onnx")):
        with p.page.expect_download() as download:
            p.page.get_by_test_id(testid).click()
        download.value.save_as(tmp_path / name)
    assert gpunn.load(tmp_path / "m.npz", backend="numpy").sizes == (2, 3, 2)
    assert (tmp_path / "m.onnx").read_bytes()[:2] == b"\x08\x08"


def test_play_makes_epochs_advance_and_the_test_loss_fall_on_circle_data(open_page):
    p = open_page("#dataset=circle&hidden=4,2&lr=0.03&batch=10")
    assert p.page.get_by_test_id("message").text_content() == ""
    start = p.loss()
    p.page.get_by_test_id("play").click()
    p.wait_epoch(lambda e: e >= 150)
    p.page.get_by_test_id("play").click()  # pause
    time.sleep(0.3)
    assert p.loss() < 0.5 * start
    shot = os.environ.get("PLAYGROUND_SCREENSHOT")
    if shot:
        p.page.get_by_test_id("neuron-2-1").click()
        p.page.get_by_test_id("explain").wait_for()
        p.page.mouse.move(5, 600)  # off the network: no tooltip in the picture
        p.page.wait_for_timeout(200)
        p.page.screenshot(path=shot, full_page=True)


def test_adding_a_neuron_redraws_the_network(open_page):
    p = open_page("#dataset=xor&hidden=4,2")
    assert p.page.get_by_test_id("neuron-1-4").count() == 0
    p.page.get_by_test_id("add-neuron-1").click()
    p.page.get_by_test_id("neuron-1-4").wait_for()
    p.wait_epoch(lambda e: e == 0)
    assert "hidden=5%2C2" in p.page.url
    p.page.get_by_test_id("feature-x1x2").click()  # a third input feature joins the network
    p.page.get_by_test_id("neuron-0-2").wait_for()


def test_a_weight_and_a_bias_are_set_by_clicking_them(open_page):
    p = open_page("#dataset=gauss&hidden=2")
    answers = iter(["0.75", "-2.5"])
    p.page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    p.page.get_by_test_id("weight-1-0-1").dispatch_event("click")  # an edge: a curve, clicked where it runs
    p.page.get_by_test_id("bias-2-0").click()
    edge = p.page.get_by_test_id("weight-1-0-1")
    deadline = time.monotonic() + 10
    while float(edge.get_attribute("stroke-width")) != 0.5 + 2 * 0.75 and time.monotonic() < deadline:
        p.page.wait_for_timeout(50)
    assert float(edge.get_attribute("stroke-width")) == 0.5 + 2 * 0.75  # redrawn from the server's frame
    p.page.get_by_test_id("neuron-2-0").hover()
    p.page.get_by_text("bias b = -2.5000").wait_for()


def test_the_url_round_trips(open_page):
    state = "#dataset=spiral&noise=0.1&hidden=3,3&lr=0.1&features=x1,x2,sin%20x1&seed=5&activation=relu&batch=7"
    p = open_page(state)
    p.page.get_by_test_id("neuron-0-2").wait_for()
    p.page.get_by_test_id("neuron-2-2").wait_for()
    assert p.page.get_by_test_id("dataset").input_value() == "spiral"
    assert p.page.locator("#activation").input_value() == "relu"
    first = p.loss()
    url = p.page.url
    p.page.reload()
    p.wait_epoch(lambda e: e == 0)
    assert p.page.url == url and p.loss() == first  # the same data and network again
    p.page.get_by_test_id("step").click()
    p.wait_epoch(lambda e: e == 1)
    after_one = p.loss()
    p.page.reload()
    p.wait_epoch(lambda e: e == 0)
    p.page.get_by_test_id("step").click()
    p.wait_epoch(lambda e: e == 1)
    assert p.loss() == after_one  # and, with the same seed, the same run


def upload(p, name: str, content: bytes):
    p.page.get_by_test_id("upload").set_input_files({"name": name, "mimeType": "text/csv", "buffer": content})


def test_a_three_class_csv_shows_three_colours(open_page):
    from test_playground_api import three_classes_csv

    p = open_page()
    upload(p, "iris.csv", three_classes_csv())
    p.page.get_by_test_id("class-2").wait_for()
    assert p.page.get_by_test_id("legend").text_content() == "setosaversicolorvirginica"
    p.wait_epoch(lambda e: e == 0)
    p.page.wait_for_timeout(300)
    counts = p.page.evaluate("""() => {
        const c = document.getElementById('surface'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const want = [[245,147,34],[8,119,189],[44,160,44]], n = [0,0,0];
        for (let i = 0; i < d.length; i += 4) want.forEach((w, k) => {
            if (Math.abs(d[i]-w[0]) < 3 && Math.abs(d[i+1]-w[1]) < 3 && Math.abs(d[i+2]-w[2]) < 3) n[k]++; });
        return n; }""")
    assert all(count > 20 for count in counts), counts


def test_a_bad_csv_shows_a_message(open_page):
    p = open_page()
    upload(p, "broken.csv", b"label,a,b\n1,2,3\n0,4\n")
    message = p.page.get_by_test_id("message")
    message.filter(has_text="broken.csv").wait_for()
    assert message.text_content() == "broken.csv, line 3: 2 columns, but the first data row has 3"
    assert p.epoch() == 0  # the circle network is still there
    assert p.page.get_by_test_id("dataset").input_value() == "circle" and "dataset=circle" in p.page.url


def test_a_link_to_settings_that_cannot_be_met_falls_back_to_the_defaults_and_says_why(open_page):
    p = open_page("#dataset=csv&hidden=3")  # a link to an uploaded CSV: the file is not in the link
    message = p.page.get_by_test_id("message")
    message.filter(has_text="no CSV uploaded").wait_for()
    p.page.get_by_test_id("neuron-2-1").wait_for()  # the default network, drawn
    assert p.page.get_by_test_id("dataset").input_value() == "circle"


def test_the_explain_panel_equals_gpunn_explain(open_page, server, tmp_path):
    p = open_page("#dataset=gauss&hidden=3,2&lr=0.1")
    for epochs in (1, 2):
        p.page.get_by_test_id("step").click()
        p.wait_epoch(lambda e, n=epochs: e == n)
    p.page.get_by_test_id("neuron-2-1").click()
    panel = p.page.get_by_test_id("explain")
    panel.get_by_test_id("explain-delta").wait_for()
    shown = {key: float(panel.get_by_test_id(f"explain-{key}").get_attribute("data-value"))
             for key in ("v", "y", "delta", "w-next-0", "b-next", "error")}
    sid = p.page.evaluate("document.body.dataset.session")
    for what in ("model.npz", "data.npz"):
        response = p.page.request.get(f"{server}api/session/{sid}/{what}")
        (tmp_path / what).write_bytes(response.body())
    result = CliRunner().invoke(cli, ["explain", "--model", str(tmp_path / "model.npz"), "--dataset",
                                      str(tmp_path / "data.npz"), "--sample", "0", "--lr", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    step = json.loads(result.output.strip().splitlines()[-1])
    expected = {"v": step["layers"][1]["v"][1], "y": step["layers"][1]["y"][1], "delta": step["deltas"][1][1],
                "w-next-0": step["W_next"][1][0][1], "b-next": step["b_next"][1][1], "error": step["error"]}
    for key, value in expected.items():  # the same code on the same numbers, through JSON both ways: exact
        assert shown[key] == value, key


def test_a_drawn_digit_gets_probabilities_summing_to_one(open_page):
    p = open_page("#dataset=digits&hidden=16&lr=0.3")
    p.page.get_by_test_id("play").click()
    p.wait_epoch(lambda e: e >= 3)
    p.page.get_by_test_id("play").click()
    box = p.page.get_by_test_id("digit-canvas").bounding_box()
    x, y = box["x"], box["y"]
    p.page.mouse.move(x + 60, y + 30)
    p.page.mouse.down()
    for px, py in ((100, 30), (100, 130), (60, 130), (60, 30)):  # a zero
        p.page.mouse.move(x + px, y + py, steps=5)
    p.page.mouse.up()
    items = p.page.get_by_test_id("digit-probs").locator("li")
    items.nth(9).wait_for()
    probabilities = [float(items.nth(k).get_attribute("data-value")) for k in range(10)]
    assert sum(probabilities) == pytest.approx(1, abs=1e-6) and min(probabilities) >= 0


def test_three_tabs_train_at_once(open_page):
    pages = [open_page(f"#dataset={name}&hidden=4") for name in ("circle", "xor", "spiral")]
    for p in pages:
        p.page.get_by_test_id("play").click()
    for p in pages:
        p.wait_epoch(lambda e: e >= 20)
    before = [p.epoch() for p in pages]
    time.sleep(0.5)
    assert all(p.epoch() > e for p, e in zip(pages, before))
    assert np.all([p.page.get_by_test_id("message").text_content() == "" for p in pages])


def test_the_regression_switch_works_or_says_why_not(open_page):
    p = open_page()
    caps = p.page.evaluate("fetch('/api/capabilities').then(r => r.json())")
    option = p.page.locator("#problem option[value=regression]")
    if not caps["regression"]:
        assert option.is_disabled() and "identity output layer" in option.get_attribute("title")
        return
    p.page.locator("#problem").select_option("regression")
    p.page.wait_for_function("document.getElementById('legend').textContent.includes('orange')")
    assert p.page.get_by_test_id("dataset").input_value() == "plane" and "dataset=plane" in p.page.url
    p.wait_epoch(lambda e: e == 0)
    start = p.loss()
    p.page.get_by_test_id("play").click()
    p.wait_epoch(lambda e: e >= 100)
    p.page.get_by_test_id("play").click()
    time.sleep(0.3)
    assert p.loss() < 0.5 * start and "R\u00b2" in p.page.locator("#accuracy").text_content()
