"""Headless Chromium over the DevTools protocol, and a real JupyterLab server: what the browser tests
(tests/test_viewer.py, tests/test_jupyterlab.py) and scripts/explore_screenshot.py drive. Everything stays on
127.0.0.1; the processes started here are ended by their process group when the context ends."""
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def _stop(proc):
    """End a process started with ``start_new_session`` and everything it started (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Browser:
    """Headless Chromium driven over the Chrome DevTools Protocol (one page, flat session)."""

    def __init__(self, tmp, window=(1280, 900)):
        import websocket   # websocket-client, a [dev] dependency
        self.err = open(Path(tmp) / "chromium.log", "w+")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp}/profile", "--remote-debugging-port=0",
             f"--window-size={window[0]},{window[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        self.ws, self.next_id, self.events, self.session = None, 0, [], None
        try:
            self.ws = websocket.create_connection(self._devtools_url(timeout=30), timeout=60, suppress_origin=True)
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _devtools_url(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.err.seek(0)
            m = re.search(r"DevTools listening on (ws://\S+)", self.err.read())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        raise RuntimeError(f"chromium gave no DevTools URL:\n{self.err.read()[-2000:]}")

    def _receive(self):
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(self, method, **params):
        """Send one command (on the page's session once attached) and return its result."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_event(self, method, timeout=30):
        end = time.monotonic() + timeout
        while not any(e["method"] == method for e in self.events):
            if time.monotonic() > end:
                raise TimeoutError(f"no {method} within {timeout} s")
            self._receive()

    def js(self, expression):
        """Value of a JavaScript expression in the page; a thrown exception raises AssertionError."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def wait_for(self, expression, timeout=120, what=None):
        """Poll a JavaScript expression until it is truthy; its value. TimeoutError names ``what``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"{what or expression}: not within {timeout} s")

    def problems(self, local=("file:", "data:"), warnings=True):
        """Exceptions, console errors (and warnings, with ``warnings``), error (and warning) log entries and
        requests to anything but ``local`` (URL prefixes) seen so far."""
        levels = ("error", "assert", "warning") if warnings else ("error", "assert")
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"])
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in levels:
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in levels:
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif e["method"] == "Network.requestWillBeSent" and not p["request"]["url"].startswith(local):
                out.append(f"request: {p['request']['url']}")
        return out

    def screenshot(self, clip=None):
        """PNG bytes of the page's viewport, or of ``clip`` (a dict x, y, width, height in CSS px)."""
        import base64
        params = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def close(self):
        try:
            if self.ws is not None:
                self.ws.close()
        finally:   # the browser and its renderers: the process group this object started
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.err.close()


@contextlib.contextmanager
def browser(window=(1280, 900)):
    """A :class:`Browser` with Runtime, Log, Network and Page events on, in a temporary profile."""
    tmp = tempfile.mkdtemp(prefix="srlib-chromium-")
    b = None
    try:
        b = Browser(tmp, window)
        for domain in ("Runtime", "Log", "Network", "Page"):
            b.call(f"{domain}.enable")
        yield b
    finally:
        if b is not None:
            b.close()
        shutil.rmtree(tmp, ignore_errors=True)


KERNEL_IDLE = ("(() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
               " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
               " return k && k.status === 'idle'; })()")


def run_in_lab(b, base, token, path, ready, timeout=600):
    """Open the notebook ``path`` (relative to the server's root) in JupyterLab's single-document view in the
    :class:`Browser` ``b``, wait for its kernel, run every cell, then wait until the JavaScript ``ready`` holds."""
    b.call("Page.navigate", url=f"{base}/doc/tree/{path}?token={token}")
    b.wait_for(KERNEL_IDLE, 240, "JupyterLab with the notebook's kernel idle")
    b.js("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return b.wait_for(ready, timeout, f"{path}: {ready}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, token, path, method="GET", body=None):
    """One call of the Jupyter server's REST API; the decoded JSON answer."""
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


@contextlib.contextmanager
def jupyterlab(root, tmp, env=None):
    """A real JupyterLab server (this interpreter's) on 127.0.0.1 with a token, serving ``root``: yields
    ``(base_url, token)``. No update check, no news feed; ``window.jupyterapp`` exposed for the browser."""
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ if env is None else env)
    env.update(JUPYTER_RUNTIME_DIR=str(Path(tmp) / "runtime"), JUPYTER_CONFIG_DIR=str(Path(tmp) / "config"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = Path(tmp) / "server.log"
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(240):
            try:
                api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.5)
        else:
            raise RuntimeError(f"jupyter lab did not answer: {log_path.read_text()[-2000:]}")
        yield base, token
    finally:
        _stop(server)
        log.close()


def run_cell(base, token, kernel_id, code, timeout=300):
    """Execute ``code`` in a kernel over the server's websocket; returns its output text (stdout, stderr and
    error tracebacks) and the reply status ('ok', 'error', or 'timeout')."""
    import tornado.ioloop
    import tornado.websocket

    async def go():
        ws = await tornado.websocket.websocket_connect(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}")
        msg_id, out = uuid.uuid4().hex, []
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await ws.read_message()
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                ws.close()
                return "".join(out), msg["content"]["status"]
        ws.close()
        return "".join(out), "timeout"

    return tornado.ioloop.IOLoop.current().run_sync(go, timeout=timeout + 10)
