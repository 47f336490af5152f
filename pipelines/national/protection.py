"""Secondary suppression of the national release, top-down: England and regions, then each region's ICBs.

Not the default: the roll-up protects every area in one problem audited in scopes of an area
or two (`month_disclosure._area_scopes`), which was faster at every size measured; this method
is kept for comparison (`CORE20_NATIONAL_ROLLUP_SUPPRESSION=top_down`).

The national release shows every ICB, every NHS England region and England side by side, and
an area's count in every cell is the sum of its parts' (a region is its ICBs, England its
regions). Protecting every area in one problem (`month_disclosure.protect_month` with `sums`)
is exact but its cost grows faster than the number of areas: 48 s of suppression for 3 ICBs
at 0.3% of their population, so all 42 ICBs are out of reach. `protect_top_down` splits it as
tau-ARGUS's hierarchical method (HiTaS) does:

1. **England and the regions** in one problem, with England = the sum of the regions (with
   one region, England alone: the region is England cell for cell and copies its pattern).
2. **Each region's ICBs**, with the pattern of step 1 fixed: England and every region are in
   the problem (what they tell a reader about the region's hidden counts - England minus the
   other regions - is in it), their hidden cells stay hidden and their shown cells can never
   be hidden (`protect_month(hidden=, shown=)`); the counts protected there are the region's
   and its ICBs' (`protected=`), complements come from its ICBs. The regions' problems do not
   depend on each other. A region of one ICB is that ICB cell for cell: the ICB copies it.
3. **The whole release audited once** with that pattern (`protect_month(hidden=)` over every
   area, with every relation of the one-problem method), hiding more where a count is still
   narrowed down. Steps 1-2 alone are not enough: a region's ICBs can narrow the region's
   hidden counts within what its own problem allowed, and through England another region's
   (what HiTaS does not see); on the 3-ICB test month, the pattern of steps 1-2 published as
   it was let the attacker of `tests/attack.py` recover 4 counts of one indicator. The audit
   is the one-problem method's, so the guarantee is the same; the split chooses most
   complements in smaller problems.

When a region's ICBs cannot be protected without hiding a cell its region shows (no visible
ICB count is left to hide), that region's problem is solved again with only the hidden cells
fixed (HiTaS's backtracking, in its simplest form); the audit covers what that changed.
"""

from __future__ import annotations

import time
from typing import Sequence

import polars as pl


def protect_top_down(
    counts: pl.DataFrame,
    relations: list[tuple],
    profile,
    *,
    primary_vintage: str,
    memberships: pl.DataFrame,
    quality: pl.DataFrame,
    england,
    regions: dict,
    progress=None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Return (controlled gap counts, controlled quality, figures) of every area, protected top-down.

    Arguments:
        counts, quality, memberships: every area's exact gap counts, deprivation-quality totals
            and membership patterns, each area under its own `reporting_month` label (as
            `protect_month` takes several areas).
        relations: the gap table's cell relations (gaps._relations).
        profile: the disclosure profile.
        primary_vintage: as `protect_month`.
        england: England's label.
        regions: region label -> the labels of its ICBs.

    Returns:
        What `protect_month` returns for the whole release (its final audit), with figures of
        each step: `top`, `regions` (per region label), `audit`, and `n_lp_solves`,
        `n_complements`, `seconds` over all of them.
    """
    from pipelines.segmentation.month_disclosure import protect_month

    say = progress or (lambda _m: None)
    started = time.perf_counter()

    def solve(labels: Sequence, sums: list[tuple], **fixed):
        chosen = pl.col("reporting_month").is_in(list(labels))
        return protect_month(counts.filter(chosen), relations, profile, primary_vintage=primary_vintage,
                             memberships=memberships.filter(chosen), quality=quality.filter(chosen), sums=sums,
                             decisions=True, **fixed)

    top_labels = [england, *sorted(regions)]
    top_sums = [(england, sorted(regions))]
    if len(regions) == 1:
        # One region: it is England, cell for cell; protecting the two as different areas would
        # only make the solver chase identical counts. England is protected and the region copies it.
        (region,) = regions
        say("suppression: England (one region: the same counts) ...")
        _, _, top = solve([england], [])
        top = {**top, "hidden": top["hidden"] | _relabel(top["hidden"], england, region),
               "shown": top["shown"] | _relabel(top["shown"], england, region)}
    else:
        say(f"suppression: England and {len(regions)} regions ...")
        _, _, top = solve(top_labels, top_sums)
    hidden = set(top["hidden"])
    figures = {"top": _brief(top), "regions": {}, "n_fallbacks": 0}
    for region in sorted(regions):
        icbs = sorted(regions[region])
        if len(icbs) == 1:
            # A region of one ICB is that ICB, cell for cell: the ICB's rows are hidden as the region's.
            hidden |= _relabel(top["hidden"], region, icbs[0])
            continue
        say(f"suppression: region {region}'s {len(icbs)} ICBs under its fixed pattern ...")
        # England and every region are in the problem, fixed: what they tell a reader about the
        # region's hidden cells (England minus the other regions) is part of what is audited.
        labels, sums = [*top_labels, *icbs], [*top_sums, (region, icbs)]
        try:
            _, _, own = solve(labels, sums, hidden=top["hidden"], shown=top["shown"], protected=[region, *icbs])
        except RuntimeError as error:
            if "no visible count is left to hide" not in str(error):
                raise
            # The region's shown cells leave an ICB count no complement: its problem again with
            # only the hidden cells fixed; the audit below covers what that hid at the top.
            figures["n_fallbacks"] += 1
            say(f"  {error}; again with only the hidden cells fixed")
            _, _, own = solve(labels, sums, hidden=top["hidden"], protected=[region, *icbs])
        hidden |= own["hidden"]
        figures["regions"][str(region)] = _brief(own)
    all_sums = [*top_sums, *[(region, sorted(regions[region])) for region in sorted(regions)]]
    say("suppression: the whole release audited with that pattern ...")
    controlled, quality_controlled, final = protect_month(
        counts, relations, profile, primary_vintage=primary_vintage, memberships=memberships, quality=quality,
        sums=all_sums, hidden=hidden, decisions=True)
    figures["audit"] = _brief(final)
    steps = [figures["top"], *figures["regions"].values(), figures["audit"]]
    figures.update({
        "method": "top_down", "n_lp_solves": sum(s["n_lp_solves"] for s in steps),
        "n_complements": sum(s["n_complements"] for s in steps), "n_audit_complements": final["n_complements"],
        "n_variables": final["n_variables"], "n_area_sums": final["n_area_sums"],
        "n_hidden_units": len(final["hidden"]), "seconds": time.perf_counter() - started,
    })
    return controlled, quality_controlled, figures


def _relabel(names: set, source, target) -> set:
    """Return the unit names of area `source` (its label first in each name) as the names of area `target`."""
    return {(target, *name[1:]) for name in names if name[0] == source}


def _brief(stats: dict) -> dict:
    """The figures of one `protect_month` call worth keeping (no unit names, no release record)."""
    return {k: v for k, v in stats.items() if k not in ("hidden", "shown", "release")}
