"""Cost of the locked embedded LaunchPad file (``sc_inverse.stores.launchpad_file``) by size.

Every modifying operation rewrites the whole JSON file (temporary file + rename) under the lock,
and an operation after another process wrote re-reads it, so the cost grows with the LaunchPad.
This prints, for LaunchPads of N Firework-sized documents (~2.5 kB each, the size of a trivial
jobflow Firework with its launch in ``bench_fw_overhead.py``): one write (``update_one``), one
read when the file is unchanged (``find_one``), and one read right after another client wrote
(re-read of the file). A Firework's life in ``rlaunch`` takes ~16 writes (checkout, launch,
completion, workflow refresh). Prints numbers; asserts nothing.

    python benchmarks/bench_launchpad_lock.py [--sizes 30 300 3000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import bson.json_util

from sc_inverse.stores.launchpad_file import locked_mongo_client

DOC_PAYLOAD = "x" * 2300  # with the keys below: ~2.5 kB of JSON per document


def _write_launchpad(path: Path, n: int) -> None:
    docs = [[f"id{i}", {"_id": f"id{i}", "fw_id": i, "state": "COMPLETED", "spec": DOC_PAYLOAD}]
            for i in range(n)]
    path.write_text(bson.json_util.dumps({"fw": {"fireworks": {"name": "fireworks",
                                                                "documents": docs}}}))


def _per_call(fn, repeat: int) -> float:
    t = time.perf_counter()
    for i in range(repeat):
        fn(i)
    return (time.perf_counter() - t) / repeat


def bench(n: int, tmp: Path, repeat: int) -> tuple[float, float, float, float]:
    path = tmp / f"lp{n}.json"
    _write_launchpad(path, n)
    a = locked_mongo_client(path)["fw"]["fireworks"]
    b = locked_mongo_client(path)["fw"]["fireworks"]
    write = _per_call(lambda i: a.update_one({"fw_id": i % n}, {"$set": {"state": "RUNNING"}}),
                      repeat)
    read = _per_call(lambda i: a.find_one({"fw_id": i % n}), repeat)

    reread = 0.0
    for i in range(repeat):  # b writes, then a's read has to re-read the file
        b.update_one({"fw_id": i % n}, {"$set": {"state": "READY"}})
        t = time.perf_counter()
        a.find_one({"fw_id": i % n})
        reread += time.perf_counter() - t
    return path.stat().st_size / 1e6, write, read, reread / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[30, 300, 3000])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            size_mb, write, read, reread = bench(n, Path(tmp), args.repeat)
            print(f"{n:6d} Fireworks ({size_mb:5.2f} MB): write {write * 1e3:7.1f} ms, read "
                  f"{read * 1e3:5.2f} ms (file unchanged), read after another process wrote "
                  f"{reread * 1e3:7.1f} ms; ~16 writes per Firework = {16 * write:.2f} s")


if __name__ == "__main__":
    main()
