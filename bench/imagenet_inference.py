"""ImageNet-size inference on this machine: images/s of resnet18 and resnet50 at 224×224 in
cnnlab, beside PyTorch (the same network in plain torch, tests/reference_nets.py) and
onnxruntime (cnnlab's ONNX export), the three taking turns.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/imagenet_inference.py [--batch 8]

Random weights (the speed does not depend on them), float32, forward only, inference mode, 2
threads each (BENCH_THREADS). Each round times one batch in each runtime; the table shows the
median images/s over the rounds after one warm-up round. The sgemm rate of this machine is
printed first: the numbers depend on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import common  # noqa: E402

import cnnlab as cl  # noqa: E402


def _torch_twin(name: str, model: cl.Sequential):
    """The plain-torch twin of the zoo model, given cnnlab's weights through the name table."""
    import torch

    from tests import reference_nets

    twin = reference_nets.build(name, num_classes=1000)
    table = cl.zoo.LAYOUTS[name]()
    ours = {**{n: p.data for n, p in model.parameters().items()}, **model.buffers()}
    state = {theirs: torch.from_numpy(np.ascontiguousarray(ours[mine]).reshape(
        twin.state_dict()[theirs].shape)) for theirs, mine in table.pairs}
    missing = twin.load_state_dict(state, strict=False).missing_keys
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    return twin.eval()


def _session(model: cl.Sequential):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = common.THREADS
    options.inter_op_num_threads = 1
    proto = cl.io.to_onnx(model)
    return ort.InferenceSession(proto.SerializeToString(), options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    common.limit_threads()
    cl.runtime.apply_defaults()
    import torch

    print(f"BLAS: {common.blas_info()}")
    print(f"sgemm: {common.sgemm_gflops():.0f} GFLOP/s; batch {args.batch}, 224×224×3, float32, "
          f"{common.THREADS} threads, median of {args.rounds} rounds\n")
    print("| network | cnnlab img/s | PyTorch img/s | onnxruntime img/s | cnnlab / PyTorch |")
    print("|---|---|---|---|---|")
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    for name in args.nets:
        model = cl.zoo.get(name)
        twin, session = _torch_twin(name, model), _session(model)
        runs = {"cnnlab": lambda m=model: m.forward(x),
                "torch": lambda t=twin: t(torch.from_numpy(x)),
                "onnx": lambda s=session: s.run(["output"], {"input": x})}
        times = {k: [] for k in runs}
        with torch.inference_mode():
            for round_ in range(args.rounds + 1):
                for key, fn in runs.items():
                    started = time.perf_counter()
                    fn()
                    if round_:  # the first round warms up
                        times[key].append(time.perf_counter() - started)
        rate = {k: args.batch / float(np.median(v)) for k, v in times.items()}
        print(f"| {name} | {rate['cnnlab']:.1f} | {rate['torch']:.1f} | {rate['onnx']:.1f} | "
              f"{rate['cnnlab'] / rate['torch']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
