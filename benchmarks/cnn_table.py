#!/usr/bin/env python3
"""Prints the CNN benchmarks' medians (npdl_cnn_bench's JSON) as two tables:
training-step samples/s and conv2d GFLOP/s, npdl beside LibTorch."""
import json
import sys


def medians(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        out[name] = b.get("items_per_second") or b.get("GFLOP/s")
    return data.get("context", {}), out


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def fmt(v, digits=0):
    return f"{v:,.{digits}f}" if v else "-"


def main():
    context, m = medians(sys.argv[1])
    print(f"torch: {context.get('torch', 'not built')}; heap: {context.get('heap', '?')}")
    print(f"load average at start: {context.get('load_avg', '?')}\n")
    print("| network | batch | threads | npdl samples/s | LibTorch samples/s | npdl / LibTorch |")
    print("|---|---|---|---|---|---|")
    for net in ("bn", "plain"):
        for batch in (60, 256):
            for threads in (1, 2):
                key = f"batch:{batch}/threads:{threads}"
                a = m.get(f"cnn_step/{net}/npdl/{key}")
                b = m.get(f"cnn_step/{net}/torch/{key}")
                if a is None and b is None:
                    continue
                label = "with BatchNormal" if net == "bn" else "without"
                print(f"| {label} | {batch} | {threads} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    print("\n| conv2d fwd+bwd (batch 8) | threads | npdl GFLOP/s | torch::conv2d GFLOP/s | npdl / LibTorch |")
    print("|---|---|---|---|---|")
    shapes = sorted({k.split("/")[1] for k in m if k.startswith("conv2d/")})
    for shape in shapes:
        for threads in (1, 2):
            a = m.get(f"conv2d/{shape}/npdl/threads:{threads}")
            b = m.get(f"conv2d/{shape}/torch/threads:{threads}")
            if a is None and b is None:
                continue
            print(f"| {shape} | {threads} | {fmt(a, 1)} | {fmt(b, 1)} | {ratio(a, b)} |")


if __name__ == "__main__":
    main()
