"""JupyterLab as a user starts it: the real server on 127.0.0.1 with a token, a notebook opened through its
API, the registered `srlib` kernel started for it, and a cell run there. The notebook's kernel works in
notebooks/, yet srlib must find the repository's data/ (or $SRLIB_DATA), never notebooks/data."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
tornado_ws = pytest.importorskip("tornado.websocket")
pytest.importorskip("jupyterlab")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, token, path, method="GET", body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _run_cell(base, token, kernel_id, code, timeout=120):
    """Execute ``code`` in a kernel over the server's websocket; returns its stdout and the reply status."""
    import tornado.ioloop

    async def go():
        ws = await tornado_ws.websocket_connect(f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}")
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


@pytest.mark.slow
def test_notebook_kernel_in_jupyterlab_finds_the_repository_data(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "SRLIB_DATA"}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(120):
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail(f"jupyter lab did not answer: {(tmp_path / 'server.log').read_text()[-2000:]}")
        assert "srlib" in _api(base, token, "/api/kernelspecs")["kernelspecs"]
        nb = _api(base, token, "/api/contents/notebooks/02_train.ipynb")
        assert nb["type"] == "notebook" and any("parameters" in c["metadata"].get("tags", [])
                                                for c in nb["content"]["cells"])
        session = _api(base, token, "/api/sessions", "POST",
                       {"path": "notebooks/02_train.ipynb", "type": "notebook", "name": "02_train.ipynb",
                        "kernel": {"name": "srlib"}})
        out, status = _run_cell(base, token, session["kernel"]["id"],
                                "import os, srlib\nfrom srlib.data import data_root\n"
                                "print(os.getcwd())\nprint(data_root().resolve())\nprint(srlib.__file__)")
        assert status == "ok", out
        cwd, root, module = out.strip().splitlines()[-3:]
        assert Path(cwd) == REPO / "notebooks"                     # the kernel starts beside the notebook
        assert Path(root) == (REPO / "data").resolve()              # ... yet finds the repository's data/
        assert Path(module).resolve().is_relative_to(REPO.resolve())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
