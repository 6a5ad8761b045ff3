"""``python -m sc_inverse.qe.pslibrary build|list``: what install.sh calls to build the library.

Exit status 0 when every requested element was built (or was already present), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from sc_inverse.errors import ScInverseError
from sc_inverse.qe.pslibrary.builder import (
    build_library,
    default_library_dir,
    list_library,
    print_progress,
)
from sc_inverse.qe.pslibrary.table import TIERS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sc_inverse.qe.pslibrary", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "list"):
        p = sub.add_parser(name)
        p.add_argument("--functional", default="pbesol")
        p.add_argument("--tier", default="standard", choices=TIERS)
        p.add_argument("--dest", default=None, help="library directory (default: per-user)")
    build = sub.choices["build"]
    build.add_argument("--elements", default=None, help="comma-separated (default: all)")
    build.add_argument("--workers", type=int, default=2, help="parallel ld1.x processes")
    build.add_argument("--force", action="store_true", help="rebuild files already present")
    build.add_argument("--quiet", action="store_true", help="report failures and the summary only")
    build.add_argument("--reuse-from", default=None,
                       help="copy files built from the same input from this library "
                       "(default for --tier low: the default standard library)")
    return ap


def _failures_only(row: dict) -> None:
    if row["status"] == "failed":
        print_progress(row)


def _print_rows(rows: list[dict]) -> None:
    print(f"{'el':2s}  {'file':42s} {'ecutwfc':>8s} {'ecutrho':>8s}  status")
    for r in rows:
        wfc = f"{r['ecutwfc_Ry']:.1f}" if r.get("ecutwfc_Ry") else "-"
        rho = f"{r['ecutrho_Ry']:.1f}" if r.get("ecutrho_Ry") else "-"
        why = f"  ({r['reason']})" if r.get("reason") else ""
        print(f"{r.get('element') or '?':2s}  {r['file']:42s} {wfc:>8s} {rho:>8s}  {r['status']}{why}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dest = args.dest or default_library_dir(args.functional, args.tier)
    try:
        if args.command == "list":
            _print_rows(list_library(dest, args.functional, args.tier))
            return 0
        elements = [e.strip() for e in args.elements.split(",")] if args.elements else None
        manifest = build_library(dest, args.functional, elements, args.tier, args.workers,
                                 args.force, progress=_failures_only if args.quiet else
                                 print_progress, reuse_from=args.reuse_from)
    except ScInverseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [r for r in manifest["elements"] if elements is None or r["element"] in elements]
    failed = [r["element"] for r in rows if r["status"] != "ok"]
    print(f"[pseudos] {len(rows) - len(failed)}/{len(rows)} elements ready in {dest}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
