"""What ``blender-serve up`` shows while Serve deploys an application: per deployment, replicas
ready out of its target and its status, until the application is RUNNING or has failed.

A replica runs its deployment's constructor, which loads the model, while Serve reports it
STARTING: ``ranker 0/1 starting 12s`` is a model loading for 12 s. The status is read with
``availability.serve_status`` (the controller's details dict, about 2 ms a look) once a second
from a background thread while ``serve.run`` blocks. On a terminal one line is redrawn in place;
otherwise (a pipe, a log file) a line is printed when something changes, and every ``period_s``
seconds while nothing does. A deployment's message (a replica that failed to start and is being
retried) is printed once, on its own line; if the application fails, the failing deployments'
messages are printed whole.

Example::

    with DeployProgress("blender") as progress:
        serve.run(app, name="blender")
    view = progress.finish()   # the last state, printed; view.failed tells
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

from blender_serve.progress import format_duration

__all__ = ["DeployProgress", "AppView", "DeploymentView", "app_view", "render_line", "render_failure"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DONE = ("RUNNING", "DEPLOY_FAILED")  # statuses after which serve.run returns or raises


@dataclass(frozen=True)
class DeploymentView:
    name: str
    status: str  # Serve's deployment status: UPDATING, HEALTHY, UNHEALTHY, DEPLOY_FAILED, UPSCALING...
    ready: int  # RUNNING replicas
    target: Optional[int]  # replicas Serve aims for (None when the status read does not say)
    starting: int  # replicas whose constructor (the model load) is running
    starting_for_s: Optional[float]  # how long the oldest starting replica has been at it
    message: str

    @property
    def is_ready(self) -> bool:
        return self.status == "HEALTHY" and (self.target is None or self.ready >= self.target)

    def token(self) -> str:
        """``ranker 0/1 starting 12s``, ``llm-alpha 1/1``."""
        text = f"{self.name} {self.ready}/{'?' if self.target is None else self.target}"
        if self.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            return f"{text} {self.status.lower().replace('_', ' ')}"
        if self.starting:
            since = f" {format_duration(self.starting_for_s)}" if self.starting_for_s is not None else ""
            return f"{text} starting{since}"
        return text if self.status == "HEALTHY" else f"{text} {self.status.lower()}"


@dataclass(frozen=True)
class AppView:
    name: str
    status: str  # Serve's application status; NOT_STARTED until the controller knows the app
    message: str
    deployments: tuple[DeploymentView, ...]

    @property
    def failed(self) -> bool:
        return self.status in ("DEPLOY_FAILED", "UNHEALTHY")

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    def key(self) -> tuple:
        """What a plain line is printed for when it changes (not the growing durations)."""
        return (self.status, tuple((d.name, d.status, d.ready, d.target, d.starting) for d in self.deployments))


def app_view(status: Any, app: str, now: Optional[float] = None) -> AppView:
    """One application's state from ``serve_status()`` (or ``serve.status()``); ``now``: wall-clock time."""
    now = time.time() if now is None else now
    found = status.applications.get(app)
    if found is None:
        return AppView(app, "NOT_STARTED", "", ())
    deployments = []
    for name, dep in found.deployments.items():
        states = dep.replica_states or {}
        since = getattr(dep, "starting_since", None)
        deployments.append(DeploymentView(
            name=name, status=_value(dep.status), ready=states.get("RUNNING", 0),
            target=getattr(dep, "target_num_replicas", None), starting=states.get("STARTING", 0),
            starting_for_s=max(now - since, 0.0) if since else None, message=_clean(getattr(dep, "message", ""))))
    return AppView(app, _value(found.status), _clean(found.message), tuple(deployments))


def render_line(view: AppView, elapsed_s: float) -> str:
    """``blender DEPLOYING 12s: 4/6 deployments ready | ranker 0/1 starting 8s | ...`` (not-ready ones first)."""
    head = f"{view.name} {view.status} {format_duration(elapsed_s)}"
    if not view.deployments:
        return f"{head}: waiting for Serve to create the deployments"
    ready = sum(d.is_ready for d in view.deployments)
    ordered = [d for d in view.deployments if not d.is_ready] + [d for d in view.deployments if d.is_ready]
    return f"{head}: {ready}/{len(view.deployments)} deployments ready | " + " | ".join(d.token() for d in ordered)


def render_failure(view: AppView) -> list[str]:
    """The lines that explain a failed deployment: the app's message, then each failing deployment's whole message."""
    lines = [f"application {view.name!r} {view.status}" + (f": {view.message}" if view.message else "")]
    for d in view.deployments:
        if d.status in ("DEPLOY_FAILED", "UNHEALTHY") or (d.message and not d.is_ready):
            lines.append(f"deployment {d.name!r} {d.status} ({d.ready}/{'?' if d.target is None else d.target} "
                         "replicas ready):")
            lines.extend(f"    {line}" for line in (d.message or "(Serve gave no message)").splitlines() if line.strip())
    return lines


def _note(d: DeploymentView) -> str:
    """A deployment message's first line, e.g. a replica that failed to start and is being retried."""
    first = d.message.strip().splitlines()[0] if d.message.strip() else ""
    return f"{d.name}: {first.removesuffix(' Error:').strip()}" if first else ""


class DeployProgress:
    """Shows an application's deployment progress on ``file`` (stderr) from a background thread."""

    def __init__(self, app: str, *, read: Optional[Callable[[], Any]] = None, file: Optional[TextIO] = None,
                 tty: Optional[bool] = None, poll_s: float = 1.0, period_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 width: Optional[int] = None):
        self.app = app
        self.file = file if file is not None else sys.stderr
        self.tty = _isatty(self.file) if tty is None else tty
        self.poll_s, self.period_s = poll_s, period_s
        self._read, self._clock, self._wall, self._width = read, clock, wall, width
        self._started = clock()
        self._last_print = -float("inf")
        self._last_key: Optional[tuple] = None
        self._notes: set[str] = set()
        self._drawn = False  # a TTY line is on screen, not yet ended
        self.view = AppView(app, "NOT_STARTED", "", ())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- rendering -------------------------------------------------------------------------------
    def show(self, view: AppView) -> None:
        """Render one state: notes first, then the status line (redrawn on a TTY, printed when due otherwise)."""
        with self._lock:
            self.view = view
            for d in view.deployments:
                note = _note(d)
                if note and note not in self._notes and not view.failed:
                    self._notes.add(note)
                    self._write_line(note)
            line = render_line(view, self._clock() - self._started)
            if self.tty:
                width = self._width or shutil.get_terminal_size((120, 20)).columns
                if len(line) > width - 1:
                    line = line[:max(width - 4, 10)] + "..."
                self.file.write("\r" + line + "\x1b[K")
                self.file.flush()
                self._drawn = True
            elif view.key() != self._last_key or self._clock() - self._last_print >= self.period_s:
                self._write_line(line)
            self._last_key = view.key()

    def _write_line(self, line: str) -> None:
        if self._drawn:
            self.file.write("\r\x1b[K")
            self._drawn = False
        self.file.write(line + "\n")
        self.file.flush()
        self._last_print = self._clock()

    # -- polling ---------------------------------------------------------------------------------
    def poll(self) -> AppView:
        """Read Serve's status once and show it."""
        from deployments.availability import serve_status

        view = app_view((self._read or serve_status)(), self.app, now=self._wall())
        self.show(view)
        return view

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll().status in _DONE:
                    return
            except Exception:  # noqa: BLE001 - a missed look keeps the last one; serve.run reports real failures
                pass
            self._stop.wait(self.poll_s)

    def __enter__(self) -> "DeployProgress":
        self._thread = threading.Thread(target=self._loop, name="deploy-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._drawn:
                self.file.write("\n")
                self.file.flush()
                self._drawn = False

    def finish(self) -> AppView:
        """After the deploy returned or raised: read once more, print the last state (and, if the
        application failed, every failing deployment's message); returns that state."""
        try:
            view = self.poll()
        except Exception:  # noqa: BLE001 - the controller is gone: keep the last state seen
            view = self.view
        with self._lock:
            if self._drawn:
                self.file.write("\n")
                self._drawn = False
            if view.failed:
                for line in render_failure(view):
                    self.file.write(line + "\n")
            self.file.flush()
        return view


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def _clean(message: Optional[str]) -> str:
    return _ANSI.sub("", message or "")


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
