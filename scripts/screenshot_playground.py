"""Regenerate docs/playground.png: the playground page (/ui) after a real answer.

    python scripts/screenshot_playground.py                 # deploys configs/cpu.yaml on an embedded Ray
    python scripts/screenshot_playground.py --url http://127.0.0.1:8000   # a server already running

Needs Debian's chromium (scripts/browser.sh) and selenium (the dev extra). Deploying configs/cpu.yaml
runs the CPU demo's real small models (SmolLM2-135M x3, a MiniLM PairRanker, SmolLM2 as fuser):
a couple of minutes on 2 cores. The PNG is cut to the page's height and palette-reduced below --max-kb.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "What is the capital of France, and what is it famous for?"


@contextlib.contextmanager
def served(config_path: Path) -> Iterator[str]:
    """Deploy the first blender-serve application of ``config_path`` on a throwaway local Ray."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import yaml
    from ray import serve

    from blender_serve.config import blender_applications
    from blender_serve.testing.apps import free_port
    from deployments.builder import build_app

    app = blender_applications(yaml.safe_load(config_path.read_text()), str(config_path))[0]
    temp_dir = tempfile.mkdtemp(prefix="bss-", dir="/tmp")  # short: Ray's socket paths stay under 107 bytes
    port = free_port()
    ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        t0 = time.perf_counter()
        serve.run(build_app(app.get("args") or {}), name=app["name"], route_prefix="/")
        print(f"{config_path.name} ready in {time.perf_counter() - t0:.0f}s on port {port}", file=sys.stderr)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def capture(url: str, out: Path, prompt: str, width: int, max_kb: int, timeout_s: float) -> None:
    from blender_serve.testing.browser import ask_playground, browser_missing, chromium, console_errors

    why = browser_missing()
    if why:
        raise SystemExit(f"screenshot_playground: {why}")
    with chromium(width=width, height=900) as driver:
        t0 = time.perf_counter()
        status = ask_playground(driver, url, prompt, timeout_s=timeout_s)
        print(f"answered in {time.perf_counter() - t0:.0f}s: {status}", file=sys.stderr)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {  # the whole page, whatever the viewport
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        png = base64.b64decode(shot["data"])
        errors = console_errors(driver)
    if errors:
        raise SystemExit(f"screenshot_playground: the console reported errors: {errors}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_shrunk(png, max_kb))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)", file=sys.stderr)


def _shrunk(png: bytes, max_kb: int) -> bytes:
    """The screenshot as an optimised palette PNG (fewer colours until it fits ``max_kb``)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    data: Optional[bytes] = None
    for colors in (256, 128, 64, 32):
        buf = io.BytesIO()
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        if len(data) <= max_kb * 1024:
            break
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app (default: deploy --config on an embedded local Ray)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "playground.png")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--max-kb", type=int, default=290)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the answer")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.url:
        capture(args.url, args.out, args.prompt, args.width, args.max_kb, args.timeout)
        return 0
    with served(args.config) as url:
        capture(url, args.out, args.prompt, args.width, args.max_kb, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
