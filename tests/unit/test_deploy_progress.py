"""What `blender-serve up` prints while Serve deploys: status dicts in, lines out (no Ray)."""

from __future__ import annotations

import io

from deployments.availability import status_from_details
from deployments.deploy_progress import DeployProgress, app_view, render_failure, render_line

T0 = 1_000_000.0  # wall-clock time of the fake replicas' start


def _dep(status, states, target=1, message="", start=T0):
    return {"status": status, "message": message, "target_num_replicas": target,
            "replicas": [{"state": s, "start_time_s": start} for s in states]}


def _details(app_status="DEPLOYING", message="", **deployments):
    return {"applications": {"blender": {"status": app_status, "message": message, "deployments": deployments}}}


RETRY = ("A replica failed to start with exception. Retrying 2 more time(s). Error:\n"
         "\x1b[36mray::ServeReplica:blender:llm-alpha.initialize_and_get_metadata()\x1b[39m (pid=903)\n")
FAILED = ("The deployment failed to start 3 times in a row. This may be due to a problem with its constructor. Error:\n"
          "\x1b[36mray::ServeReplica:blender:llm-alpha.initialize_and_get_metadata()\x1b[39m (pid=1266)\n"
          "  File \"deployments/llm_server.py\", line 21, in __init__\n\n"
          "blender_serve.errors.GenerationError: generator 'alpha' (transformers) could not start: no such checkpoint")

SEQUENCE = [  # (seconds since start, details)
    (0, {"applications": {}}),
    (1, _details(**{"llm-alpha": _dep("UPDATING", ["STARTING"]), "ranker": _dep("UPDATING", ["STARTING"]),
                    "ingress": _dep("UPDATING", ["STARTING"])})),
    (3, _details(**{"llm-alpha": _dep("UPDATING", ["STARTING"]), "ranker": _dep("UPDATING", ["STARTING"]),
                    "ingress": _dep("UPDATING", ["STARTING"])})),  # nothing changed: no plain line
    (12, _details(**{"llm-alpha": _dep("UPDATING", ["STARTING"]), "ranker": _dep("UPDATING", ["STARTING"]),
                     "ingress": _dep("UPDATING", ["STARTING"])})),  # 10 s since the last line: a heartbeat
    (13, _details(**{"llm-alpha": _dep("UPDATING", ["STARTING"], message=RETRY, start=T0 + 12),
                     "ranker": _dep("HEALTHY", ["RUNNING"]), "ingress": _dep("UPDATING", ["STARTING"])})),
    (14, _details(**{"llm-alpha": _dep("UPDATING", ["STARTING"], message=RETRY, start=T0 + 12),
                     "ranker": _dep("HEALTHY", ["RUNNING"]), "ingress": _dep("HEALTHY", ["RUNNING"])})),
    (20, _details("RUNNING", **{"llm-alpha": _dep("HEALTHY", ["RUNNING"]), "ranker": _dep("HEALTHY", ["RUNNING"]),
                                "ingress": _dep("HEALTHY", ["RUNNING"])})),
]


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _play(tty, width=None):
    out, clock = io.StringIO(), _Clock()
    progress = DeployProgress("blender", file=out, tty=tty, clock=clock, wall=lambda: T0 + clock.t, width=width)
    for t, details in SEQUENCE:
        clock.t = t
        progress.show(app_view(status_from_details(details), "blender", now=T0 + t))
    return progress, out


def test_plain_lines_on_change_and_every_ten_seconds():
    progress, out = _play(tty=False)
    assert out.getvalue().splitlines() == [
        "blender NOT_STARTED 0s: waiting for Serve to create the deployments",
        "blender DEPLOYING 1s: 0/3 deployments ready | llm-alpha 0/1 starting 1s | ranker 0/1 starting 1s "
        "| ingress 0/1 starting 1s",
        "blender DEPLOYING 12s: 0/3 deployments ready | llm-alpha 0/1 starting 12s | ranker 0/1 starting 12s "
        "| ingress 0/1 starting 12s",
        "llm-alpha: A replica failed to start with exception. Retrying 2 more time(s).",  # once, ANSI and "Error:" gone
        "blender DEPLOYING 13s: 1/3 deployments ready | llm-alpha 0/1 starting 1s | ingress 0/1 starting 13s "
        "| ranker 1/1",
        "blender DEPLOYING 14s: 2/3 deployments ready | llm-alpha 0/1 starting 2s | ranker 1/1 | ingress 1/1",
        "blender RUNNING 20s: 3/3 deployments ready | llm-alpha 1/1 | ranker 1/1 | ingress 1/1",
    ]
    assert progress.view.running and not progress.view.failed


def test_a_terminal_gets_one_line_redrawn_in_place():
    progress, out = _play(tty=True, width=60)
    text = out.getvalue()
    assert text.count("\r") >= len(SEQUENCE)  # every look redraws
    frames = [f.removesuffix("\x1b[K") for f in text.split("\r") if f and not f.startswith("\x1b[K")]
    assert all(len(f.split("\n")[0]) <= 59 for f in frames)  # cut to the terminal's width
    assert frames[-1].startswith("blender RUNNING 20s: 3/3 deployments") and frames[-1].endswith("...")
    # the retry note is a line of its own: the drawn line is cleared first, then redrawn under it
    assert "\r\x1b[Kllm-alpha: A replica failed to start with exception. Retrying 2 more time(s).\n" in text
    progress.__exit__(None, None, None)
    assert out.getvalue().endswith("\n")


def test_a_failed_deployment_prints_its_whole_message():
    details = _details("DEPLOY_FAILED", "Failed to update the deployments ['llm-alpha'].",
                       **{"llm-alpha": _dep("DEPLOY_FAILED", ["STOPPING"], message=FAILED),
                          "ranker": _dep("HEALTHY", ["RUNNING"])})
    view = app_view(status_from_details(details), "blender", now=T0)
    assert view.failed
    assert render_line(view, 8) == ("blender DEPLOY_FAILED 8s: 1/2 deployments ready | llm-alpha 0/1 deploy failed "
                                    "| ranker 1/1")
    lines = render_failure(view)
    assert lines[0] == "application 'blender' DEPLOY_FAILED: Failed to update the deployments ['llm-alpha']."
    assert lines[1] == "deployment 'llm-alpha' DEPLOY_FAILED (0/1 replicas ready):"
    assert lines[-1] == ("    blender_serve.errors.GenerationError: generator 'alpha' (transformers) could not start: "
                         "no such checkpoint")
    assert not any("\x1b" in line or "ranker" in line for line in lines)


def test_finish_reads_once_more_and_explains_the_failure():
    details = _details("DEPLOY_FAILED", "Failed to update the deployments ['llm-alpha'].",
                       **{"llm-alpha": _dep("DEPLOY_FAILED", [], message=FAILED)})
    out = io.StringIO()
    progress = DeployProgress("blender", read=lambda: status_from_details(details), file=out, tty=False)
    view = progress.finish()
    assert view.failed
    text = out.getvalue()
    assert "blender DEPLOY_FAILED" in text and "llm-alpha 0/1 deploy failed" in text
    assert text.rstrip().endswith("could not start: no such checkpoint")
    assert "Retrying" not in text and "llm-alpha: The deployment failed" not in text  # no note line for a failure


def test_serve_status_objects_without_targets_render_too():
    """``serve.status()``'s own objects (the fallback) have no target: shown as ``?``."""
    from types import SimpleNamespace

    status = SimpleNamespace(applications={"blender": SimpleNamespace(
        status="DEPLOYING", message="", deployments={"ranker": SimpleNamespace(
            status="UPDATING", message="", replica_states={"STARTING": 1})})})
    view = app_view(status, "blender")
    assert render_line(view, 3) == "blender DEPLOYING 3s: 0/1 deployments ready | ranker 0/? starting"


def test_the_watch_thread_polls_until_the_app_is_running():
    import time

    looks = iter([_details(**{"ranker": _dep("UPDATING", ["STARTING"])}),
                  _details("RUNNING", **{"ranker": _dep("HEALTHY", ["RUNNING"])})])
    seen = []

    def read():
        details = next(looks)
        seen.append(details)
        return status_from_details(details)

    out = io.StringIO()
    with DeployProgress("blender", read=read, file=out, tty=False, poll_s=0.01):
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(seen) == 2  # stopped at RUNNING, never asked a third time
    assert out.getvalue().splitlines()[-1].startswith("blender RUNNING")
