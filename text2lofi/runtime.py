"""Threads: the process-wide setting the shells apply once (how many threads torch may use) and `ahead`, which
runs an iterator on a thread of its own."""
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Iterator

# Sampling runs tiny per-token steps: intra-op threads only spin on them. One thread per generation is 7x faster
# on a busy 2-core CPU; the app runs `--concurrency` generations side by side instead.
GENERATION_THREADS = 1


def use_threads(n: int = GENERATION_THREADS) -> None:
    """Let torch use n intra-op threads in this process (training and evaluation pass their own n)."""
    import torch

    torch.set_num_threads(max(1, int(n)))


def ahead(items: Iterator, depth: int = 8, name: str = "text2lofi-ahead") -> Iterator:
    """`items` produced on a thread of their own, at most `depth` ahead of the consumer: the pipeline composes
    this way while synthesis, the chain and textures (which release the GIL) run on the other core. Same items
    in the same order, so the same bytes; an error raised there is raised here; closing this generator stops
    the thread at its next item and waits for it."""
    done = object()
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop, running, finished = threading.Event(), threading.Event(), threading.Event()

    def produce() -> None:
        running.set()
        try:
            for item in items if not stop.is_set() else ():
                box.put((item, None))
                if stop.is_set():
                    break
            box.put((done, None))
        except BaseException as exc:              # handed to the consumer
            box.put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            finished.set()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    started = False
    try:
        worker.start()
        started = True
        while True:
            item, error = box.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        # Wait for the thread to be done with torch before going on (a process that exits while it composes
        # aborts). A Ctrl-C inside start() leaves it unknown whether the thread exists: it says so within a second.
        if running.wait(None if started else 1.0):
            while not finished.is_set():           # let a producer blocked on a full queue see the stop
                with contextlib.suppress(queue.Empty):
                    box.get(timeout=0.05)
