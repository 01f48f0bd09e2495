"""Where a thread's time goes, by sampling its Python stack (no profiler hooks, so the
sampled process runs at full speed; py-spy is not on the GPU machine).

    python benchmarks/stack_sample.py --start 20 --seconds 15 --out prof.txt \\
        -m mlxserve.cli.main serve MODEL --port 8000      # then load the server
    python benchmarks/stack_sample.py --thread mlxserve-engine benchmarks/host_overhead.py

Runs the script (or ``-m module``) in this process; after ``--start`` seconds a sampler
thread reads the stacks of the threads named ``--thread`` (all threads: ``--thread ''``)
every ``--interval`` seconds for ``--seconds`` (rewriting ``--out`` every 5 s, so a
process killed before the end keeps what was sampled), then writes the share of samples per
innermost frame ("own") and per function anywhere on the stack ("inclusive"). A thread
waiting in a C call (``mx.async_eval`` waiting for the device, ``select``) shows at that
call: read it as "waiting there", not "computing there".
"""

from __future__ import annotations

import argparse
import collections
import runpy
import sys
import threading
import time
import traceback


def sample(args) -> None:
    time.sleep(args.start)
    me, own, inclusive, total = threading.get_ident(), collections.Counter(), \
        collections.Counter(), 0
    end = time.monotonic() + args.seconds
    written = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() - written > 5:  # a killed process keeps what it sampled
            write(args.out, total, own, inclusive, quiet=True)
            written = time.monotonic()
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            name = names.get(ident, str(ident))
            if ident == me or (args.thread and name != args.thread):
                continue
            stack, total = traceback.extract_stack(frame), total + 1
            top = stack[-1]
            own[f"{name}  {top.filename.split('/')[-1]}:{top.lineno} {top.name}"] += 1
            for key in {f"{name}  {f.filename.split('/')[-1]}:{f.name}" for f in stack}:
                inclusive[key] += 1
        time.sleep(args.interval)
    write(args.out, total, own, inclusive)


def write(path: str, total: int, own: collections.Counter, inclusive: collections.Counter,
          quiet: bool = False) -> None:
    lines = [f"{total} samples", "# own"]
    lines += [f"{100 * c / max(total, 1):5.1f}% {k}" for k, c in own.most_common(50)]
    lines += ["", "# inclusive"]
    lines += [f"{100 * c / max(total, 1):5.1f}% {k}" for k, c in inclusive.most_common(80)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if not quiet:
        print(f"stack samples written to {path}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=float, default=10.0, help="seconds before sampling")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to sample")
    ap.add_argument("--interval", type=float, default=0.0005)
    ap.add_argument("--thread", default="mlxserve-engine", help="thread name ('' = all)")
    ap.add_argument("--out", default="stack_samples.txt")
    ap.add_argument("-m", dest="module", default=None, help="run this module as __main__")
    ap.add_argument("target", nargs=argparse.REMAINDER, help="script (or the module's args)")
    args = ap.parse_args()
    threading.Thread(target=sample, args=(args,), daemon=True).start()
    if args.module:
        sys.argv = [args.module, *args.target]
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args.target)
        runpy.run_path(args.target[0], run_name="__main__")


if __name__ == "__main__":
    main()
