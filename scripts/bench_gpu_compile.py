"""The GPU training step, eager against torch.compile: inductor alone ("default") and inductor with CUDA graphs
("reduce-overhead"), MobileNetV2-CIFAR x1.0, bf16 autocast, channels_last, cudnn.benchmark, synthetic GPU-resident
batches. Needs CUDA.

    PYTHONPATH=. python3 scripts/bench_gpu_compile.py reduce-overhead default

Results and the machine: docs/benchmarks.md, "GPU training step".
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

from edgekd.models import create_model

WARM, TIMED = 30, 60


def run(mode: str, amp: bool = True, cl: bool = True, batch: int = 128) -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = create_model("mobilenetv2_cifar", width_mult=1.0).to(dev).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5, foreach=True)
    fwd = model if mode == "eager" else torch.compile(model, mode=None if mode == "default" else mode)
    x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)

    def one():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(WARM):
        one()
    torch.cuda.synchronize()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(TIMED):
        one()
    torch.cuda.synchronize()
    ms = 1000 * (time.perf_counter() - start) / TIMED
    print(f"{mode:16s} amp={amp:d} cl={cl:d} batch={batch}: {ms:6.2f} ms/step ({batch / ms * 1000:7.0f} img/s), "
          f"first {WARM} steps incl. compile {warm:.1f} s", flush=True)


def main() -> None:
    torch.backends.cudnn.benchmark = True
    run("eager")
    run("eager", batch=256)
    for mode in sys.argv[1:]:
        try:
            run(mode)
        except Exception as exc:  # noqa: BLE001 - report and go on: the numbers are the point
            print(mode, "failed:", type(exc).__name__, str(exc)[:300], flush=True)


if __name__ == "__main__":
    main()
