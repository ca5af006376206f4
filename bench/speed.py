"""Speed and memory against PyTorch CPU: training step and inference, per-layer times, GEMM
efficiency, peak memory.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/speed.py [--nets fmnist-cnn resnet8]

The default networks are issue 19's four: fmnist-cnn, fmnist-cnn-bn, resnet8, resnet20.

Each framework runs in its own subprocess (so peak memory is its own), on the same 2 threads,
float32, batch 128, 28×28×1 input. The two processes live side by side and take turns (the one
waiting sleeps): per round, 3 training steps of cnnlab then 3 of PyTorch, 15 rounds after 3
warm-up steps each, then the same for inference. A round's figures are a few seconds apart, so
the drift of a shared machine hits both; the ratio is taken per round and its median and range
printed. Printed: images/s of a training step (forward, backward, SGD-with-momentum update) and
of inference, and their ratio cnnlab/PyTorch (> 1: cnnlab faster); the peak memory training
steps add over the model and batch (VmHWM during the steps − VmRSS before the first, so memory
an allocator keeps between steps counts; one step on 2 images runs before, so code generated or
loaded once per process, oneDNN's or Numba's, counts in peak RSS only) and each process's peak
RSS, with the same ratio (> 1: cnnlab uses more); per layer, forward and backward milliseconds
of cnnlab and of PyTorch (each layer run alone on its input; Residual blocks opened, "(+)" rows
being the block's own work); each convolution's speed against PyTorch's (forward + backward
time, PyTorch's over cnnlab's) and its achieved GFLOP/s (whole layer forward, and its GEMM
alone: the whole batch's columns, 2 BLAS threads) against the sgemm GFLOP/s NumPy reaches on a
2048² matrix in the same process just before; then how many of issue 19's per-layer targets hold
(_layer_rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

BATCH, STEPS, WARMUP = 128, 15, 3
STEPS_PER_TURN, PAUSE = 3, 0.3


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # kB → MiB
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _timed(fn, steps: int = STEPS) -> float:
    """Median seconds of one call after WARMUP calls."""
    return common.median_seconds(fn, steps, WARMUP)


def serve(framework: str, net: str) -> None:
    """Runs in a subprocess: one framework, one network. Reads commands on stdin and answers
    each with a JSON line: "train K" and "infer K" time K steps (a list of seconds); "done"
    reports memory and per-layer times and ends. Between commands the process sleeps on its
    read, so the other framework's process has the cores to itself."""
    import cnnlab as cl

    common.limit_threads()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    model = cl.zoo.get(net, seed=0)
    if framework == "cnnlab":
        cl.runtime.apply_defaults()  # what cl.fit and the cnnlab command do before their steps
        loss, opt = cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.01, momentum=0.9)

        def train():
            loss.forward(model.forward(x, training=True), y)
            model.backward(loss.backward(), input_grad=False)
            opt.step()

        def infer():
            model.forward(x)

        def warm_up():
            loss.forward(model.forward(x[:2], training=True), y[:2])
            model.backward(loss.backward(), input_grad=False)
    else:
        import torch

        net_t = common.to_torch(model, torch)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt_t = torch.optim.SGD(net_t.parameters(), lr=0.01, momentum=0.9)

        def train():
            net_t.train()
            opt_t.zero_grad()
            torch.nn.functional.cross_entropy(net_t(xt), yt).backward()
            opt_t.step()

        def infer():
            net_t.eval()
            with torch.no_grad():
                net_t(xt)

        def warm_up():
            net_t.train()
            torch.nn.functional.cross_entropy(net_t(xt[:2]), yt[:2]).backward()
            opt_t.zero_grad()
    # code a framework generates or loads once per process (oneDNN's kernels, Numba's compiled
    # loops) counts in peak RSS, not in step memory: one step on 2 images before the baseline
    warm_up()
    _reset_peak()
    base = _status("VmRSS")  # the model and the batch, before any step
    step_mib = 0.0
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "done":
            break
        fn = train if command == "train" else infer
        times = []
        for _ in range(int(arg[0])):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        if command == "train":  # the memory training steps add (lockstep runs them first)
            step_mib = max(step_mib, _status("VmHWM") - base)
        print(json.dumps(times), flush=True)
    result = {"step_mib": step_mib, "peak_mib": common.peak_rss_mib()}
    if framework == "cnnlab":  # the reference for the GEMMs' share, measured just before them
        result["sgemm"] = common.sgemm_gflops()
        result["layers"] = layer_times(model, x)
    else:
        result["layers"] = torch_layer_times(model, net_t, xt, torch)
    print(json.dumps(result), flush=True)


def _per_layer(model, x, time_one, twin=None) -> list:
    """One row per layer: time_one(layer, twin_module, input, name) appends a row to the list it
    returns with the layer's output. Residual blocks are opened: a row per layer of each part,
    then the block's own row ("(+)": the whole block less its parts). twin mirrors model (the
    PyTorch network of common.to_torch) or is None."""
    import cnnlab as cl

    rows: list = []

    def walk(seq, mods, a, prefix):
        for i, layer in enumerate(seq.layers):
            mod = None if mods is None else mods[i]
            name = prefix + layer.name
            if not isinstance(layer, cl.Residual):
                a = time_one(layer, mod, a, name, rows)
                continue
            start = len(rows)
            for part in layer.sublayers():
                walk(part, None if mod is None else getattr(mod, part.name), a,
                     f"{name}.{part.name}.")
            inner = {k: sum(r[k] for r in rows[start:]) for k in ("fwd", "bwd")}
            a = time_one(layer, mod, a, f"{name} (+)", rows)
            for k in inner:
                rows[-1][k] -= inner[k]
        return a

    walk(model, twin, x, "")
    return rows


def layer_times(model, x) -> list:
    """cnnlab's forward and backward seconds per layer (training mode), and conv GEMM FLOPs."""
    import cnnlab as cl
    from cnnlab.kernels import im2col

    def time_layer(layer, _, a, name, rows):
        out = layer.forward(a, training=True)
        fwd = _timed(lambda: layer.forward(a, training=True), 5)
        dy = np.ones_like(out)

        def back():
            layer.forward(a, training=True)
            return layer.backward(dy)

        bwd = _timed(back, 5) - fwd
        flops, gemm, cin = 0, 0.0, 0
        if isinstance(layer, cl.Conv2D):
            k, c, kh, kw = layer.weight.shape
            cin = c * layer.groups if kh == kw == 3 else 0  # the 3×3 targets' rows
            flops = 2 * k * c * kh * kw * int(np.prod(layer.out_shape[1:])) * x.shape[0]
            x_col = im2col(a, kh, kw, layer.win.stride, layer.win.pad)
            w_mat = layer.weight.data.reshape(k, -1)
            gemm = _timed(lambda w=w_mat, c=x_col: w @ c, 5)
        rows.append({"name": name, "fwd": fwd, "bwd": bwd, "flops": flops, "gemm": gemm, "cin": cin})
        return out

    return _per_layer(model, x, time_layer)


def torch_layer_times(model, net, x, torch) -> list:
    """PyTorch's forward and backward seconds for the same rows as layer_times (net is
    common.to_torch(model)): each module run alone on its input, backward from ones."""

    def time_module(_, module, a, name, rows):
        a = a.detach().requires_grad_(True)
        out = module(a)
        grad = torch.ones_like(out)
        fwd = _timed(lambda: module(a), 5)
        bwd = _timed(lambda: module(a).backward(grad), 5) - fwd
        rows.append({"name": name, "fwd": fwd, "bwd": bwd})
        return out.detach()

    net.train()
    return _per_layer(model, x, time_module, net)


class Worker:
    """A serve() subprocess and the commands it answers."""

    def __init__(self, framework: str, net: str):
        self.name = framework
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", framework, "--nets", net],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, command: str):
        time.sleep(PAUSE)  # the other process's idle threads stop spinning first
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker failed (exit {self.proc.wait()})")
        return json.loads(line)


def lockstep(net: str, rounds: int, have_torch: bool) -> tuple[dict, dict | None]:
    """Both frameworks' workers alive at once, taking turns: per round, STEPS_PER_TURN training
    steps of one, then of the other, then the same for inference. A round's two figures are
    seconds apart, so a change in the machine's speed hits both; a round gives one ratio."""
    workers = [Worker("cnnlab", net)] + ([Worker("torch", net)] if have_torch else [])
    try:
        runs = {w.name: {"train_ips": [], "infer_ips": []} for w in workers}
        for kind in ("train", "infer"):  # every training step before any inference
            for w in workers:
                w.ask(f"{kind} {WARMUP}")
            for _ in range(rounds):
                for w in workers:
                    runs[w.name][f"{kind}_ips"].append(
                        BATCH / float(np.median(w.ask(f"{kind} {STEPS_PER_TURN}"))))
        results = []
        for w in workers:
            done = w.ask("done")
            results.append({**runs[w.name], **done})
    finally:
        for w in workers:
            w.proc.kill()
    return results[0], results[1] if have_torch else None


#: issue 19's four networks
NETS = ["fmnist-cnn", "fmnist-cnn-bn", "resnet8", "resnet20"]
KEYS = (("train_ips", "train img/s"), ("infer_ips", "infer img/s"), ("step_mib", "step MiB"),
        ("peak_mib", "peak RSS MiB"))


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--nets", nargs="+", default=NETS)
    parser.add_argument("--rounds", type=int, default=15,
                        help="rounds of the two frameworks taking turns (default 15); the table "
                             "shows medians, and the spread of the per-round ratio")
    parser.add_argument("--worker", choices=["cnnlab", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker, args.nets[0])
        return
    common.limit_threads()
    print(f"BLAS: {common.blas_info()}   threads: {common.THREADS}   batch {BATCH}, float32")
    have_torch = common.torch_or_none() is not None
    print(f"NumPy sgemm 2048×2048: {common.sgemm_gflops():.1f} GFLOP/s")
    for net in args.nets:
        ours, theirs = lockstep(net, max(1, args.rounds), have_torch)
        print(f"\n{net}   (per round: {STEPS_PER_TURN} steps of each framework in turn, their median; "
              f"{len(ours['train_ips'])} rounds; ratio: median [min–max] over rounds)")
        print(f"{'':12}{'cnnlab':>12}{'PyTorch':>12}{'ratio':>8}")
        for key, label in KEYS:
            mine = np.atleast_1d(ours[key])
            other = np.atleast_1d(theirs[key]) if theirs else np.full(mine.shape, np.nan)
            ratios = mine / other
            spread = f"  [{ratios.min():.2f}–{ratios.max():.2f}]" if len(ratios) > 1 else ""
            print(f"{label:12}{np.median(mine):12.1f}{np.median(other):12.1f}"
                  f"{np.median(ratios):8.2f}{spread}")
        print(f"  {'layer':32}{'fwd ms':>8}{'bwd ms':>8}{'PyTorch':>9}{'bwd':>7}{'speed':>7}"
              "  conv GFLOP/s: layer, its GEMM (share of sgemm)")
        gemm = ours["sgemm"]
        print(f"  (NumPy sgemm 2048×2048 just before these rows: {gemm:.1f} GFLOP/s)")
        torch_rows = {r["name"]: r for r in theirs["layers"]} if theirs else {}
        _layer_rows(ours["layers"], torch_rows, gemm)


def _layer_rows(rows: list, torch_rows: dict, gemm: float) -> None:
    """The per-layer table; for convolutions "speed" is PyTorch's forward + backward time over
    cnnlab's (> 1: cnnlab faster). Then issue 19's per-layer targets for the 3×3 convolutions:
    ≥ 16 input channels at least PyTorch's speed, ≥ 32 also ≥ 70% of sgemm in the forward (direct
    convolution's multiply-adds), the first layers (1 or 3 channels) within 1.5× of PyTorch's time."""
    verdicts = []
    for row in rows:
        t = torch_rows.get(row["name"], {"fwd": float("nan"), "bwd": float("nan")})
        speed = (t["fwd"] + t["bwd"]) / (row["fwd"] + row["bwd"])
        share = row["flops"] / row["fwd"] / 1e9 / gemm if row["flops"] else 0.0
        c = row.get("cin", 0)
        if c >= 16:
            verdicts.append(speed >= 1.0 and (c < 32 or share >= 0.7))
        elif c in (1, 3):
            verdicts.append(speed >= 1 / 1.5)
        speed_text, text = " " * 7, ""
        if row["flops"]:
            layer_rate, gemm_rate = row["flops"] / row["fwd"] / 1e9, row["flops"] / row["gemm"] / 1e9
            speed_text = f"{speed:7.2f}"
            text = (f"  {layer_rate:6.1f} ({100 * layer_rate / gemm:3.0f}%), "
                    f"{gemm_rate:6.1f} ({100 * gemm_rate / gemm:3.0f}%)")
        print(f"  {row['name']:32}{1e3 * row['fwd']:8.2f}{1e3 * row['bwd']:8.2f}"
              f"{1e3 * t['fwd']:9.2f}{1e3 * t['bwd']:7.2f}{speed_text}{text}")
    print(f"  3×3 convolution targets met: {sum(verdicts)} of {len(verdicts)}")


if __name__ == "__main__":
    main()
