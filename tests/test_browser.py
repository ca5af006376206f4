"""The report and the convolution demo in a real browser: Debian's headless Chromium.

Screenshots come from Chromium's own --screenshot; the checks that need the page's state (no
console errors, stepping the demo) drive it through the DevTools protocol over
--remote-debugging-pipe: JSON messages ended by a NUL byte, written to the browser's fd 3 and
read from its fd 4, with only the standard library. Missing Chromium skips these tests locally
and fails them under CI (.ci/run installs it).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: apt-get install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium): browser tests skipped")
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict:
    """The default convolution demo and the report of a short LeNet-5 run."""
    folder = tmp_path_factory.mktemp("pages")
    cl.viz.conv_demo(out=folder / "demo")
    x, y = cl.data.load("fashion-mnist-mini", "train")
    xt, yt = cl.data.load("fashion-mnist-mini", "test")
    model = cl.zoo.get("lenet5")
    model.class_names = cl.data.class_names("fashion-mnist")
    cl.fit(model, (x[:128], y[:128]), loss=cl.SoftmaxCrossEntropy(), epochs=1, batch_size=64,
           optimizer=cl.optim.Adam(model), val=(xt[:100], yt[:100]), out=folder / "run",
           verbose=False, progress=False)
    report = cl.viz.report(folder / "run", model, xt[:100], yt[:100], examples=1)
    return {"demo": folder / "demo" / "demo.html", "report": report}


def not_blank(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB")).astype(np.int32)
    colours = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
    assert pixels.var() > 0 and len(colours) > 10
    assert (pixels < 200).any(axis=2).mean() > 0.01  # some ink, not an empty white page
    return pixels


def test_screenshots_are_not_blank(chromium, pages, tmp_path):
    """Chromium's own --screenshot of both pages, the two browsers side by side."""
    runs = {}
    for name, path in pages.items():
        command = [chromium, *FLAGS, f"--user-data-dir={tmp_path / name}",
                   f"--screenshot={tmp_path / name}.png", "--window-size=1280,1000", path.as_uri()]
        runs[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for name, run in runs.items():
        _, err = run.communicate(timeout=90)
        assert run.returncode == 0, err.decode(errors="replace")[-2000:]
        not_blank((tmp_path / f"{name}.png").read_bytes())


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """Chromium over the DevTools protocol on a pipe (fds 3 and 4 of the browser)."""

    def __init__(self, binary: str, profile) -> None:
        to_browser, self.writer = os.pipe()
        self.reader, from_browser = os.pipe()
        # bash puts our pipe ends on the browser's fds 3 and 4, where the protocol expects them;
        # moved above 9 first, so that neither is itself 3 or 4 and overwritten too early (dash,
        # Debian's sh, takes single-digit fds only)
        to_browser, from_browser = (_above_9(fd) for fd in (to_browser, from_browser))
        script = f'exec "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "bash", binary, *FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser, from_browser), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self.buffer, self.last_id, self.events = b"", 0, []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reader], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self.events.remove(event)
                    return event["params"]
            self.events.append(self._receive(deadline))

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000,
                  "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.writer)
        os.close(self.reader)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def key(self, key: str, code: str, keycode: int, text: str = "") -> None:
        down = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": code,
                "windowsVirtualKeyCode": keycode, **({"text": text} if text else {})}
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                             "windowsVirtualKeyCode": keycode})

    def click(self, selector: str) -> None:
        box = self.js(f"JSON.stringify(document.querySelector({selector!r}).getBoundingClientRect())")
        box = json.loads(box)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "clickCount": 1})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-logged errors of this page so far."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    browser = Browser(chromium, tmp_path_factory.mktemp("profile"))
    yield browser
    browser.close()


def current(page: Page) -> tuple[str, int, str]:
    """(the highlighted output cell's id, the step, the equation's last line)."""
    return (page.js("document.querySelector('td.cur').id"), int(page.js("document.body.dataset.step")),
            page.js("document.getElementById('equation').textContent.trim().split('\\n').pop()"))


def test_the_demo_steps_and_logs_no_errors(browser, pages):
    page = browser.open(pages["demo"].as_uri())
    assert page.js("document.body.dataset.playing") == "true"  # it moves on its own at first
    page.key(" ", "Space", 32, text=" ")  # "toggle movement": pause
    assert page.js("document.body.dataset.playing") == "false"
    cell, step, _ = current(page)
    before = not_blank(page.screenshot())

    page.key("ArrowRight", "ArrowRight", 39)
    after_cell, after_step, line = current(page)
    assert after_cell != cell and after_step == (step + 1) % 18
    k, i, j = (int(v) for v in after_cell.split("-")[1:])
    out = page.js(f"JSON.parse(document.getElementById('demo-data').textContent).output[{k}][{i}][{j}]")
    assert line == f"= {out:g}   = o[{i}, {j}, {k}]".replace("-", "−")
    assert not np.array_equal(before, not_blank(page.screenshot()))  # the highlight moved

    page.click("#next")  # the button steps too, and a click does not restart the movement
    assert current(page)[1] == (step + 2) % 18
    page.key("ArrowLeft", "ArrowLeft", 37)
    page.key("ArrowLeft", "ArrowLeft", 37)
    assert current(page)[:2] == (cell, step)
    time.sleep(1.3)  # paused: nothing moves
    assert current(page)[1] == step
    page.click("#toggle")
    assert page.js("document.body.dataset.playing") == "true"
    page.click("#toggle")
    for _ in range(18):  # every position once: the page checks each dot product against Conv2D
        page.key("ArrowRight", "ArrowRight", 39)
    assert current(page)[1] == step
    for _ in range((18 - step) % 18):  # to the first step: o[0, 0, 0] = −3, the lecture's value
        page.key("ArrowRight", "ArrowRight", 39)
    assert current(page) == ("o-0-0-0", 0, "= −3   = o[0, 0, 0]")
    assert page.js("document.getElementById('mismatch').textContent") == ""
    assert page.errors() == []


#: where the parts of the demo are: rectangles in CSS pixels of the viewport
GEOMETRY = """JSON.stringify((() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  const win = Array.from(document.querySelectorAll("#input td.win"))
    .filter((td) => td.id.startsWith("x-0-")).map(box);  // the window on the first slice
  return {width: window.innerWidth, height: window.innerHeight,
          input: box(document.getElementById("input")), output: box(document.getElementById("output")),
          cur: box(document.querySelector("td.cur")), filter: box(document.querySelector(".column.active")),
          strip: box(document.getElementById("filters")),
          window: {left: Math.min(...win.map(b => b.left)), right: Math.max(...win.map(b => b.right)),
                   top: Math.min(...win.map(b => b.top)), bottom: Math.max(...win.map(b => b.bottom))}};
})())"""


@pytest.mark.parametrize("args", [("16x16x4", 4, 1, 1, 0), ("16x16x4", 4, 16, 1, 0),
                                  ("16x16x4", 4, 8, 1, 0), ("14x14x4", 4, 3, 1, 1)],
                         ids=["16x16-output", "16x16-filters", "9x9-output", "issue-15"])
def test_the_output_stays_beside_the_window_at_the_largest_sizes(browser, tmp_path, args):
    """At 1280×1000, on the largest pages the demo accepts, the output volume sits to the right of
    the input's window in the same row, inside the viewport, and the current filter is in view
    between them (the filters scroll sideways: one wider than the room left shows its left part)."""
    demo = cl.viz.conv_demo(*args)
    path = tmp_path / "demo.html"
    path.write_text(demo.to_html(), encoding="utf-8")
    page = browser.open(path.as_uri())
    page.key(" ", "Space", 32, text=" ")  # pause
    for step in (0, len(demo.steps) - 1):  # filter W0 at o[0, 0, 0], then the last filter
        assert current(page)[1] == step
        at = json.loads(page.js(GEOMETRY))
        out, win, cur, active, strip = (at[key] for key in ("output", "window", "cur", "filter", "strip"))
        assert abs(out["top"] - at["input"]["top"]) < 1, at  # beside the input, not wrapped below
        assert win["right"] <= out["left"] and out["right"] <= at["width"], at
        assert 0 <= cur["left"] and cur["right"] <= at["width"], at
        assert win["right"] <= strip["left"] and strip["right"] <= out["left"], at
        assert strip["left"] <= active["left"] < strip["right"], at  # the current filter in view
        assert active["right"] <= strip["right"] or active["left"] < strip["left"] + 5, at
        if step == 0:  # the window, its filter and its output value all on the first screen
            assert max(win["bottom"], cur["bottom"]) <= at["height"], at
        page.key("ArrowLeft", "ArrowLeft", 37)  # from step 0 back to the last step
    not_blank(page.screenshot())
    assert page.js("document.getElementById('mismatch').textContent") == ""
    assert page.errors() == []


def test_the_report_loads_every_image_and_logs_no_errors(browser, pages):
    page = browser.open(pages["report"].as_uri())
    images = page.js("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert len(images) == 5 and all(images)  # curves, confusion, filters, 1 feature map, mistakes
    sections = page.js("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert sections == ["summary", "curves", "confusion", "per-class", "filters", "feature-maps",
                        "mistakes"]
    not_blank(page.screenshot())
    assert page.errors() == []
