"""Shared test settings and helpers (fixtures; test modules never import each other)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from text2lofi.runtime import use_threads

ROOT = Path(__file__).resolve().parents[1]
APP_ADMIN_PASSWORD = "test-admin"

# Generation runs tiny per-token ops; on a busy 2-core machine extra intra-op threads only spin
# (a 60 s track: 234 s with 2 threads vs 9 s with 1, measured while other jobs ran). Tests that
# need more threads set them themselves.
use_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _running_app(folder: Path, *extra: str, own_output_dir: bool = True, env: dict | None = None):
    """`python app.py` on a free 127.0.0.1 port with its survey in folder/survey.sqlite3 and its outputs in
    folder/out (own_output_dir=False: the app's default folder); env adds variables. Yields (url, db_path, process)."""
    port, db = _free_port(), folder / "survey.sqlite3"
    env = dict(os.environ, TEXT2LOFI_DB_URL=f"sqlite:///{db}", TEXT2LOFI_APP_ADMIN_PASSWORD=APP_ADMIN_PASSWORD,
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    log = open(folder / "server.log", "w")
    # A small blind-comparison pool (two systems, one prompt, 6 s clips) so its background rendering stays light.
    compare = ["--compare-systems", "rwkv,markov", "--compare-prompts", "rainy night study beats",
               "--compare-clip-s", "6", "--compare-seeds", "1", "--compare-min-listen-s", "1"]
    outputs = ["--output-dir", str(folder / "out")] if own_output_dir else []
    proc = subprocess.Popen([sys.executable, "app.py", *outputs, *compare, *extra],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("app did not start:\n" + (folder / "server.log").read_text()[-3000:])
            time.sleep(0.5)
    try:
        yield url, db, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.fixture(scope="session")
def running_app():
    """`running_app(folder, *args)`: a context manager that runs `python app.py` on a free 127.0.0.1 port with its
    survey in folder/survey.sqlite3 and yields (url, db_path, process)."""
    return _running_app


def _rwkv_package_model(path):
    # the package reads these at import time; fp32 CPU with its TorchScript path, no CUDA build
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    from rwkv.model import RWKV
    return RWKV(model=str(path), strategy="cpu fp32")


@pytest.fixture(scope="session")
def rwkv_package_model():
    """`rwkv_package_model(path)`: a checkpoint loaded by the reference runtime (the `rwkv` PyPI package)."""
    return _rwkv_package_model
