#!/usr/bin/env python3
"""Medians of per-round ratios: npdl against a peer, each round running both
back to back, the peer under every setting given and kept at its fastest.

On a shared machine one absolute time means little and ratios scatter by
about 15%, so a comparison is a number of rounds; in each, every pair runs
npdl's benchmark, then the peer's once per setting (for LibTorch: OpenMP's
waiting policy, which helps at one thread count and hurts at another), and
the round's ratio is the peer's fastest time over npdl's. The table gives
each round's times and ratios and their median (> 1: npdl is faster).

    benchmarks/rounds.py --binary build-bench/benchmarks/npdl_lstm_bench --rounds 5 \\
        --pair 'lstm_step/fused/npdl/batch:60/threads:1' 'lstm_step/plain/torch/batch:60/threads:1'

--pairs-matching REGEX pairs every benchmark of the binary whose name
matches and contains /npdl/ with the same name with /torch/ (the MLP's
train/mlp/..., the CNN's cnn_step/... and conv2d/...). --peer-common
NAME=VALUE[,...] is added to every peer setting (benchmarks/run passes
glibc's heap-reuse tunables).

--baseline BINARY also runs each npdl benchmark in another build of npdl
(the code before a change) in the same rounds, and adds its ratios to the
peer and the per-round speed-up of --binary over it: a before/after
comparison measured side by side.

--peer-env takes a setting as NAME=VALUE[,NAME=VALUE] ('default' for none;
an empty VALUE unsets NAME); without it the peer runs under OMP_WAIT_POLICY
active and passive, and when the environment sets OPENBLAS_* overrides, each
also without them: OpenBLAS then picks its kernels for the CPU itself (a
machine here set OPENBLAS_CORETYPE=Haswell, and LibTorch's MLP step ran 1.3x
faster with the AVX-512 kernels OpenBLAS chose without it). Each run is one
process with --benchmark_repetitions (median of them). Standard library
only.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys


def run_one(binary, name, repetitions, env_setting):
    env = dict(os.environ)
    if env_setting != "default":
        for item in env_setting.split(","):
            key, _, value = item.partition("=")
            if value:
                env[key] = value
            else:
                env.pop(key, None)
    out = subprocess.run(
        [binary, "--benchmark_filter=^" + re.escape(name) + "(/|$)",
         "--benchmark_repetitions=%d" % repetitions, "--benchmark_report_aggregates_only=true",
         "--benchmark_format=json"],
        env=env, check=True, capture_output=True, text=True).stdout
    rows = [b for b in json.loads(out)["benchmarks"]
            if b.get("aggregate_name") == "median" or
            (repetitions == 1 and b.get("run_type") == "iteration")]
    if not rows:
        sys.exit("no benchmark named %s in %s" % (name, binary))
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[rows[0]["time_unit"]]
    return rows[0]["real_time"] * scale  # milliseconds


def default_peer_settings():
    settings = ["OMP_WAIT_POLICY=active", "OMP_WAIT_POLICY=passive"]
    overrides = sorted(name for name in os.environ if name.startswith("OPENBLAS_"))
    if overrides:
        unset = ",".join(name + "=" for name in overrides)
        settings += [s + "," + unset for s in settings]
    return settings


def matching_pairs(binary, pattern):
    listed = subprocess.run([binary, "--benchmark_list_tests"], check=True, capture_output=True,
                            text=True).stdout.split()
    names = list(dict.fromkeys(re.sub(r"/repeats:.*$", "", n) for n in listed))
    return [[n, n.replace("/npdl/", "/torch/")] for n in names
            if re.search(pattern, n) and "/npdl/" in n and n.replace("/npdl/", "/torch/") in names]


def with_common(setting, common):
    if not common:
        return setting
    return common if setting == "default" else setting + "," + common


def label(setting):
    """A setting as the tables show it: 'passive, OPENBLAS_* unset'."""
    parts, unset = [], []
    for item in setting.split(","):
        key, _, value = item.partition("=")
        if key == "OMP_WAIT_POLICY":
            parts.append(value)
        elif value or key == "default":
            parts.append(item)
        else:
            unset.append(key)
    if unset:
        common = os.path.commonprefix(unset)
        parts.append((common + "*" if len(unset) > 1 else unset[0]) + " unset")
    return ", ".join(parts)


def joined(values, form="%.3g"):
    return ", ".join(form % v for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--pair", nargs=2, action="append", default=[],
                        metavar=("NPDL", "PEER"), help="benchmark names, exact")
    parser.add_argument("--pairs-matching", metavar="REGEX",
                        help="pair every matching /npdl/ benchmark with its /torch/ one")
    parser.add_argument("--peer-common", metavar="NAME=VALUE[,...]",
                        help="added to every peer setting")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="another build whose npdl benchmarks run in the same rounds")
    parser.add_argument("--peer-env", action="append",
                        help="a peer setting, NAME=VALUE[,NAME=VALUE] or 'default'")
    args = parser.parse_args()
    settings = args.peer_env or default_peer_settings()
    if args.pairs_matching:
        args.pair += matching_pairs(args.binary, args.pairs_matching)
    if not args.pair:
        parser.error("no pairs: give --pair or a --pairs-matching that matches")
    results = {tuple(p): [] for p in args.pair}
    for r in range(args.rounds):
        for npdl_name, peer_name in args.pair:
            before = (run_one(args.baseline, npdl_name, args.repetitions, "default")
                      if args.baseline else None)
            ours = run_one(args.binary, npdl_name, args.repetitions, "default")
            theirs = {s: run_one(args.binary, peer_name, args.repetitions,
                                 with_common(s, args.peer_common)) for s in settings}
            best = min(theirs, key=theirs.get)
            results[(npdl_name, peer_name)].append((ours, theirs[best], best, before))
            print("round %d  %-45s %8.3f ms   peer %8.3f ms (%s)  ratio %.2f%s" %
                  (r + 1, npdl_name, ours, theirs[best], label(best), theirs[best] / ours,
                   "   baseline %.3f ms" % before if before else ""),
                  file=sys.stderr, flush=True)
    print("| npdl benchmark | npdl ms per round | peer ms per round (fastest setting) "
          "| per-round ratios | median |")
    print("|---|---|---|---|---|")
    for (npdl_name, _), rows in results.items():
        ratios = [t / o for o, t, _, _ in rows]
        print("| %s | %s | %s | %s | **%.2f** |" % (
            npdl_name, joined(o for o, _, _, _ in rows),
            ", ".join("%.3g (%s)" % (t, label(s)) for _, t, s, _ in rows),
            joined(ratios, "%.2f"), statistics.median(ratios)))
    if args.baseline:
        print()
        print("| npdl benchmark | baseline ms per round | peer / baseline, median "
              "| peer / npdl, median | baseline / npdl per round | median |")
        print("|---|---|---|---|---|---|")
        for (npdl_name, _), rows in results.items():
            speedups = [b / o for o, _, _, b in rows]
            print("| %s | %s | %.2f | %.2f | %s | **%.2f** |" % (
                npdl_name, joined(b for _, _, _, b in rows),
                statistics.median([t / b for _, t, _, b in rows]),
                statistics.median([t / o for o, t, _, _ in rows]),
                joined(speedups, "%.2f"), statistics.median(speedups)))


if __name__ == "__main__":
    main()
