"""Regenerate ``src/sc_inverse/qe/pslibrary/pbesol_table.json`` from a copy of pslibrary's job files.

One-off provenance script (not imported by the package). It reads the ``ld1.x`` inputs embedded in
pslibrary's ultrasoft job files (A. Dal Corso, GitHub ``dalcorso/pslibrary``, GPL v2), picks one
pseudopotential per element for PBEsol following pslibrary's recommended list (``PP_list.md``) and
its known problems, and stores only the facts (configuration, pseudisation parameters per
wavefunction, version, file name) in the project's own JSON format.

Every chosen entry and every low-tier candidate (pslibrary 1.0.x ultrasoft inputs of the element,
minus those with known problems) is built with ``ld1.x`` through the package's own builder, so the
table also records the suggested cutoffs. A recommended entry that fails the builder's checks is
replaced by the cheapest candidate of the element that passes (the entry's ``note`` says why). The
``low`` tier is the cheapest passing candidate when it is at least ``LOW_TIER_MIN_GAIN_RY`` below
the standard one; otherwise the low tier reuses the standard entry. ``--verify`` also checks that
the table's inputs give the same UPF files as pslibrary's own inputs (date and file name aside).

    PYTHONPATH=src .venv/bin/python scripts/make_pslibrary_table.py \
        [--reference /work/shared/reference/pslibrary] [--workers 2] [--no-build] [--verify]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "sc_inverse" / "qe" / "pslibrary" / "pbesol_table.json"
JOB_FILES = ("us_ps_high.job", "us_ps_low.job", "us_ps_collection.job",
             "us_ps_collection_tot.job", "us_ps_collection_alt.job")
LOW_TIER_JOB_FILES = ("us_ps_high.job", "us_ps_low.job")
LOW_TIER_MIN_GAIN_RY = 3.0

# pslibrary's "known problems" that concern PBEsol (PP_list.md), as (element, label, version).
# N 1.0.0 and Nb spn 1.0.0 do not work with pbesol; Au's recommended "n 1.0.1" does not exist and
# the known-problems note points to spn 1.0.1; Co's recommended "n 0.3.1" has no ultrasoft input.
PBESOL_OVERRIDES = {
    "N": ("n", "0.1", "N n 1.0.0 does not work with pbesol (pslibrary known problems)"),
    "Nb": ("spn", "0.3.0", "Nb spn 1.0.0 does not work with pbesol (pslibrary known problems)"),
    "Au": ("spn", "1.0.1", "recommended Au n 1.0.1 has no input; known problems point to spn 1.0.1"),
    "Co": ("n", "1.0.0", "recommended Co n 0.3.1 has no ultrasoft input; n 1.0.0 keeps its "
           "valence (the known problem of Co 1.0.0 concerns spn with PBE)"),
}
# inputs never used in the low tier: known problems (any functional) and experimental ones
LOW_TIER_EXCLUDED = {
    ("N", "n", "1.0.0"), ("Nb", "spn", "1.0.0"), ("Ir", "n", "1.0.0"), ("Mn", "spn", "1.0.0"),
    ("Co", "spn", "1.0.0"), ("Tc", "spn", "1.0.0"), ("Au", "spn", "1.0.0"), ("W", "spn", "1.0.0"),
}
NAME = re.compile(r"^(?P<el>[A-Z][a-z]?)\.\$fct-(?:(?P<label>[a-z]+)-)?(?P<kind>rrkjus|kjpaw)"
                  r"_psl\.(?P<version>[0-9.]+?)\.in$")
SELECTION = ("standard: pslibrary's recommended PP per element (PP_list.md) with the PBEsol "
             "known-problem replacements, or the cheapest passing 1.0.x ultrasoft alternative "
             "where the recommended input fails the build checks; low: the measured "
             "lowest-cutoff passing 1.0.x ultrasoft alternative when it is at least {gain:g} Ry "
             "cheaper, the standard entry otherwise")
WFC_COLUMNS = ["label", "n", "l", "occupation", "energy_Ry", "rcut_nc_au", "rcut_us_au", "j"]


def job_blocks(path: Path) -> dict[str, list[str]]:
    """``{input file name: lines}`` of every active here-document; a later block of the same
    name replaces an earlier one, as it does when the shell runs the job file."""
    blocks: dict[str, list[str]] = {}
    name = None
    for line in path.read_text().splitlines():
        m = re.match(r"^cat > (\S+) << EOF\s*$", line)
        if m:
            name = m.group(1)
            blocks[name] = []
        elif name and line.strip() == "EOF":
            name = None
        elif name:
            blocks[name].append(line)
    return blocks


def fortran_value(text: str):
    """A namelist value as JSON: bool, int, float or str (shell variables kept as written)."""
    t = text.strip().rstrip(",")
    if t.lower() in (".true.", ".t."):
        return True
    if t.lower() in (".false.", ".f."):
        return False
    if t.startswith("'") and t.endswith("'"):
        return t[1:-1]
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    try:
        return float(t.lower().replace("d", "e"))
    except ValueError:
        return t


def parse_block(lines: list[str]) -> dict:
    """The two namelists and the wavefunction card of one ld1.x input."""
    namelists: dict[str, dict] = {}
    current = None
    rest: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("&"):
            current = s[1:].lower()
            namelists[current] = {}
        elif current and s == "/":
            current = None
        elif current:
            for key, value in re.findall(r"(\w+)\s*=\s*('[^']*'|[^,\s]+)", s):
                namelists[current][key.lower()] = fortran_value(value)
        elif s:
            rest.append(s)
    n_wfc = int(rest[0])
    wfcs = []
    for row in rest[1 : 1 + n_wfc]:
        f = row.split()
        wfcs.append([f[0], int(f[1]), int(f[2])] + [float(x) for x in f[3:8]])
    return {"input": namelists["input"], "inputp": namelists["inputp"], "wavefunctions": wfcs}


def candidate_entries(reference: Path) -> list[dict]:
    """Every ultrasoft input of the parsed job files, as table entries (pbesol file names)."""
    out = []
    for job in JOB_FILES:
        for name, lines in job_blocks(reference / job).items():
            m = NAME.match(name)
            if not m or m["kind"] != "rrkjus":
                continue
            parsed = parse_block(lines)
            inp = {k: v for k, v in parsed["input"].items() if k not in ("title", "rel", "dft")}
            inputp = {k: v for k, v in parsed["inputp"].items() if k != "file_pseudopw"}
            label = m["label"] or ""
            stem = f"{m['el']}.pbesol-{label + '-' if label else ''}rrkjus_psl.{m['version']}"
            entry = {
                "element": m["el"], "label": label, "version": m["version"],
                "pseudo_type": "rrkjus", "file": stem + ".UPF", "source": job,
                "input": inp, "inputp": inputp, "wavefunctions": parsed["wavefunctions"],
            }
            written = str(parsed["inputp"].get("file_pseudopw", "")).replace("$fct", "pbesol")
            if written != entry["file"]:  # a typo upstream: the input's own name is the intent
                entry["file_note"] = f"pslibrary's input writes {written}"
            out.append(entry)
    return out


def recommended(reference: Path) -> dict[str, tuple[str, str]]:
    """``{element: (label, version)}`` from PP_list.md's list of suggested PPs."""
    rec = {}
    for m in re.finditer(r"^([A-Z][a-z]?):\s+\1\.\$fct-(?:([a-z]+)-)?\*_psl\.([0-9.]+?)\s*$",
                         (reference / "PP_list.md").read_text(), re.M):
        rec[m[1]] = (m[2] or "", m[3])
    return rec


def choose_standard(entries: list[dict], reference: Path) -> tuple[dict[str, dict], list[str]]:
    """One entry per element: the recommended one, with the PBEsol overrides applied."""
    by_key: dict[tuple, dict] = {}
    for e in entries:  # JOB_FILES order: the first file that defines a name wins
        by_key.setdefault((e["element"], e["label"], e["version"]), e)
    chosen, missing = {}, []
    for el, (label, version) in recommended(reference).items():
        note = None
        if el in PBESOL_OVERRIDES:
            label, version, note = PBESOL_OVERRIDES[el]
        entry = by_key.get((el, label, version))
        if entry is None:
            missing.append(f"{el} ({label} {version}: no ultrasoft input)")
            continue
        chosen[el] = dict(entry, note=note) if note else dict(entry)
    return chosen, missing


def build_candidates(entries: list[dict], workers: int) -> dict[str, dict]:
    """Build each entry with the package's builder; ``{file: manifest row}``."""
    from sc_inverse.qe.pslibrary.builder import build_entries, print_progress

    with tempfile.TemporaryDirectory(prefix="pslib_table_") as tmp:
        rows = build_entries([dict(e, tier="candidate") for e in entries], Path(tmp),
                             workers=workers, progress=print_progress)
    return {r["file"]: r for r in rows}


def low_candidates(standard: dict[str, dict], entries: list[dict]) -> list[dict]:
    """pslibrary 1.0.x ultrasoft inputs of the covered elements, minus known problems and the
    experimental f-shell inputs of the lanthanides and actinides."""
    return [e for e in entries if e["source"] in LOW_TIER_JOB_FILES
            and e["version"].startswith("1.0") and e["element"] in standard
            and (e["element"], e["label"], e["version"]) not in LOW_TIER_EXCLUDED
            and not (e["label"].endswith("fn") and e["file"] != standard[e["element"]]["file"])]


def _cut(rows: dict[str, dict], entry: dict) -> float:
    r = rows[entry["file"]]
    return r["ecutwfc_Ry"] if r["status"] == "ok" and r["ecutwfc_Ry"] else float("inf")


def choose_tiers(standard: dict[str, dict], entries: list[dict], workers: int
                 ) -> tuple[dict[str, dict], dict[str, dict], dict[str, dict]]:
    """Build the standard entries and the low-tier candidates; return (standard, low, rows).

    A recommended entry that fails the library's checks is replaced by the cheapest candidate of
    the element that passes (with a note saying why); the low tier is the cheapest passing
    candidate when it is at least ``LOW_TIER_MIN_GAIN_RY`` below the standard one.
    """
    cands = low_candidates(standard, entries)
    pool = {e["file"]: e for e in cands} | {e["file"]: e for e in standard.values()}
    rows = build_candidates(list(pool.values()), workers)
    std_out, low = {}, {}
    for el, std in standard.items():
        own = sorted((c for c in cands if c["element"] == el), key=lambda c: _cut(rows, c))
        if rows[std["file"]]["status"] != "ok" and own and _cut(rows, own[0]) < float("inf"):
            why = rows[std["file"]]["reason"]
            std = dict(own[0], note=f"recommended {std['file']} fails the build checks ({why})")
        std_out[el] = std
        best = own[0] if own and _cut(rows, own[0]) <= _cut(rows, std) - LOW_TIER_MIN_GAIN_RY \
            else std
        low[el] = best
        print(f"{el:2s} standard {std['file']:40s} {_cut(rows, std):6.1f} Ry   "
              f"low {best['file']:40s} {_cut(rows, best):6.1f} Ry", flush=True)
    return std_out, low, rows


def with_cutoffs(entry: dict, rows: dict[str, dict]) -> dict:
    """The entry with the suggested cutoffs (Ry) its UPF header gave in the measurement."""
    r = rows.get(entry["file"]) or {}
    return dict(entry, ecutwfc_Ry=r.get("ecutwfc_Ry"), ecutrho_Ry=r.get("ecutrho_Ry"))


def original_input(reference: Path, entry: dict) -> str:
    """The job file's own input for ``entry`` with the PBEsol values of its shell variables."""
    label = f"{entry['label']}-" if entry["label"] else ""
    name = f"{entry['element']}.$fct-{label}rrkjus_psl.{entry['version']}.in"
    text = "\n".join(job_blocks(reference / entry["source"])[name]) + "\n"
    return text.replace("$fct", "pbesol").replace("$gfun", "PBESOL").replace("$nrel", "1")


def _upf_body(path: Path) -> str:
    """A UPF without the lines that legitimately differ (date, echo of the input)."""
    text = path.read_text().replace(path.name, "")
    text = re.sub(r"<PP_INPUTFILE>.*?</PP_INPUTFILE>", "", text, flags=re.S)
    return re.sub(r'(Generation date:.*|date="[^"]*")', "", text)


def verify(reference: Path, entries: list[dict]) -> list[str]:
    """Files whose UPF from the table differs from the UPF of pslibrary's own input."""
    from sc_inverse.qe.pslibrary.table import ld1_input

    bad = []
    with tempfile.TemporaryDirectory(prefix="pslib_verify_") as tmp:
        for entry in entries:
            upfs = []
            job_text = original_input(reference, entry)
            job_file = re.search(r"file_pseudopw='([^']+)'", job_text)[1]
            for kind, text, upf in (("table", ld1_input(entry), entry["file"]),
                                    ("job", job_text, job_file)):
                d = Path(tmp) / kind / entry["file"]
                d.mkdir(parents=True)
                subprocess.run(["ld1.x"], input=text, text=True, cwd=d, capture_output=True,
                               timeout=300)
                upfs.append(d / upf)
            same = all(u.is_file() for u in upfs) and _upf_body(upfs[0]) == _upf_body(upfs[1])
            print(f"verify {entry['file']:42s} {'identical' if same else 'DIFFERENT'}", flush=True)
            if not same:
                bad.append(entry["file"])
    return bad


def ld1_version() -> str:
    with tempfile.TemporaryDirectory() as tmp:  # ld1.x leaves CRASH/input_tmp.in behind
        out = subprocess.run(["ld1.x"], input="", capture_output=True, text=True, timeout=30,
                             cwd=tmp).stdout
    m = re.search(r"Program LD1 (v\.\S+)", out)
    return m[1] if m else "unknown"


def dump_table(table: dict) -> str:
    """Indented JSON with every list of scalars (a wavefunction row) on one line."""
    text = json.dumps(table, indent=1)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",\n")) + "]",
                  text) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=Path("/work/shared/reference/pslibrary"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-build", action="store_true", help="low tier = standard (no ld1.x runs)")
    ap.add_argument("--verify", action="store_true",
                    help="also check that every chosen entry's UPF equals the one generated from "
                    "pslibrary's own input (two ld1.x runs per entry)")
    args = ap.parse_args()
    source = (args.reference / "SOURCE.md").read_text()
    commit = re.search(r"commit\s+([0-9a-f]{40})", source)
    entries = candidate_entries(args.reference)
    standard, missing = choose_standard(entries, args.reference)
    t0 = time.time()
    if args.no_build:
        low, rows_by_file = standard, {}
    else:
        standard, low, rows_by_file = choose_tiers(standard, entries, args.workers)
    rows = []
    for el, std in standard.items():
        rows.append(dict(with_cutoffs(std, rows_by_file), tier="standard"))
        if low[el]["file"] != std["file"]:
            rows.append(dict(with_cutoffs(low[el], rows_by_file), tier="low"))
    table = {
        "format": "sc-inverse pslibrary table 1",
        "functional": {"name": "pbesol", "dft": "PBESOL", "rel": 1},
        "source": {"project": "pslibrary", "author": "A. Dal Corso",
                   "repository": "https://github.com/dalcorso/pslibrary",
                   "commit": commit[1] if commit else None, "license": "GPL-2.0",
                   "files": list(JOB_FILES) + ["PP_list.md"]},
        "selection": SELECTION.format(gain=LOW_TIER_MIN_GAIN_RY),
        "cutoffs_measured_with": None if args.no_build else f"ld1.x {ld1_version()}",
        "wavefunction_columns": WFC_COLUMNS,
        "not_covered": missing,
        "entries": rows,
    }
    TABLE.write_text(dump_table(table))
    if args.verify and (bad := verify(args.reference, rows)):
        sys.exit(f"table inputs differ from pslibrary's for: {', '.join(bad)}")
    print(f"{len(standard)} elements, {len(rows)} entries -> {TABLE} ({time.time() - t0:.0f} s); "
          f"not covered: {', '.join(missing) or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
