"""The playground's server through Starlette's test client: sessions, frames, bad input, and that its
numbers are gpunn's own (the arithmetic panel equals ``gpunn explain``; the command line it shows
reproduces the run).  The page itself is tested in a browser by tests/test_playground_browser.py."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from kernel_cases import missing_tool

try:
    with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client; httpx still works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
except ImportError:
    missing_tool('Starlette is not installed (pip install ".[test]")')

import gpunn
from gpunn.cli.main import cli
from gpunn.playground import datasets
from gpunn.playground.app import create_app
from gpunn.playground.data import MAX_UPLOAD
from gpunn.playground.session import Session
from gpunn.playground.settings import SettingsError, parse

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SMALL = {"dataset": "circle", "hidden": [4, 2], "lr": 0.03, "batch": 10, "points": 200}


def decode(frame: bytes):
    length = int.from_bytes(frame[:4], "little")
    header = json.loads(frame[4:4 + length])
    return header, np.frombuffer(frame[4 + length:], dtype="<f4")


@contextlib.contextmanager
def serving(**options):
    """A test client of a fresh app; sockets a failed test left open are closed (else the client's exit waits
    for them forever)."""
    with TestClient(create_app(**options)) as c:
        c.sockets = []
        try:
            yield c
        finally:
            for ws in list(c.sockets):
                close(ws)


@pytest.fixture
def client():
    with serving() as c:
        yield c


def close(ws) -> None:
    """End a tab's socket (once)."""
    if ws in ws.owner.sockets:
        ws.owner.sockets.remove(ws)
        ws.__exit__(None, None, None)


def receive(ws, kind: str, limit: int = 500):
    """The next message of ``kind`` ("frame" for binary frames), skipping others."""
    for _ in range(limit):
        message = ws.receive()
        if message.get("bytes") is not None:
            if kind == "frame":
                return decode(message["bytes"])
            continue
        if message.get("text") is not None:
            data = json.loads(message["text"])
            if data["type"] == kind:
                return data
            if data["type"] == "error" and kind != "error":
                raise AssertionError(f"unexpected error: {data['message']}")
    raise AssertionError(f"no {kind} message")


def open_session(client, settings=SMALL):
    ws = client.websocket_connect("/api/ws")
    ws.__enter__()
    ws.owner = client
    client.sockets.append(ws)
    hello = ws.receive_json()
    assert hello["type"] == "hello"
    ws.send_json({"type": "configure", "settings": settings})
    data = receive(ws, "data")
    return ws, hello["session"], data


def test_capabilities_say_what_is_disabled_and_why(client):
    caps = client.get("/api/capabilities").json()
    assert {"sigmoid", "tanh", "relu"} <= set(caps["activations"])
    assert "L1" in caps["notices"] and "L1" not in caps["regularizations"]
    assert caps["regression"] == ("plane" in caps["datasets"])


def test_frames_carry_every_drawn_neurons_picture_and_play_step_pause(client):
    ws, sid, data = open_session(client, {**SMALL, "features": ["x1", "x2", "x1x2"]})
    assert data["sizes"] == [3, 4, 2, 2] and data["classes"] == ["0", "1"]
    assert len(data["train"]["xy"]) == 100 and set(data["train"]["label"]) == {0, 1}
    header, maps = receive(ws, "frame")
    assert header["epoch"] == 0 and header["maps"] == [3, 4, 2, 2]
    assert maps.size == sum(header["maps"]) * header["grid"] ** 2
    assert np.isfinite(maps).all()
    outputs = maps[-2 * 2500:].reshape(2, 2500)  # the softmax layer's two maps: probabilities
    np.testing.assert_allclose(outputs.sum(axis=0), 1, rtol=1e-5)
    ws.send_json({"type": "step"})
    header, _ = receive(ws, "frame")
    assert header["epoch"] == 1
    ws.send_json({"type": "play"})
    start = time.monotonic()
    while header["epoch"] < 30 and time.monotonic() - start < 20:
        header, _ = receive(ws, "frame")
    assert header["epoch"] >= 30
    ws.send_json({"type": "pause"})
    time.sleep(0.3)
    session = client.app.state.sessions.get(sid)
    paused_at = session.net.epochs_done
    time.sleep(0.3)
    assert session.net.epochs_done == paused_at
    close(ws)


def test_closing_the_tab_stops_its_training_within_a_second(client):
    ws, sid, _ = open_session(client)
    session = client.app.state.sessions.get(sid)
    ws.send_json({"type": "play"})
    receive(ws, "frame")
    close(ws)
    assert session.join(1.0), "the training thread still runs a second after the tab closed"
    assert sid not in client.app.state.sessions.open


def test_a_session_over_the_limit_is_told_so():
    with serving(limit=2) as c:
        first, second = open_session(c)[0], open_session(c)[0]
        with c.websocket_connect("/api/ws") as third:
            message = third.receive_json()
            assert message["type"] == "error" and "limit" in message["message"]
        for ws in (first, second):
            close(ws)


def test_idle_sessions_expire_and_their_tab_is_told():
    with serving(idle_seconds=0.5) as c:
        ws, sid, _ = open_session(c)
        ws.send_json({"type": "ping"})  # not a use
        time.sleep(0.6)
        c.portal.call(c.app.state.expire)
        assert "expired" in receive(ws, "error")["message"]
        assert sid not in c.app.state.sessions.open
        close(ws)


@pytest.mark.parametrize("settings, words", [
    ({"lr": -1}, "lr must be a finite number"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"hidden": [10**9]}, "needs"),
    ({"hidden": [4, 0]}, "hidden must be between 1"),
    ({"batch": 0}, "batch must be between"),
    ({"noise": 2}, "noise must be"),
    ({"regularization": "L1"}, "L2 weight decay only"),
    ({"regularization": "L2", "reg_rate": 1000, "lr": 3}, "grows without bound"),
    ({"features": []}, "features must be"),
    ({"dataset": "../etc/passwd"}, "dataset"),
    ({"colour": 1}, "unknown setting"),
])
def test_nonsense_settings_get_one_line_and_the_tab_keeps_training(client, settings, words):
    ws, sid, _ = open_session(client)
    ws.send_json({"type": "play"})
    ws.send_json({"type": "configure", "settings": {**SMALL, **settings}})
    error = receive(ws, "error")
    assert words in error["message"] and "\n" not in error["message"]
    session = client.app.state.sessions.get(sid)
    epochs = session.net.epochs_done
    time.sleep(0.2)
    assert session.net.epochs_done > epochs  # the old network trains on
    close(ws)


def test_nan_and_unexpected_messages_are_answered_with_one_line(client):
    ws, _, _ = open_session(client)
    ws.send_text('{"type": "configure", "settings": {"lr": NaN}}')
    assert "finite" in receive(ws, "error")["message"]
    ws.send_text("hello?")
    assert "not JSON" in receive(ws, "error")["message"]
    ws.send_bytes(b"\x00\x01")
    assert "binary" in receive(ws, "error")["message"]
    ws.send_json({"type": "launch"})
    assert "unexpected message type" in receive(ws, "error")["message"]
    ws.send_json({"type": "set_weight", "layer": 1, "source": 0, "target": 0, "value": "big"})
    assert "finite number" in receive(ws, "error")["message"]
    ws.send_json({"type": "explain", "layer": 7, "neuron": 0})
    assert "does not exist" in receive(ws, "error")["message"]
    close(ws)


def test_a_weight_set_by_hand_is_the_networks(client):
    ws, sid, _ = open_session(client)
    receive(ws, "frame")
    ws.send_json({"type": "set_weight", "layer": 2, "source": 1, "target": 0, "value": -1.25})
    header, _ = receive(ws, "frame")
    assert header["weights"][1][1][0] == -1.25 and header["edited"]
    assert client.app.state.sessions.get(sid).net.get_weights()[2][1, 0] == np.float32(-1.25)
    close(ws)


def test_http_errors_are_json_4xx(client):
    assert client.get("/api/session/nope/model.npz").status_code == 404
    ws, sid, _ = open_session(client)
    r = client.post(f"/api/session/{sid}/explain", content=b"not json")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    r = client.post(f"/api/session/{sid}/explain", json={"layer": 1, "neuron": 99})
    assert r.status_code == 400 and "neurons 0 to 3" in r.json()["error"]
    r = client.get(f"/api/session/{sid}/etc-passwd")
    assert r.status_code == 404 and "nothing called" in r.json()["error"]
    r = client.post(f"/api/session/{sid}/digit", json={"pixels": [1] * 64})
    assert r.status_code == 400 and "digits data set" in r.json()["error"]
    close(ws)


def test_a_bug_of_ours_is_a_500_with_one_log_line_and_no_traceback(client, caplog, monkeypatch):
    ws, sid, _ = open_session(client)
    session = client.app.state.sessions.get(sid)
    monkeypatch.setattr(session, "data_bytes", lambda: 1 / 0)
    with caplog.at_level("ERROR"):
        r = client.get(f"/api/session/{sid}/data.npz")
    assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]
    assert [rec.getMessage() for rec in caplog.records] == [
        f"playground: ZeroDivisionError on /api/session/{sid}/data.npz: division by zero"]
    assert all(rec.exc_info is None for rec in caplog.records)
    close(ws)


def test_uploads_too_large_or_malformed_are_refused_with_one_line(client):
    ws, sid, _ = open_session(client)
    r = client.post(f"/api/session/{sid}/upload?name=big.csv", content=b"0," * (MAX_UPLOAD // 2 + 1))
    assert r.status_code == 400 and "20 MB" in r.json()["error"]
    r = client.post(f"/api/session/{sid}/upload?name=../../secret/bad.csv", content=b"1,2,3\n0,1\n")
    assert r.status_code == 200 and r.json()["name"] == "bad.csv"
    ws.send_json({"type": "configure", "settings": {**SMALL, "dataset": "csv"}})
    message = receive(ws, "error")["message"]
    assert message == "bad.csv, line 2: 2 columns, but the first data row has 3"  # gpunn's reader's words
    client.post(f"/api/session/{sid}/upload?name=words.csv", content=b"a,b\n1,x\n")
    ws.send_json({"type": "configure", "settings": {**SMALL, "dataset": "csv"}})
    assert "is not a number" in receive(ws, "error")["message"]
    close(ws)


def three_classes_csv(n=90) -> bytes:
    rng = np.random.default_rng(3)
    rows = ["species,a,b,c"]
    for i in range(n):
        k = i % 3
        a, b, c = rng.normal([k * 3, -k * 2, k], 0.5)
        rows.append(f"{['setosa', 'versicolor', 'virginica'][k]},{a:.3f},{b:.3f},{c:.3f}")
    return "\n".join(rows).encode()


def test_a_three_class_csv_trains_with_softmax_and_names_its_classes(client):
    ws, sid, _ = open_session(client)
    client.post(f"/api/session/{sid}/upload?name=iris.csv", content=three_classes_csv())
    ws.send_json({"type": "configure", "settings": {**SMALL, "dataset": "csv", "surface": [0, 2]}})
    data = receive(ws, "data")
    assert data["classes"] == ["setosa", "versicolor", "virginica"] and data["sizes"][-1] == 3
    assert data["kind"] == "user" and data["surface"] == [0, 2] and data["columns"] == ["a", "b", "c"]
    header, maps = receive(ws, "frame")
    assert header["maps"][-1] == 3 and header["output"] == "softmax"
    close(ws)


def test_a_drawn_digit_gets_probabilities_summing_to_one(client):
    ws, sid, data = open_session(client, {**SMALL, "dataset": "digits", "hidden": [16]})
    assert data["sizes"] == [64, 16, 10] and data["extent"] is None
    header, pictures = receive(ws, "frame")
    assert header["weight_maps"] == 16 and pictures.size == 16 * 64  # layer 1's weights, 8x8 per neuron
    session = client.app.state.sessions.get(sid)
    np.testing.assert_array_equal(pictures.reshape(16, 64), session.net.get_weights()[0].T)
    for _ in range(3):
        ws.send_json({"type": "step"})
    pixels = (gpunn.load_dataset("digits").X_test[0] * 16).round().astype(int).tolist()
    ws.send_json({"type": "digit", "pixels": pixels})
    reply = receive(ws, "digit")
    assert len(reply["probabilities"]) == 10 and abs(sum(reply["probabilities"]) - 1) < 1e-6
    ws.send_json({"type": "digit", "pixels": [17] * 64})
    assert "0 to 16" in receive(ws, "error")["message"]
    close(ws)


def trained_session(client, epochs=3, settings=SMALL):
    ws, sid, _ = open_session(client, settings)
    for _ in range(epochs):
        ws.send_json({"type": "step"})
    session = client.app.state.sessions.get(sid)
    deadline = time.monotonic() + 20
    while session.net.epochs_done < epochs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.net.epochs_done == epochs
    return ws, sid, session


def test_the_explain_panel_equals_gpunn_explain(client, tmp_path):
    ws, sid, _ = trained_session(client)
    panel = client.post(f"/api/session/{sid}/explain", json={"layer": 2, "neuron": 1, "split": "test",
                                                             "sample": 5}).json()
    (tmp_path / "playground-model.npz").write_bytes(client.get(f"/api/session/{sid}/model.npz").content)
    (tmp_path / "playground-data.npz").write_bytes(client.get(f"/api/session/{sid}/data.npz").content)
    command = panel["command"].split()[1:] + ["--json"]
    assert command[:2] == ["explain", "--model"]
    command = [str(tmp_path / a) if a.startswith("playground-") else a for a in command]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    cli_step = json.loads(result.output.strip().splitlines()[-1])
    # the same code (explain_step, float64 NumPy) on the same float32 weights and sample: bit for bit
    for key in ("x", "t", "lr", "error", "error_after", "answer", "deltas", "grad_W", "grad_b", "W_next", "b_next"):
        np.testing.assert_array_equal(_flat(panel[key]), _flat(cli_step[key]), err_msg=key)
    for mine, theirs in zip(panel["layers"], cli_step["layers"]):
        for key in ("W", "b", "v", "y"):
            np.testing.assert_array_equal(np.ravel(mine[key]), np.ravel(theirs[key]), err_msg=key)
    close(ws)


def _flat(value) -> np.ndarray:
    """A number, a list or a list of nested lists as one flat float array."""
    if not isinstance(value, list) or not value or not isinstance(value[0], list):
        return np.ravel(np.array(value, dtype=float))
    return np.concatenate([np.ravel(np.array(part, dtype=float)) for part in value])


def test_the_command_line_shown_reproduces_the_run(client, tmp_path):
    settings = {**SMALL, "dataset": "xor", "features": ["x1", "x2", "x1x2"], "momentum": 0.5,
                "regularization": "L2", "reg_rate": 0.003, "seed": 7}
    ws, sid, session = trained_session(client, epochs=4, settings=settings)
    command = client.get(f"/api/session/{sid}/state").json()["command"]
    assert "--epochs 4" in command and "--momentum 0.5" in command and "--weight-decay 0.003" in command
    (tmp_path / "playground-data.npz").write_bytes(client.get(f"/api/session/{sid}/data.npz").content)
    args = [str(tmp_path / a) if a.startswith("playground-") else a for a in command.split()[1:]]
    args += ["--output", str(tmp_path / "cli.npz"), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    theirs = gpunn.load(tmp_path / "cli.npz", backend="numpy").get_weights()
    # the same backend, code path, seed and data; fit(epochs=4) equals four one-epoch fits: bit for bit
    for mine, cli_weights in zip(session.net.get_weights(), theirs):
        np.testing.assert_array_equal(mine, cli_weights)
    close(ws)


def test_the_saved_model_is_one_gpunn_evaluate_loads_and_onnx_exports(client, tmp_path):
    ws, sid, session = trained_session(client, epochs=2)
    (tmp_path / "m.npz").write_bytes(client.get(f"/api/session/{sid}/model.npz").content)
    (tmp_path / "d.npz").write_bytes(client.get(f"/api/session/{sid}/data.npz").content)
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "m.npz"), "--dataset", str(tmp_path / "d.npz")])
    assert result.exit_code == 0, result.output
    onnx = client.get(f"/api/session/{sid}/model.onnx")
    assert onnx.status_code == 200 and onnx.content[:2] == b"\x08\x08"  # ir_version 8, the ONNX protobuf's start
    close(ws)


def test_the_data_sets_are_seeded_and_labelled_as_tensorflow_playgrounds():
    for name in datasets.CLASSIFICATION + datasets.REGRESSION:
        points, labels = datasets.generate(name, 300, 0.1, seed=4)
        again, _ = datasets.generate(name, 300, 0.1, seed=4)
        assert points.shape == (300, 2) and np.array_equal(points, again)
    points, labels = datasets.generate("circle", 400, 0.0, seed=1)
    assert np.array_equal(labels, (np.hypot(*points.T) < 2.5).astype(int))
    points, labels = datasets.generate("xor", 400, 0.0, seed=1)
    assert np.array_equal(labels, (points[:, 0] * points[:, 1] >= 0).astype(int))
    X = datasets.features(np.array([[2.0, 3.0]]), list(datasets.FEATURES))
    np.testing.assert_allclose(X, [[2, 3, 4, 9, 6, np.sin(2), np.sin(3)]])


def test_settings_parse_the_pages_state():
    s = parse({"dataset": "spiral", "hidden": [8, 8], "features": ["x2", "x1"], "lr": 0.1})
    assert s.hidden == [8, 8] and s.features == ["x1", "x2"] and s.lr == 0.1
    with pytest.raises(SettingsError, match="momentum is SGD's"):
        parse({"optimizer": "adam", "momentum": 0.9})


def test_the_command_needs_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    monkeypatch.delitem(sys.modules, "gpunn.playground.server", raising=False)
    result = CliRunner().invoke(cli, ["playground", "--no-open"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == 'Error: the playground needs: pip install "gpunn[playground]"'


def test_the_command_prints_its_url_and_warns_off_a_local_host(monkeypatch):
    import gpunn.playground.server as server

    class FakeServer:
        started = True

        def __init__(self, config):
            self.config = config

        def run(self, sockets=None):
            assert sockets and sockets[0].getsockname()[1] == self.config.port  # bound before the URL is shown
            raise KeyboardInterrupt  # Ctrl-C: a clean stop

    monkeypatch.setattr(server.uvicorn, "Server", FakeServer)
    port = _free_port()
    result = CliRunner().invoke(cli, ["playground", "--no-open", "--port", str(port)])
    assert result.exit_code == 0 and f"http://127.0.0.1:{port}/" in result.output and "Warning" not in result.output
    result = CliRunner().invoke(cli, ["playground", "--no-open", "--host", "0.0.0.0", "--port", str(port)])
    assert result.exit_code == 0 and "Warning: serving on 0.0.0.0" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["playground", "--no-open", "--port", str(busy)])
    assert result.exit_code == 1 and "http" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot serve on 127.0.0.1:{busy}: ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_session_works_without_the_server():
    session = Session("direct")
    try:
        session.configure({"dataset": "gauss", "hidden": [3]})
        session.step()
        deadline = time.monotonic() + 10
        while session.net.epochs_done < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.net.epochs_done == 1
        assert np.load(io.BytesIO(session.data_bytes()))["X"].shape[1] == 2
    finally:
        session.close()
        assert session.join(1.0)


def test_regression_trains_when_gpunn_has_it_and_is_refused_with_a_notice_when_not(client, tmp_path):
    from gpunn.playground.settings import capabilities

    if not capabilities()["regression"]:
        ws, _, _ = open_session(client)
        ws.send_json({"type": "configure", "settings": {**SMALL, "dataset": "plane"}})
        assert "identity output layer" in receive(ws, "error")["message"]
        close(ws)
        return
    settings = {"dataset": "multigauss", "hidden": [5], "lr": 0.03, "momentum": 0.5, "points": 300,
                "regularization": "L2", "reg_rate": 0.001}
    ws, sid, session = trained_session(client, epochs=3, settings=settings)
    data = client.get(f"/api/session/{sid}/state").json()
    assert data["problem"] == "regression" and data["sizes"] == [2, 5, 1] and data["classes"] == []
    with session.lock:
        header, maps = decode(session.frame())  # a frame of the network as it is now
    assert header["epoch"] == 3
    assert {"mse", "mae", "r2"} <= set(header["test"]) and header["loss_test"] == header["test"]["mse"]
    assert header["maps"][-1] == 1 and np.isfinite(maps).all()
    # the output picture is the prediction, in the targets' units, as predict gives it
    plane = session.data.plane
    np.testing.assert_allclose(maps[-2500:], session.net.predict(plane.inputs).ravel(), rtol=1e-5, atol=1e-6)
    (tmp_path / "playground-data.npz").write_bytes(client.get(f"/api/session/{sid}/data.npz").content)
    command = data["command"]
    assert "--task regression" in command and "--epochs 3" in command
    args = [str(tmp_path / a) if a.startswith("playground-") else a for a in command.split()[1:]]
    result = CliRunner().invoke(cli, args + ["--output", str(tmp_path / "cli.npz"), "--quiet"])
    assert result.exit_code == 0, result.output
    theirs = gpunn.load(tmp_path / "cli.npz", backend="numpy").get_weights()
    for mine, cli_weights in zip(session.net.get_weights(), theirs):
        np.testing.assert_array_equal(mine, cli_weights)  # same backend, code path, seed and data: bit for bit
    panel = client.post(f"/api/session/{sid}/explain", json={"layer": 2, "neuron": 0, "sample": 4}).json()
    assert "standardised" in panel["target_note"]
    (tmp_path / "playground-model.npz").write_bytes(client.get(f"/api/session/{sid}/model.npz").content)
    args = [str(tmp_path / a) if a.startswith("playground-") else a for a in panel["command"].split()[1:]]
    result = CliRunner().invoke(cli, args + ["--json"])
    assert result.exit_code == 0, result.output
    cli_step = json.loads(result.output.strip().splitlines()[-1])
    for key in ("x", "t", "error", "error_after", "deltas", "W_next", "b_next"):  # the same code: bit for bit
        np.testing.assert_array_equal(_flat(panel[key]), _flat(cli_step[key]), err_msg=key)
    close(ws)


def test_tabs_are_isolated(client):
    first, sid1, _ = open_session(client, {**SMALL, "dataset": "xor"})
    second, sid2, _ = open_session(client, {**SMALL, "dataset": "spiral", "hidden": [3]})
    sessions = client.app.state.sessions
    assert sessions.get(sid1).net is not sessions.get(sid2).net
    first.send_json({"type": "play"})
    receive(first, "frame")
    second.send_json({"type": "configure", "settings": {**SMALL, "lr": -1}})  # a bad message in one tab
    receive(second, "error")
    time.sleep(0.3)
    assert sessions.get(sid1).net.epochs_done > 0 and sessions.get(sid2).net.epochs_done == 0
    assert sessions.get(sid2).net.sizes == (2, 3, 2)
    for ws in (first, second):
        close(ws)
