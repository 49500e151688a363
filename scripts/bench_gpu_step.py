"""Where a MobileNetV2-CIFAR training step's time goes on a GPU: precision x memory format x cudnn.benchmark,
per-step host syncs, a KD teacher, the data loader alone, and the top kernels. Batches are synthetic and GPU-resident
(their content does not change the time), so only the step is measured. Needs CUDA (on a CPU it runs 1+2 steps
per cell as a smoke test).

    PYTHONPATH=. python3 scripts/bench_gpu_step.py

Results and the machine: docs/benchmarks.md, "GPU training step".
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from edgekd.data.loaders import STATS, ArrayImages
from edgekd.models import create_model

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
WARM, TIMED = (20, 40) if dev.type == "cuda" else (1, 2)


def step_time(amp: bool, cl: bool, bench: bool, sync: bool = False, batch: int = 128, kd: bool = False):
    """ms per SGD step (mean of TIMED after WARM), and the step itself."""
    torch.backends.cudnn.benchmark = bench
    torch.manual_seed(0)
    model = create_model("mobilenetv2_cifar", width_mult=1.0).to(dev)
    teacher = create_model("mobilenetv2_cifar", width_mult=1.0).to(dev).eval() if kd else None
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if teacher is not None:
        teacher = teacher.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)
    x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)

    def one():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            if teacher is not None:
                with torch.no_grad():
                    t = teacher(x)
                loss = loss + nn.functional.kl_div(out.log_softmax(1), t.softmax(1), reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sync:  # what the engine does every step: the loss and the accuracy on the host
            loss.item()
            int((out.argmax(1).cpu() == y.cpu()).sum())

    for _ in range(WARM):
        one()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(TIMED):
        one()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / TIMED, one


def main() -> None:
    print(torch.__version__, torch.backends.cudnn.version(), dev, flush=True)
    for amp in (True, False):
        for cl in (True, False):
            for bench in (False, True):
                ms, _ = step_time(amp, cl, bench)
                print(f"amp={amp:d} channels_last={cl:d} cudnn.benchmark={bench:d}: {ms:7.2f} ms/step "
                      f"({128 / ms * 1000:8.0f} img/s)", flush=True)
    for amp, cl in ((True, True), (False, False)):
        ms, _ = step_time(amp, cl, True, sync=True)
        print(f"with per-step syncs amp={amp:d} cl={cl:d} bench=1: {ms:7.2f} ms/step", flush=True)
        ms, _ = step_time(amp, cl, True, kd=True)
        print(f"with a KD teacher   amp={amp:d} cl={cl:d} bench=1: {ms:7.2f} ms/step", flush=True)
    ms, _ = step_time(False, False, True, batch=512)
    print(f"batch 512 fp32 contiguous bench=1: {ms:7.2f} ms/step ({512 / ms * 1000:.0f} img/s)", flush=True)

    mean, std = STATS["cifar10"]
    images = np.random.default_rng(0).integers(0, 256, (40000, 32, 32, 3), dtype=np.uint8)
    labels = np.zeros(40000, np.uint8)
    for workers in (6, 12):
        loader = torch.utils.data.DataLoader(ArrayImages(images, labels, mean, std, True), 128, shuffle=True,
                                             drop_last=True, num_workers=workers)
        batches = iter(loader)
        next(batches)
        start, seen = time.perf_counter(), 0
        for index, (_, targets) in enumerate(batches):
            seen += len(targets)
            if index >= 100:
                break
        print(f"loader workers={workers}: {seen / (time.perf_counter() - start):8.0f} img/s", flush=True)

    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        for amp, cl in ((True, True), (False, False)):
            _, one = step_time(amp, cl, False)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    one()
                torch.cuda.synchronize()
            print(f"--- top kernels amp={amp:d} cl={cl:d} bench=0 (5 steps)")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=70))


if __name__ == "__main__":
    main()
