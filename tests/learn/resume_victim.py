"""Runs ``edgekd train`` through the real CLI, and SIGKILLs itself at a chosen point.

usage: python resume_victim.py KILL_AT -- <edgekd args>
KILL_AT: ``none``; ``step:N`` (inside training, after optimizer step N); ``checkpoint:N`` (halfway
through writing the N-th checkpoint file, after some bytes reached the temporary file).
"""

import os
import signal
import sys

import edgekd.atomic
import edgekd.learn.engine as engine


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kill_at: str) -> None:
    kind, _, value = kill_at.partition(":")
    if kind == "step":
        original_step = engine.Trainer._step

        def step(self, images, targets):
            result = original_step(self, images, targets)
            if self.global_step == int(value):
                die()
            return result

        engine.Trainer._step = step
    elif kind == "checkpoint":
        calls = {"n": 0}
        original_write = edgekd.atomic.atomic_write

        def write(path, writer):
            if str(path).endswith("checkpoint.pt"):
                calls["n"] += 1
                if calls["n"] == int(value):
                    def torn(handle):
                        writer(handle)
                        handle.flush()
                        die()  # the temp file is full, the rename has not happened
                    return original_write(path, torn)
            return original_write(path, writer)

        engine.atomic_write = write


if __name__ == "__main__":
    arm(sys.argv[1])
    from edgekd.cli import main

    sys.exit(main(sys.argv[3:]))
