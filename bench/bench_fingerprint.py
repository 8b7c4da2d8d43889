"""What hashing every byte of SmolLM2-135M-Instruct costs, against the sampled fingerprint
it replaced (256 elements at each end of every tensor, blind to the middle).

    python bench/bench_fingerprint.py [--repeats 15] [--dtype float32]

Times, interleaved and repeated (median, min-max), of: the old sampled fingerprint, the
full fingerprint (``model_fingerprint``: xxh3-128 when ``xxhash`` is installed) and the
full fingerprint with the SHA-256 fallback used when it is not. Prints the ratio of the full
fingerprint to the sampled one and the hashing rate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
from transformers import AutoModelForCausalLM

from lm_edit.core.fingerprint import model_fingerprint
from lm_edit.offline_model import converted_model_dir


def sampled_fingerprint(model) -> str:
    """The former fingerprint: the config and 256 elements at each end of every tensor."""
    digest = hashlib.sha256(
        json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
    )
    for name, param in model.state_dict().items():
        flat = param.detach().reshape(-1)
        sample = torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy().tobytes()
        digest.update(name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(sample)
    return digest.hexdigest()[:16]


def without_xxhash(model) -> str:
    """``model_fingerprint`` as computed where ``xxhash`` is not installed (SHA-256)."""
    saved = sys.modules.get("xxhash")
    sys.modules["xxhash"] = None  # type: ignore[assignment]  # makes `import xxhash` fail
    try:
        return model_fingerprint(model)
    finally:
        if saved is None:
            del sys.modules["xxhash"]
        else:
            sys.modules["xxhash"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(
        converted_model_dir(), dtype=getattr(torch, args.dtype)
    ).eval()
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    try:
        import xxhash  # noqa: F401

        backend = "xxh3-128"
    except ImportError:
        backend = "sha256 (xxhash not installed)"
    ways: dict[str, Callable[[torch.nn.Module], str]] = {
        "sampled (old)": sampled_fingerprint,
        f"full, {backend}": model_fingerprint,
        "full, sha256 fallback": without_xxhash,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for way in ways.values():  # warm-up
        way(model)
    for _ in range(args.repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            way(model)
            times[name].append(time.perf_counter() - start)
    print(
        f"SmolLM2-135M-Instruct, {args.dtype}, {size / 1e6:.0f} MB of state dict, "
        f"{torch.get_num_threads()} torch threads, {args.repeats} interleaved repeats"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        rate = f"{size / medians[name] / 1e9:6.2f} GB/s" if "full" in name else ""
        print(
            f"  {name:32s} median {medians[name] * 1e3:8.1f} ms "
            f"({min(values) * 1e3:.1f}-{max(values) * 1e3:.1f})  {rate}"
        )
    old = medians["sampled (old)"]
    for name in list(ways)[1:]:
        print(f"  ratio {name} / sampled: {medians[name] / old:.1f}x")


if __name__ == "__main__":
    main()
