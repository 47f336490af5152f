"""Attack a published month as a reader holding every published table (and, with --resend, two releases).

    .venv/bin/python scripts/disclosure_attack.py --warehouse W --month 2026-10 [--integer-sample N]
    .venv/bin/python scripts/disclosure_attack.py --warehouse W --month 2026-10 --resend EXTRACTS

Runs the attacker of tests/attack_month.py (written apart from the pipeline's suppression code)
on what `published` holds for the month, with the true counts read from the private tables:

- the cross-table attack: every indicator's gap rows and the deprivation-quality counts at once,
  each breakdown's structure, numerators within denominators and every identity between the
  populations found from the patients themselves, which takes in the population margins (all
  registered patients of a practice = its adults + its children; the match methods adding up to
  the practice's patients; indicators sharing a denominator): LP min and max of every hidden
  count, and with --integer-sample N whole-number programmes on a random sample of N;
- with --resend EXTRACTS: the cross-release attack. The month's extract (EXTRACTS/YYYY-MM) is
  copied to a scratch folder with one patient added (a copy, under a new id, of the patient with
  most events), the month is run and published again into the same warehouse (a re-send), and
  the reader holds both releases and knows exactly how every count changed; then the second
  release alone.

Prints, per attack, how many hidden counts were attacked and how many were narrowed, pinned
exactly or left unsolved (never a value). Exits 1 when any attack recovered something.
Runs of 100,000 patients or more go under the shared lock (flock /tmp/core20-heavy.lock ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _line(name: str, out: dict, seconds: float) -> str:
    extra = ""
    if out.get("integer_checked") or out.get("integer_known"):
        extra = f"; whole numbers: {out['integer_checked']} attacked with a proof, {out['integer_known']} fixed by a visible 0"
    return (f"{name}: {out['targets']:,} hidden counts attacked, {len(out['narrowed'])} narrowed, {len(out['exact'])} exact, "
            f"{len(out['unsolved'])} unsolved{extra}; {len(out.get('known_from_earlier', []))} already fixed as much by the earlier release alone "
            f"({seconds:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--integer-sample", type=int, default=0, help="hidden counts attacked as whole numbers (random sample)")
    parser.add_argument("--resend", type=Path, metavar="EXTRACTS",
                        help="extracts folder holding YYYY-MM: re-send the month with one patient added and attack both releases")
    args = parser.parse_args()
    month = dt.date.fromisoformat(args.month + "-01")

    from attack_month import add_one_patient, attack_month, published_month

    def attack(m: dict, name: str, **options) -> dict:
        started = time.perf_counter()
        out = attack_month(m["gap"], m["truth"], m["quality"], m["quality_truth"], m["memberships"], m["fine"],
                           primary_vintage=m["vintage"], profile=m["profile"], **options)
        if options.get("solve", True):
            print(_line(name, out, time.perf_counter() - started), flush=True)
        return out

    first = published_month(args.warehouse, month)
    options = {"integer": True, "integer_sample": args.integer_sample} if args.integer_sample else {}
    results = [attack(first, "one release, every table", **options)]
    if args.resend:
        from pipelines import cli

        held = attack(first, "", solve=False)
        scratch = Path(tempfile.mkdtemp(prefix="core20-resend-"))
        try:
            shutil.copytree(args.resend / args.month, scratch / args.month)
            add_one_patient(scratch / args.month)
            code = cli.main(["run", "--extract", str(scratch), "--month", args.month, "--warehouse", str(args.warehouse)])
            if code != 0:
                print(f"the re-sent month did not publish (core20 run exit {code})", file=sys.stderr)
                return 2
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        second = published_month(args.warehouse, month)
        earlier = {**held, "memberships": first["memberships"]}
        results.append(attack(second, "two releases (one patient added), the exact change known", earlier=earlier))
        results.append(attack(second, "the second release alone"))
    return 1 if any(r["narrowed"] or r["exact"] or r["unsolved"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
