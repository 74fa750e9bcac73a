"""Drive the playground page (``/ui``) in Debian's headless chromium through selenium.

Used by tests/e2e/test_playground.py and scripts/screenshot_playground.py. The browser is the
system's (``scripts/browser.sh`` installs it with apt); selenium is never allowed to fetch its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["CHROMIUM", "CHROMEDRIVER", "browser_missing", "chromium", "ask_playground", "console_errors"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def browser_missing() -> Optional[str]:
    """Why the page cannot be driven here (None when it can)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing: run scripts/browser.sh (apt: chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator:
    """A headless chromium WebDriver with a fresh profile, console logging on; quit on exit."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager, if ever consulted, downloads nothing
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def ask_playground(driver, base_url: str, prompt: str, *, models: Optional[list[str]] = None,
                   selects: Optional[dict[str, str]] = None, numbers: Optional[dict[str, float]] = None,
                   stream: bool = True, timeout_s: float = 120.0, wait: bool = True) -> str:
    """Open ``base_url``/ui (unless it is open already), set the options, ask ``prompt`` and wait
    until the answer is done. ``models``: the base models to tick (None: leave all ticked);
    ``selects``: select id -> value (strategy, fusion, on_ranker_failure); ``numbers``: input id ->
    value (top_k, deadline_s...); ``wait=False`` returns "" right after the click (to watch the
    page while the answer comes in). Returns the status line; raises on a page error or a timeout."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    if "/ui/" not in driver.current_url:
        driver.get(base_url.rstrip("/") + "/ui")
    waiter = WebDriverWait(driver, timeout_s)
    waiter.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-models") == "ready")
    if models is not None:
        for box in driver.find_elements(By.CSS_SELECTOR, "#models input[type=checkbox]"):
            if box.is_selected() != (box.get_attribute("value") in models):
                box.click()
    for name, value in (selects or {}).items():
        Select(driver.find_element(By.ID, name)).select_by_value(value)
    for name, value in (numbers or {}).items():
        # Hidden under "More options" or not: set through the DOM, as a typed value would be.
        driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, name), str(value))
    driver.execute_script("arguments[0].checked = arguments[1]", driver.find_element(By.ID, "stream"), stream)
    box = driver.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    driver.execute_script("document.body.dataset.state = 'clicked'")  # not the previous answer's 'done'
    driver.find_element(By.ID, "ask").click()
    if not wait:
        return ""
    waiter.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    status = driver.find_element(By.ID, "status").text
    if driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") != "done":
        raise RuntimeError(f"the page reported an error: {status}")
    return status


def console_errors(driver) -> list[str]:
    """The browser console's errors (SEVERE entries) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
