#!/usr/bin/env python3
"""Tabulates npdl_bench's JSON output (Google Benchmark --benchmark_out).

Usage: table.py BEST_RUN.json [TORCH_DEFAULTS_RUN.json]

The training table: one MLP training step, npdl against LibTorch
at its best (same run) and with its defaults (second file), samples/s and
the ratio. The batch-norm table: forward + backward medians of
npdl (fused, composite) and LibTorch (native, composite), the
memory-bandwidth floor (8 tensors' bytes at the triad bandwidth of the same
run) and the ratios the targets are stated in. Standard library only.
"""
import json
import re
import sys

WORKLOADS = {
    "a": "256x1024",
    "b": "64x64x56x56",
    "c": "128x256x14x14",
    "d": "32x3x8x8",
}


def load(path):
    with open(path) as f:
        data = json.load(f)
    medians = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/repeats:\d+.*$", "", b["run_name"])
        unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        entry = {"us": b["real_time"] * unit}
        for key in ("GB/s", "x_floor", "floor_us", "peak_mem_x", "ns/op", "items_per_second"):
            if key in b:
                entry[key] = b[key]
        medians[name] = entry
    return data.get("context", {}), medians


def fmt_time(us):
    if us is None:
        return "-"
    if us >= 1000:
        return "%.1f ms" % (us / 1000)
    return "%.1f us" % us


def fmt_ratio(x):
    return "-" if x is None else "%.2fx" % x


def markdown(header, rows):
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(header)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        out.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |")
    return out


def peer_lines(context, label):
    if "peer_blas" not in context:
        return []
    return ["LibTorch %s: BLAS %s (threads: %s); allocator %s; OpenMP wait policy %s" % (
        label, context["peer_blas"], context.get("peer_blas_threads", "?"),
        context.get("peer_allocator", "?"), context.get("peer_omp_wait_policy", "?"))]


def fmt_rate(x):
    return "-" if x is None else "{:,.0f}".format(x)


def training_table(m, d):
    rows = []
    for t in (1, 2):
        for bn in ("bn", "plain"):
            for batch in (60, 256):
                base = "train/mlp/%s/batch:%d/%%s/threads:%d" % (bn, batch, t)
                rate = lambda table, impl: (table.get(base % impl) or {}).get("items_per_second")
                npdl, best, dflt = rate(m, "npdl"), rate(m, "torch"), rate(d, "torch")
                if npdl is None and best is None:
                    continue
                rows.append([str(t), "yes" if bn == "bn" else "no", str(batch),
                             fmt_rate(npdl), fmt_rate(best), fmt_rate(dflt),
                             fmt_ratio(npdl / best if npdl and best else None),
                             fmt_ratio(npdl / dflt if npdl and dflt else None)])
    if not rows:
        return []
    header = ["threads", "BatchNormal", "batch", "npdl samples/s", "LibTorch best",
              "LibTorch defaults", "npdl/best", "npdl/defaults"]
    return (["one MLP training step (784-100-100-100-10 sigmoid, softmax cross-entropy, SGD),",
             "samples per second, medians", ""] + markdown(header, rows) + [""])


def main(path, defaults_path=None):
    context, m = load(path)
    d_context, d = load(defaults_path) if defaults_path else ({}, {})
    lines = []
    lines.append("host: %s, %s CPUs, load average %s" % (
        context.get("host_name", "?"), context.get("num_cpus", "?"),
        context.get("load_avg", "?")))
    for t in (1, 2):
        tri = m.get("triad/threads:%d" % t)
        if tri:
            lines.append("STREAM triad, %d thread%s: %.1f GB/s" % (
                t, "" if t == 1 else "s", tri["GB/s"]))
    for label, key in (("full graph", "full"), ("lean graph", "lean"), ("no graph", "no_grad")):
        r = m.get("record_op/mul_4/" + key)
        if r:
            lines.append("one small op (mul of 4 floats), %s: %.0f ns/op" % (label, r["ns/op"]))
    lines += peer_lines(context, "best (same run)") + peer_lines(d_context, "defaults (second run)")
    lines.append("")
    lines += training_table(m, d)
    lines.append("batch norm forward + backward, training mode, medians (wall clock)")
    lines.append("")
    header = ["workload", "thr", "npdl fused", "npdl composite", "torch native",
              "torch native defaults", "torch composite", "floor", "fused/floor", "composite/fused",
              "torch native/fused", "torch comp/composite", "composite peak mem"]
    rows = []
    for w, shape in WORKLOADS.items():
        for dtype in ("f32", "f64"):
            for t in (1, 2):
                base = "bn/%s/%%s/fwdbwd/%s/threads:%d" % (w, dtype, t)
                get = lambda impl: m.get(base % impl)
                fused, comp = get("fused"), get("composite")
                tn, tc = get("torch_native"), get("torch_composite")
                tn_default = d.get(base % "torch_native")
                if not (fused or comp or tn or tc):
                    continue
                us = lambda e: e["us"] if e else None
                ratio = lambda a, b: a / b if a is not None and b else None
                # The floor: the binary measures the triad before its first
                # batch norm at each thread count (floor_us); the triad
                # benchmark measures it again. Memory bandwidth varies with
                # what else runs, so the table takes the faster of the two:
                # the smaller floor, the stricter ratio.
                floor = (fused or comp or tn or tc).get("floor_us")
                tri = m.get("triad/threads:%d" % t)
                if tri and floor and (fused or comp):
                    e = fused or comp
                    bytes_fwdbwd = e["GB/s"] * 1e9 * e["us"] * 1e-6
                    floor = min(floor, bytes_fwdbwd / (tri["GB/s"] * 1e9) * 1e6)
                peak = comp.get("peak_mem_x") if comp else None
                rows.append([
                    "(%s) %s %s" % (w, shape, dtype), str(t),
                    fmt_time(us(fused)), fmt_time(us(comp)), fmt_time(us(tn)),
                    fmt_time(us(tn_default)), fmt_time(us(tc)),
                    fmt_time(floor), fmt_ratio(ratio(us(fused), floor)),
                    fmt_ratio(ratio(us(comp), us(fused))),
                    fmt_ratio(ratio(us(tn), us(fused))), fmt_ratio(ratio(us(tc), us(comp))),
                    "-" if peak is None else "%.1fx" % peak])
    if rows:
        lines += markdown(header, rows)
    lines.append("")
    lines.append("floor: 8 tensors' bytes (x twice and y in the forward; dy, x twice and dx in")
    lines.append("the backward, as STREAM counts) at this run's triad bandwidth and thread count")
    lines.append("(the faster of the triad benchmark and the triad the binary runs before its")
    lines.append("first batch norm at that thread count).")
    lines.append("composite peak mem: bytes the composite fwd+bwd allocates at its peak (y, dx")
    lines.append("and intermediates; not the caller's x and dy), in units of x's size.")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build-bench/bench.json",
         sys.argv[2] if len(sys.argv) > 2 else None)
