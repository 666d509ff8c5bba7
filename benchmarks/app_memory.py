"""Peak memory of the real app making one long track: `python app.py` on a free port, one /generate call of
--seconds, the server's peak RSS (VmHWM) read from /proc before and after. Baseline in the same run: the CLI
making the same track (`text2lofi generate`), whose peak is measured by the same kernel counter.

    .venv/bin/python benchmarks/app_memory.py --seconds 600
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        port = _port()
        env = dict(os.environ, TEXT2LOFI_DB_URL=f"sqlite:///{tmp}/s.db", GRADIO_SERVER_PORT=str(port),
                   GRADIO_ANALYTICS_ENABLED="False")
        log = open(Path(tmp) / "server.log", "w")
        proc = subprocess.Popen([sys.executable, "app.py", "--output-dir", f"{tmp}/out", "--compare-systems", "rwkv,markov",
                                 "--compare-seeds", "1", "--compare-clip-s", "5"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.5)
            time.sleep(5)                       # let the comparison pool's first clips settle
            idle = _peak_mb(proc.pid)
            t0 = time.perf_counter()
            Client(url, verbose=False).predict("rainy night study beats", args.seconds, args.seed,
                                               api_name="/generate")
            took = time.perf_counter() - t0
            peak = _peak_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        t0 = time.perf_counter()
        cli = subprocess.Popen([sys.executable, "-m", "text2lofi", "generate", "rainy night study beats",
                                "--duration", str(args.seconds), "--seed", str(args.seed), "-o", f"{tmp}/cli.wav",
                                "-q"], cwd=ROOT, stdout=subprocess.DEVNULL)
        cli_peak = 0.0
        while cli.poll() is None:           # VmHWM only grows: the last reading before exit is the peak
            try:
                cli_peak = _peak_mb(cli.pid)
            except (OSError, RuntimeError):
                pass
            time.sleep(0.1)
        cli_took = time.perf_counter() - t0
    print(f"app: idle peak {idle:.0f} MB, peak after a {args.seconds:g} s track {peak:.0f} MB ({took:.1f} s)")
    print(f"cli: peak {cli_peak:.0f} MB ({cli_took:.1f} s)   app/cli peak ratio {peak / cli_peak:.2f}")


if __name__ == "__main__":
    main()
