#!/usr/bin/env python3
"""Prints the CNN benchmarks' medians (npdl_cnn_bench's JSON) as two tables:
training-step samples/s and conv2d GFLOP/s, npdl beside LibTorch.

Rates are by wall-clock time. At 1 thread each side computes on the calling
thread alone, so its CPU time is the work done whatever else runs on the
machine: the ratio by CPU time is given beside, as the figure to trust when
the machine is shared (the load average at the start is printed)."""
import json
import sys


def medians(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].split("/repeats:")[0]
        rate = b.get("items_per_second") or b.get("GFLOP/s")
        # Work per iteration is fixed, so rate x time is the same constant.
        out[name] = (rate, rate * b["real_time"] / b["cpu_time"])
    return data.get("context", {}), out


def ratio(a, b, by_cpu=False):
    if not a or not b:
        return "-"
    return f"{a[1] / b[1]:.2f}" if by_cpu else f"{a[0] / b[0]:.2f}"


def fmt(v, digits=0):
    return f"{v[0]:,.{digits}f}" if v else "-"


def main():
    context, m = medians(sys.argv[1])
    print(f"torch: {context.get('torch', 'not built')}; heap: {context.get('heap', '?')}; "
          f"OpenMP waiting: {context.get('omp_wait_policy', '?')}")
    print(f"load average at start: {context.get('load_avg', '?')}\n")
    print("| network | batch | threads | npdl samples/s | LibTorch samples/s | npdl / LibTorch "
          "| by CPU time (1 thread) |")
    print("|---|---|---|---|---|---|---|")
    for net in ("bn", "plain"):
        for batch in (60, 256):
            for threads in (1, 2):
                key = f"batch:{batch}/threads:{threads}"
                a = m.get(f"cnn_step/{net}/npdl/{key}")
                b = m.get(f"cnn_step/{net}/torch/{key}")
                if a is None and b is None:
                    continue
                label = "with BatchNormal" if net == "bn" else "without"
                cpu = ratio(a, b, by_cpu=True) if threads == 1 else "-"
                print(f"| {label} | {batch} | {threads} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} "
                      f"| {cpu} |")
    print("\n| conv2d fwd+bwd (batch 8) | threads | npdl GFLOP/s | torch::conv2d GFLOP/s "
          "| npdl / LibTorch | by CPU time (1 thread) |")
    print("|---|---|---|---|---|---|")
    shapes = sorted({k.split("/")[1] for k in m if k.startswith("conv2d/")})
    for shape in shapes:
        for threads in (1, 2):
            a = m.get(f"conv2d/{shape}/npdl/threads:{threads}")
            b = m.get(f"conv2d/{shape}/torch/threads:{threads}")
            if a is None and b is None:
                continue
            cpu = ratio(a, b, by_cpu=True) if threads == 1 else "-"
            print(f"| {shape} | {threads} | {fmt(a, 1)} | {fmt(b, 1)} | {ratio(a, b)} | {cpu} |")


if __name__ == "__main__":
    main()
