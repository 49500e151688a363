"""Where a MobileNetV2-CIFAR training step's time goes on a GPU: precision x memory format x cudnn.benchmark,
per-step host syncs, a KD teacher, the data loader alone, and the top kernels; with ``--compile MODE...``, the
step eager against ``torch.compile`` (``default``: inductor alone, ``reduce-overhead``: inductor with CUDA graphs),
bf16 autocast, channels_last, cudnn.benchmark. Batches are synthetic and GPU-resident (their content does not
change the time), so only the step is measured. Needs CUDA (on a CPU it runs 1+2 steps per cell as a smoke test).

    PYTHONPATH=. python3 scripts/bench_gpu_step.py                                   # the eager grid
    PYTHONPATH=. python3 scripts/bench_gpu_step.py --compile reduce-overhead default # compiled against eager

Results and the machine: docs/benchmarks.md, "GPU training step".
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from edgekd.data.loaders import STATS, ArrayImages
from edgekd.models import create_model

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
WARM, TIMED = (20, 40) if dev.type == "cuda" else (1, 2)
COMPILE_WARM = 30 if dev.type == "cuda" else 1  # a compile takes its first steps


def step_time(amp: bool, cl: bool, bench: bool, sync: bool = False, batch: int = 128, kd: bool = False,
              compile_mode: str = "eager", warm: int = WARM) -> tuple[float, object, float]:
    """ms per SGD step (mean of TIMED after ``warm``), the step itself, and the seconds the warm-up steps took
    (with ``compile_mode`` other than eager, the compile is in them)."""
    torch.backends.cudnn.benchmark = bench
    torch.manual_seed(0)
    model = create_model("mobilenetv2_cifar", width_mult=1.0).to(dev)
    teacher = create_model("mobilenetv2_cifar", width_mult=1.0).to(dev).eval() if kd else None
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if teacher is not None:
        teacher = teacher.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5, foreach=True)
    forward = model if compile_mode == "eager" else torch.compile(
        model, mode=None if compile_mode == "default" else compile_mode)
    x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)

    def one():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            out = forward(x)
            loss = nn.functional.cross_entropy(out, y)
            if teacher is not None:
                with torch.no_grad():
                    t = teacher(x)
                loss = loss + nn.functional.kl_div(out.log_softmax(1), t.softmax(1), reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sync:  # what the engine did every step until stop 30: the loss and the accuracy on the host
            loss.item()
            int((out.argmax(1).cpu() == y.cpu()).sum())

    def timed(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            one()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warm_s = timed(warm)
    return 1000 * timed(TIMED) / TIMED, one, warm_s


def compiled(modes: list[str]) -> None:
    """The bf16 channels_last step eager (batch 128 and 256) against each ``torch.compile`` mode."""
    for mode, batch in [("eager", 128), ("eager", 256), *((m, 128) for m in modes)]:
        try:
            ms, _, warm_s = step_time(True, True, True, batch=batch, compile_mode=mode, warm=COMPILE_WARM)
        except Exception as exc:  # noqa: BLE001 - report and go on: the numbers are the point
            print(mode, "failed:", type(exc).__name__, str(exc)[:300], flush=True)
            continue
        print(f"{mode:16s} batch={batch}: {ms:6.2f} ms/step ({batch / ms * 1000:7.0f} img/s), first "
              f"{COMPILE_WARM} steps incl. compile {warm_s:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", nargs="+", metavar="MODE", default=None,
                        help="only the compiled comparison: torch.compile modes (default, reduce-overhead, ...)")
    args = parser.parse_args()
    print(torch.__version__, torch.backends.cudnn.version(), dev, flush=True)
    if args.compile:
        compiled(args.compile)
        return
    for amp in (True, False):
        for cl in (True, False):
            for bench in (False, True):
                ms, _, _ = step_time(amp, cl, bench)
                print(f"amp={amp:d} channels_last={cl:d} cudnn.benchmark={bench:d}: {ms:7.2f} ms/step "
                      f"({128 / ms * 1000:8.0f} img/s)", flush=True)
    for amp, cl in ((True, True), (False, False)):
        ms, _, _ = step_time(amp, cl, True, sync=True)
        print(f"with per-step syncs amp={amp:d} cl={cl:d} bench=1: {ms:7.2f} ms/step", flush=True)
        ms, _, _ = step_time(amp, cl, True, kd=True)
        print(f"with a KD teacher   amp={amp:d} cl={cl:d} bench=1: {ms:7.2f} ms/step", flush=True)
    ms, _, _ = step_time(False, False, True, batch=512)
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
            _, one, _ = step_time(amp, cl, False)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    one()
                torch.cuda.synchronize()
            print(f"--- top kernels amp={amp:d} cl={cl:d} bench=0 (5 steps)")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=70))


if __name__ == "__main__":
    main()
