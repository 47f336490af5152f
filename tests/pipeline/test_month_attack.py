"""A reader holding every published table of a month recovers no hidden count (tests/attack_month.py).

On a published 2,000-patient October: all indicators' gap rows and deprivation quality at once,
each breakdown's structure, numerators within denominators and every identity between the
populations (found independently from the patients). The control shows the attack can
succeed: with only the small counts hidden (no complements), it recovers some.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attack_month import add_one_patient, attack_month, published_month  # noqa: E402

from pipelines.segmentation.disclosure import apply_profile, get_profile  # noqa: E402
from pipelines.warehouse import connect  # noqa: E402

MONTH = dt.date(2026, 10, 1)


def _month(warehouse: Path, with_alone: bool = False) -> dict:
    return published_month(warehouse, MONTH, with_alone=with_alone)


def test_a_reader_with_every_table_recovers_nothing_by_lp_or_whole_numbers(warehouse):
    m = _month(warehouse)
    out = attack_month(m["gap"], m["truth"], m["quality"], m["quality_truth"], m["memberships"], m["fine"],
                       primary_vintage=m["vintage"], profile=m["profile"], integer=True, integer_sample=25)
    assert out["targets"] > 100  # many hidden counts, across both tables
    # Every programme ends with a proof (an optimum, a whole-number point, or infeasibility);
    # one that did not would be listed as unsolved and fail here, never counted as safe.
    assert out["narrowed"] == [] and out["exact"] == [] and out["unsolved"] == []
    # Every sampled count was attacked with a proof, or is one a visible 0 already fixes.
    assert out["integer_checked"] + out["integer_known"] == 25 and out["integer_checked"] >= 20


def test_a_reader_holding_both_releases_of_a_re_sent_month_recovers_nothing(warehouse, clean_extracts, tmp_path):
    # October is published; its extract is re-sent with one patient added and published again.
    # The reader holds both releases and knows exactly how every count changed (which patient
    # was added): each release's shown ranges, shifted, bound the other's counts, and the first
    # release's identities hold for its counts. The second release is suppressed consistently
    # with the first (pipelines/releases.py), so together they recover nothing.
    import shutil

    from pipeline_helpers import core20_in_process
    from pipelines.releases import earlier_releases

    first = _month(warehouse)
    held = attack_month(first["gap"], first["truth"], first["quality"], first["quality_truth"], first["memberships"],
                        first["fine"], primary_vintage=first["vintage"], profile=first["profile"], solve=False)
    root = tmp_path / "extracts"
    shutil.copytree(clean_extracts / "2026-10", root / "2026-10")
    add_one_patient(root / "2026-10")
    code, output = core20_in_process("run", "--extract", str(root), "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 0, output
    second = _month(warehouse, with_alone=True)
    assert second["truth"].filter(breakdown="overall")["denominator"].sum() > first["truth"].filter(
        breakdown="overall")["denominator"].sum()  # the patient counts somewhere
    with connect(warehouse, read_only=True) as con:
        assert len(earlier_releases(con, MONTH)) == 2  # both releases recorded, privately
    earlier = {**held, "memberships": first["memberships"]}
    out = attack_month(second["gap"], second["truth"], second["quality"], second["quality_truth"], second["memberships"],
                       second["fine"], primary_vintage=second["vintage"], profile=second["profile"], earlier=earlier)
    assert out["targets"] > 100
    assert out["narrowed"] == [] and out["exact"] == [] and out["unsolved"] == []
    # A reader holding only the second release learns nothing either (today's small counts are
    # held to 1-7 for them, without the first release's knowledge).
    alone_reader = attack_month(second["gap"], second["truth"], second["quality"], second["quality_truth"],
                                second["memberships"], second["fine"], primary_vintage=second["vintage"],
                                profile=second["profile"])
    assert alone_reader["narrowed"] == [] and alone_reader["exact"] == [] and alone_reader["unsolved"] == []
    # The control: the second release suppressed on its own (not linked to the first) is open to
    # the same reader, so the attack can succeed.
    gap_alone, quality_alone = second["alone"]
    control = attack_month(gap_alone, second["truth"], quality_alone, second["quality_truth"], second["memberships"],
                           second["fine"], primary_vintage=second["vintage"], profile=second["profile"], earlier=earlier)
    assert len(control["narrowed"]) + len(control["exact"]) > 0


def test_the_attack_recovers_counts_when_only_the_small_ones_are_hidden(warehouse):
    m = _month(warehouse)
    profile = get_profile(m["profile"])
    # Primary suppression alone, row by row (no complements), as a table audited by no one.
    primary = apply_profile(m["truth"].filter(pl.col("group").str.contains("unknown").not_() | ~pl.col("breakdown").str.contains("|", literal=True)),
                            ["numerator", "denominator"], profile)
    primary = primary.with_columns([pl.when(pl.col("is_suppressed")).then(None).otherwise(pl.col(c)).alias(c)
                                    for c in ("numerator", "denominator")])
    quality = apply_profile(m["quality_truth"], [c for c in m["quality_truth"].columns if c.startswith("n_")], profile)
    out = attack_month(primary, m["truth"], quality.drop("is_suppressed"), m["quality_truth"], m["memberships"], m["fine"],
                       primary_vintage=m["vintage"], profile=m["profile"])
    assert len(out["narrowed"]) + len(out["exact"]) > 5
