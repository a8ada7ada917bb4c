"""The playground's routes: the page, one WebSocket per tab, and a few JSON calls.

``GET /`` and ``/static/...``
    The page: plain ES modules from this package's ``static`` folder (no CDN, no build step).
``GET /api/capabilities``
    What this gpunn can train (activations, data sets, what is disabled and why).
``WS /api/ws``
    One tab's session (:class:`gpunn.playground.session.Session`), which lives as long as
    the socket.  The page sends JSON messages ``{"type": ...}``: ``configure`` (with
    ``settings``), ``play``, ``pause``, ``step``, ``reset``, ``set_weight`` (``layer``,
    ``source``, ``target``, ``value``), ``explain`` (``layer``, ``neuron``, ``split``,
    ``sample``), ``digit`` (``pixels``) and ``ping``.  The server answers ``hello`` (the
    session id), ``data`` (after a rebuild), ``explain``, ``digit`` and ``error``
    (``message``: one line) as JSON, and frames as binary messages
    (:func:`gpunn.playground.session.encode_frame`), newest first: a frame the page had no
    time for is dropped.
``POST /api/session/{id}/upload?name=F.csv``
    The tab's CSV as the request body (at most 20 MB), read at the next ``configure``.
``POST /api/session/{id}/explain``, ``POST /api/session/{id}/digit``
    The same as the socket messages, as JSON calls.
``GET /api/session/{id}/model.npz``, ``model.onnx``, ``data.npz``, ``state``
    Take it with you: the model, its ONNX graph, the data, and the command line.

Errors are JSON ``{"error": "one line"}`` with a 4xx status; nothing the page sends
shows up as a traceback in the page or the server's log.  At most :data:`MAX_SESSIONS`
tabs at once; one more is told so and closed.  A session whose tab has sent nothing for
:data:`IDLE_SECONDS` and is not training expires.  The server never opens a file a
request names: uploads are kept in memory and read from a temporary file of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
import warnings
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from gpunn.errors import GpunnError
from gpunn.playground.data import MAX_UPLOAD
from gpunn.playground.session import Session
from gpunn.playground.settings import capabilities
from gpunn.training.loop import TrainingWarning

MAX_SESSIONS = 32
IDLE_SECONDS = 30 * 60
#: How often expired sessions are looked for.
SWEEP_SECONDS = 10
log = logging.getLogger("gpunn.playground")


class Sessions:
    """The open sessions, bounded by ``limit``."""

    def __init__(self, limit: int = MAX_SESSIONS, idle_seconds: float = IDLE_SECONDS):
        self.limit, self.idle_seconds = limit, idle_seconds
        self.open: dict[str, Session] = {}
        #: each session's socket, to tell its tab when the session expires
        self.sockets: dict[str, WebSocket] = {}

    def create(self, notify) -> Session:
        if len(self.open) >= self.limit:
            raise GpunnError(f"the playground is serving {self.limit} tabs, its limit; close one and reload this page")
        sid = secrets.token_urlsafe(16)
        session = self.open[sid] = Session(sid, notify)
        return session

    def get(self, sid: str) -> Session:
        session = self.open.get(sid)
        if session is None:
            raise LookupError("no such session (it ended when its tab closed, or expired); reload the page")
        session.last_used = time.monotonic()
        return session

    def end(self, sid: str) -> None:
        self.sockets.pop(sid, None)
        session = self.open.pop(sid, None)
        if session is not None:
            session.close()

    def expired(self) -> list[str]:
        now = time.monotonic()
        return [sid for sid, s in self.open.items() if not s.playing and now - s.last_used > self.idle_seconds]

    def close_all(self) -> None:
        for sid in list(self.open):
            self.end(sid)


def create_app(limit: int = MAX_SESSIONS, idle_seconds: float = IDLE_SECONDS) -> Starlette:
    """The playground as an ASGI application (``app.state.sessions`` holds its sessions)."""
    warnings.filterwarnings("ignore", category=TrainingWarning)  # diagnoses reach the page instead
    sessions = Sessions(limit, idle_seconds)
    static = resources.files("gpunn.playground").joinpath("static")

    async def index(request):
        return FileResponse(str(static.joinpath("index.html")), media_type="text/html")

    async def caps(request):
        return JSONResponse(capabilities())

    def session_of(request) -> Session:
        return sessions.get(request.path_params["sid"])

    async def upload(request: Request):
        session = session_of(request)
        name = _display_name(request.query_params.get("name", "upload.csv"))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD:
            raise GpunnError(f"{name}: {int(declared):,} bytes; the playground takes CSV files up to "
                             f"{MAX_UPLOAD // (1024 * 1024)} MB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise GpunnError(f"{name}: more than {MAX_UPLOAD // (1024 * 1024)} MB; the playground takes CSV "
                                 f"files up to {MAX_UPLOAD // (1024 * 1024)} MB")
            chunks.append(chunk)
        session.set_upload(name, b"".join(chunks))
        return JSONResponse({"name": name, "bytes": size})

    async def explain(request: Request):
        session, body = session_of(request), await _json_body(request)
        record = await run_in_threadpool(session.explain, body.get("layer"), body.get("neuron"),
                                         body.get("split", "test"), body.get("sample", 0))
        return JSONResponse(record)

    async def digit(request: Request):
        session, body = session_of(request), await _json_body(request)
        return JSONResponse(await run_in_threadpool(session.predict_digit, body.get("pixels")))

    async def download(request: Request):
        session, what = session_of(request), request.path_params["what"]
        if what == "state":
            return JSONResponse(await run_in_threadpool(session.describe))
        if what == "data.npz":
            content = await run_in_threadpool(session.data_bytes)
        elif what in ("model.npz", "model.onnx"):
            content = await run_in_threadpool(session.model_bytes, what.split(".")[1])
        else:
            raise LookupError(f"nothing called {what[:40]!r} here: model.npz, model.onnx, data.npz or state")
        filename = f"playground-{what.replace('.', '-', what.count('.') - 1)}"
        return Response(content, media_type="application/octet-stream",
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    async def socket(ws: WebSocket):
        await ws.accept()
        loop, ready = asyncio.get_running_loop(), asyncio.Event()
        try:
            session = sessions.create(lambda: loop.call_soon_threadsafe(ready.set))
        except GpunnError as exc:
            await ws.send_json({"type": "error", "message": str(exc), "fatal": True})
            await ws.close(code=1013)
            return
        sessions.sockets[session.id] = ws
        await ws.send_json({"type": "hello", "session": session.id, "capabilities": capabilities()})
        sender = asyncio.create_task(_send_frames(ws, session, ready))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await ws.send_json({"type": "error", "message": "unexpected binary message from the page"})
                    continue
                reply = await _handle(session, text)
                if reply is not None:
                    await ws.send_json(reply)
                if reply is not None and reply.get("type") == "data":  # the new network's first frame, after it
                    await run_in_threadpool(session.republish)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the tab went away
            pass
        except Exception as exc:  # a bug of ours: one line in the log, and the session ends
            log.error("playground: %s in a tab's socket: %s", type(exc).__name__, exc)
        finally:
            sender.cancel()
            sessions.end(session.id)

    async def sweep():
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await expire()

    async def expire():
        """End the sessions idle too long, telling their tabs."""
        for sid in sessions.expired():
            ws = sessions.sockets.get(sid)
            sessions.end(sid)
            if ws is not None:
                with contextlib.suppress(Exception):  # the tab may be gone already
                    await ws.send_json({"type": "error", "fatal": True, "message": "this tab's session expired "
                                        f"after {idle_seconds / 60:g} idle minutes; reload the page to start again"})
                    await ws.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            sessions.close_all()

    api = "/api/session/{sid}"
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/capabilities", caps),
            Route(api + "/upload", _answering(upload), methods=["POST"]),
            Route(api + "/explain", _answering(explain), methods=["POST"]),
            Route(api + "/digit", _answering(digit), methods=["POST"]),
            Route(api + "/{what}", _answering(download)),
            WebSocketRoute("/api/ws", socket),
            Mount("/static", StaticFiles(directory=str(static)), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.sessions = sessions
    app.state.expire = expire
    return app


def _answering(route):
    """``route`` with its errors as JSON ``{"error": ...}``: 400 for what the request got wrong, 404 for
    what does not exist, and 500 with one line in the log for a bug of ours (Starlette's own handler for
    unexpected errors would hand the traceback to the server's log)."""

    @functools.wraps(route)
    async def answered(request: Request):
        try:
            return await route(request)
        except GpunnError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except LookupError as exc:
            return JSONResponse({"error": str(exc).strip("'\"")}, status_code=404)
        except Exception as exc:
            log.error("playground: %s on %s: %s", type(exc).__name__, request.url.path, exc)
            return JSONResponse({"error": f"the server could not do that ({type(exc).__name__}); see its log"},
                                status_code=500)

    return answered


async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise GpunnError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise GpunnError("the request body must be a JSON object")
    return body


def _display_name(name: str) -> str:
    """A file name fit to quote in a message: its last path part, printable, at most 80 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())[:80]
    return name or "upload.csv"


async def _send_frames(ws: WebSocket, session: Session, ready: asyncio.Event) -> None:
    """Send the newest frame whenever one is ready; frames made meanwhile replace it (are dropped)."""
    try:
        while True:
            await ready.wait()
            ready.clear()
            frame = session.take_frame()
            if frame is not None:
                await ws.send_bytes(frame)
    except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
        return


async def _handle(session: Session, text: str) -> dict | None:
    """Do what one message from the page asks; the reply to send, if any."""
    try:
        message = json.loads(text)
    except ValueError:
        return {"type": "error", "message": "unexpected message from the page: not JSON"}
    kind = message.get("type") if isinstance(message, dict) else None
    try:
        if kind == "configure":
            await run_in_threadpool(session.configure, message.get("settings"))
            return await run_in_threadpool(session.describe)
        if kind == "reset":
            await run_in_threadpool(session.reset)
            return await run_in_threadpool(session.describe)
        session.last_used = time.monotonic()
        if kind in ("play", "pause"):
            session.play(kind == "play")
            return None
        if kind == "step":
            session.step()
            return None
        if kind == "ping":  # keeps the connection alive; not a use (an idle tab still expires)
            return None
        if session.net is None and kind in ("set_weight", "explain", "digit", "describe"):
            raise GpunnError(f"{kind} needs a network: the page has sent no settings yet")
        if kind == "set_weight":
            await run_in_threadpool(session.set_weight, message.get("layer"), message.get("source"),
                                    message.get("target"), message.get("value"))
            return None
        if kind == "explain":
            return await run_in_threadpool(session.explain, message.get("layer"), message.get("neuron"),
                                           message.get("split", "test"), message.get("sample", 0))
        if kind == "digit":
            return await run_in_threadpool(session.predict_digit, message.get("pixels"))
        if kind == "describe":
            return await run_in_threadpool(session.describe)
        return {"type": "error", "message": f"unexpected message type {kind!r:.40} from the page"}
    except GpunnError as exc:
        return {"type": "error", "message": str(exc)}
    except Exception as exc:  # a bug of ours: one line in the log and the page, the tab keeps its session
        log.error("playground: %s while handling %s: %s", type(exc).__name__, kind, exc)
        return {"type": "error", "message": f"the server could not do that ({type(exc).__name__}: {exc})"}
