"""Attach national IMD deciles of both vintages to patients, with how each was obtained.

Route per patient and vintage (DOMAIN.md section 2), first success wins:

1. Postcode: the ONS May 2022 lookup (live and terminated postcodes) gives the 2011 LSOA,
   so IMD 2019 directly ('postcode_lookup'). For IoD 2025 the 2011 LSOA is bridged to 2021
   where the change is one-to-one (U unchanged, M merged: 'postcode_lookup'); split (S) or
   complex (X) LSOAs and postcodes newer than the lookup use the prebuilt spatial table
   from `spatial.build_spatial_lsoa21` ('spatial'). A postcode the lookups place outside
   England gets no decile ('outside_england'): IMD is England-only, so that is not a
   data failure.
2. LSOA supplied in the extract, of the stated vintage ('lsoa_supplied').
3. Practice fallback, only when asked for ('practice_fallback'): the practice's postcode
   stands in, which is a different statistic, so it is flagged per row.

Otherwise the method records the failure: 'invalid_postcode', 'blank' or 'unmatched'.
Deciles are national and never re-ranked; `imd_quintile` and `is_core20` derive from them.

Everything is joins over LazyFrames against small, key-unique reference frames, so the
output has exactly one row per input row (checked by property tests) and a million
patients take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.segmentation.codes import (
    normalise_lsoa_code,
    normalise_postcode,
    postcode_area,
    postcode_district,
)
from pipelines.segmentation.schemas import PATIENT_DEPRIVATION
from pipelines.segmentation.spatial import SPATIAL_SCHEMA

__all__ = [
    "DeprivationReference",
    "load_deprivation_reference",
    "deprivation_reference_from_warehouse",
    "outside_england",
    "reference_from_tables",
    "attach_deprivation",
    "imd_quintile",
    "is_core20",
    "ENGLAND_COUNTRY_CODE",
]

ENGLAND_COUNTRY_CODE = "E92000001"

# Postcode areas wholly outside England: Northern Ireland, the Crown dependencies and
# Scotland's island areas. The loader adds every district and area that the ONS lookup
# itself places wholly outside England, so this list only covers areas the lookup lacks.
_NON_ENGLISH_AREAS = ("BT", "JE", "GY", "IM", "ZE", "HS", "KW")

_ONE_TO_ONE = ("U", "M")  # 2011 -> 2021 change codes with exactly one 2021 LSOA
_FAILURES = ("invalid_postcode", "blank", "unmatched")


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)




@dataclass
class DeprivationReference:
    """The reference frames `attach_deprivation` joins against (small, in memory).

    Every frame must be unique on its key (the first column listed); the constructor
    checks this, because a duplicated key would silently duplicate patients.

    Arguments:
        postcodes: `postcode`, `lsoa11_code`, `country_code`, `lad_code` (ONS May 2022,
            live and terminated).
        imd2019: `lsoa11_code`, `imd2019_decile`.
        imd2025: `lsoa21_code`, `imd2025_decile`.
        lsoa11_lsoa21: `lsoa11_code`, `change_code` (U/S/M/X), `lsoa21_code` (one row per
            pair; not unique on either code).
        lsoa21_geography: `lsoa21_code`, `sicbl_code`, `icb_code` (ODS, 2024), `lad_code`.
        lsoa11_geography: `lsoa11_code`, `sicbl_code`, `icb_code` (ODS, 2022), `lad_code`.
        spatial: the table from `spatial.build_spatial_lsoa21`, or None (then split/complex
            LSOAs and new postcodes get no 2025 decile: 'unmatched').
        outside_england_postcodes: `postcode`s that Code-Point places outside England but
            the ONS lookup lacks (newer than May 2022).
        outside_england_outward: `outward` codes (districts like 'CF10' and areas like
            'BT') wholly outside England.
        practice_postcodes: `practice_code`, `postcode` (canonical), for the fallback.
    """

    postcodes: pl.DataFrame
    imd2019: pl.DataFrame
    imd2025: pl.DataFrame
    lsoa11_lsoa21: pl.DataFrame
    lsoa21_geography: pl.DataFrame
    lsoa11_geography: pl.DataFrame
    spatial: pl.DataFrame | None = None
    outside_england_postcodes: pl.DataFrame | None = None
    outside_england_outward: pl.DataFrame | None = None
    practice_postcodes: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.spatial is None:
            self.spatial = _empty(SPATIAL_SCHEMA)
        if self.outside_england_postcodes is None:
            self.outside_england_postcodes = _empty({"postcode": pl.String()})
        if self.outside_england_outward is None:
            self.outside_england_outward = _empty({"outward": pl.String()})
        if self.practice_postcodes is None:
            self.practice_postcodes = _empty({"practice_code": pl.String(), "postcode": pl.String()})
        for name, key in (
            ("postcodes", "postcode"),
            ("imd2019", "lsoa11_code"),
            ("imd2025", "lsoa21_code"),
            ("lsoa21_geography", "lsoa21_code"),
            ("lsoa11_geography", "lsoa11_code"),
            ("spatial", "postcode"),
            ("outside_england_postcodes", "postcode"),
            ("outside_england_outward", "outward"),
            ("practice_postcodes", "practice_code"),
        ):
            frame = getattr(self, name)
            if key not in frame.columns:
                raise ValueError(f"DeprivationReference.{name} needs a '{key}' column; found {frame.columns}")
            # Only counts in the message: keys can be postcodes.
            n_duplicated = frame.height - frame[key].n_unique()
            if n_duplicated:
                raise ValueError(
                    f"DeprivationReference.{name} must be unique on '{key}': {n_duplicated} "
                    "duplicated key(s) would duplicate patients in the join."
                )

    # --- derived bridges (small: at most ~36k rows each) --------------------------------

    def one_to_one_lsoa21(self) -> pl.DataFrame:
        """Return lsoa11_code -> lsoa21_code for U/M changes (unique on lsoa11_code)."""
        pairs = self.lsoa11_lsoa21.filter(pl.col("change_code").is_in(_ONE_TO_ONE))
        # Defensive: an LSOA11 listed with two U/M targets is not one-to-one after all.
        return pairs.filter(pl.len().over("lsoa11_code") == 1).select("lsoa11_code", "lsoa21_code")

    def unique_lsoa11(self) -> pl.DataFrame:
        """Return lsoa21_code -> lsoa11_code where the 2021 LSOA has exactly one 2011 source.

        Unchanged and split LSOAs qualify (a split child lies inside its one parent, so the
        parent's 2019 decile is the child's); merged ones do not.
        """
        return (
            self.lsoa11_lsoa21.filter(pl.len().over("lsoa21_code") == 1)
            .select("lsoa21_code", "lsoa11_code")
        )

    def agreed_imd2025(self) -> pl.DataFrame:
        """Return lsoa11_code -> imd2025_decile for S/X LSOAs whose 2021 children all share it."""
        split = self.lsoa11_lsoa21.filter(~pl.col("change_code").is_in(_ONE_TO_ONE))
        return (
            split.join(self.imd2025.select("lsoa21_code", "imd2025_decile"), on="lsoa21_code", how="left")
            .group_by("lsoa11_code")
            .agg(
                pl.col("imd2025_decile").first(),
                ((pl.col("imd2025_decile").n_unique() == 1) & pl.col("imd2025_decile").is_not_null().all()).alias("ok"),
            )
            .filter("ok")
            .select("lsoa11_code", pl.col("imd2025_decile").alias("agreed_imd2025_decile"))
        )


def outside_england(postcodes: pl.DataFrame, centroids: pl.LazyFrame) -> pl.DataFrame:
    """Return what is known to lie outside England: outward codes (`kind` 'outward') and postcodes ('postcode').

    An outward code (district like 'CF10', area like 'BT') is outside England only if *every*
    postcode the ONS lookup has in it is: border districts (e.g. CH, SY, TD, NP) stay
    undecided and so 'unmatched'. A postcode is listed when Code-Point places it outside
    England and the lookup (May 2022) lacks it. Built once per reference version
    (`reference.outside_england`).

    Arguments:
        postcodes: the ONS lookup (postcode, lsoa11_code, country_code).
        centroids: Code-Point Open (postcode, country_code).
    """
    known = postcodes.filter(pl.col("country_code").is_not_null())
    outward = pl.concat(
        [
            known.select(postcode_district(pl.col("postcode")).alias("outward"), "country_code"),
            known.select(postcode_area(pl.col("postcode")).alias("outward"), "country_code"),
        ]
    )
    non_english_outward = (
        outward.drop_nulls("outward")
        .group_by("outward")
        .agg((pl.col("country_code") != ENGLAND_COUNTRY_CODE).all().alias("is_outside"))
        .filter("is_outside")
        .select("outward")
    )
    non_english_outward = pl.concat(
        [non_english_outward, pl.DataFrame({"outward": list(_NON_ENGLISH_AREAS)})]
    ).unique()
    outside_postcodes = (
        centroids.filter(pl.col("country_code") != ENGLAND_COUNTRY_CODE)
        .join(postcodes.lazy().filter(pl.col("lsoa11_code").is_not_null()), on="postcode", how="anti")
        .select("postcode")
        .collect()
    )
    return pl.concat([
        non_english_outward.select(pl.lit("outward").alias("kind"), pl.col("outward").alias("code")),
        outside_postcodes.select(pl.lit("postcode").alias("kind"), pl.col("postcode").alias("code")),
    ]).sort("kind", "code")


def reference_from_tables(
    *,
    postcodes: pl.DataFrame,
    imd2019: pl.DataFrame,
    imd2025: pl.DataFrame,
    lsoa11_lsoa21: pl.DataFrame,
    lsoa21_geography: pl.DataFrame,
    lsoa11_geography: pl.DataFrame,
    gp_practices: pl.DataFrame,
    outside: pl.DataFrame,
    spatial: pl.DataFrame | None,
) -> DeprivationReference:
    """Return the `DeprivationReference` from the reference tables as the loader parses them.

    Arguments:
        postcodes: the ONS lookup (postcode, lsoa11_code, country_code, lad_code, ...).
        imd2019, imd2025, lsoa11_lsoa21: the IMD and LSOA change tables.
        lsoa21_geography: LSOA 2021 -> sicbl24_code_nhs, icb24_code_nhs, lad24_code.
        lsoa11_geography: LSOA 2011 -> sicbl22_code_nhs, icb22_code_nhs, lad22_code.
        gp_practices: ODS practices (practice_code, postcode).
        outside: `outside_england` output.
        spatial: `spatial.build_spatial_lsoa21` output, or None.
    """
    practices = (
        gp_practices.select("practice_code", normalise_postcode(pl.col("postcode")).alias("postcode"))
        .unique("practice_code", keep="first")
    )
    return DeprivationReference(
        postcodes=postcodes.select("postcode", "lsoa11_code", "country_code", "lad_code"),
        imd2019=imd2019.select("lsoa11_code", "imd2019_decile"),
        imd2025=imd2025.select("lsoa21_code", "imd2025_decile"),
        lsoa11_lsoa21=lsoa11_lsoa21.select("lsoa11_code", "change_code", "lsoa21_code"),
        lsoa21_geography=lsoa21_geography.select(
            "lsoa21_code", pl.col("sicbl24_code_nhs").alias("sicbl_code"), pl.col("icb24_code_nhs").alias("icb_code"),
            pl.col("lad24_code").alias("lad_code"),
        ),
        lsoa11_geography=lsoa11_geography.select(
            "lsoa11_code", pl.col("sicbl22_code_nhs").alias("sicbl_code"), pl.col("icb22_code_nhs").alias("icb_code"),
            pl.col("lad22_code").alias("lad_code"),
        ),
        spatial=spatial,
        outside_england_postcodes=outside.filter(pl.col("kind") == "postcode").select(pl.col("code").alias("postcode")),
        outside_england_outward=outside.filter(pl.col("kind") == "outward").select(pl.col("code").alias("outward")),
        practice_postcodes=practices,
    )


def load_deprivation_reference(
    reference_dir: str | Path | None = None, spatial: pl.DataFrame | None = None
) -> DeprivationReference:
    """Load the shared reference files into a `DeprivationReference` (the `core20 imd` command and scripts).

    A monthly run reads the same tables from the warehouse instead
    (`deprivation_reference_from_warehouse`): the reference job loaded them once.

    Arguments:
        reference_dir: the shared reference directory (see `reference_data.loader`).
        spatial: the cached table from `spatial.build_spatial_lsoa21`; None leaves split/
            complex LSOAs and post-2022 postcodes without a 2025 decile ('unmatched').

    Returns:
        The reference, about 2.7 million postcode rows plus small LSOA tables.

    Examples:
        >>> reference = load_deprivation_reference()  # doctest: +SKIP
        >>> reference.postcodes.height  # doctest: +SKIP
        2676240
    """
    from reference_data.loader import (
        read_gp_practices,
        read_imd2019,
        read_imd2025,
        read_lsoa11_icb22,
        read_lsoa11_lsoa21,
        read_lsoa21_icb24,
        read_lsoa21_ward24,
        scan_postcode_centroids,
        scan_postcode_lsoa11,
    )

    postcodes = scan_postcode_lsoa11(reference_dir).select("postcode", "lsoa11_code", "country_code", "lad_code").collect()
    return reference_from_tables(
        postcodes=postcodes,
        imd2019=read_imd2019(reference_dir),
        imd2025=read_imd2025(reference_dir),
        lsoa11_lsoa21=read_lsoa11_lsoa21(reference_dir),
        lsoa21_geography=read_lsoa21_icb24(reference_dir).join(read_lsoa21_ward24(reference_dir), on="lsoa21_code", how="left"),
        lsoa11_geography=read_lsoa11_icb22(reference_dir),
        gp_practices=read_gp_practices(reference_dir),
        outside=outside_england(postcodes, scan_postcode_centroids(reference_dir)),
        spatial=spatial,
    )


def deprivation_reference_from_warehouse(con, patients: str) -> DeprivationReference:
    """Return the `DeprivationReference` from the warehouse's `reference` tables, for these patients only.

    The postcode tables (2.7M and 0.4M rows) are cut down in DuckDB to the postcodes the
    month's patients and their practices have, so only those rows come into Python; the
    LSOA tables are small and read whole.

    Arguments:
        con: a warehouse connection.
        patients: the month's staged patients as a SQL relation (postcode, practice_code).
    """
    from pipelines.warehouse import table_exists

    def read(sql: str) -> pl.DataFrame:
        return pl.from_arrow(con.sql(sql).to_arrow_table())

    needed = ["imd2019_lsoa11", "imd2025_lsoa21", "lsoa11_lsoa21", "lsoa21_geography", "lsoa11_geography",
              "gp_practices", "postcode_lsoa11", "postcode_lsoa21_spatial", "outside_england"]
    missing = [t for t in needed if not table_exists(con, "reference", t)]
    if missing:
        raise ValueError(f"the warehouse has no reference table(s) {missing}: run the reference_data job first "
                         "(`core20 run` does this itself)")
    practices = read(f"SELECT g.* FROM reference.gp_practices g SEMI JOIN {patients} p ON p.practice_code = g.practice_code")
    practice_postcodes = practices.select(normalise_postcode(pl.col("postcode")).alias("postcode")).drop_nulls()
    con.register("_practice_postcodes", practice_postcodes.to_arrow())
    try:
        wanted = (f"(SELECT postcode FROM {patients} WHERE postcode IS NOT NULL "
                  f"UNION SELECT postcode FROM _practice_postcodes)")
        return reference_from_tables(
            postcodes=read(f"SELECT r.* FROM reference.postcode_lsoa11 r SEMI JOIN {wanted} w ON w.postcode = r.postcode"),
            imd2019=read("SELECT * FROM reference.imd2019_lsoa11"),
            imd2025=read("SELECT * FROM reference.imd2025_lsoa21"),
            lsoa11_lsoa21=read("SELECT * FROM reference.lsoa11_lsoa21"),
            lsoa21_geography=read("SELECT * FROM reference.lsoa21_geography"),
            lsoa11_geography=read("SELECT * FROM reference.lsoa11_geography"),
            gp_practices=practices,
            outside=read(f"SELECT * FROM reference.outside_england o WHERE o.kind = 'outward' "
                         f"OR o.code IN (SELECT postcode FROM {wanted})"),
            spatial=read(f"SELECT r.* FROM reference.postcode_lsoa21_spatial r SEMI JOIN {wanted} w ON w.postcode = r.postcode"),
        )
    finally:
        con.unregister("_practice_postcodes")


def _postcode_route(frame: pl.LazyFrame, reference: DeprivationReference) -> pl.LazyFrame:
    """Add `_pc_lsoa11`, `_pc_lsoa21`, `_pc_m19`, `_pc_m25`, `_pc_certain`, `_pc_core20_certain`
    and `_pc_agreed25` from `postcode`.

    Methods are null where the postcode route found nothing (the caller decides why).
    `_pc_agreed25` is the IoD2025 decile of a split/complex 2011 LSOA whose 2021 children
    all share it: a terminated postcode there (Code-Point holds live postcodes only, so the
    spatial table cannot place it) still gets its 2025 decile exactly, with no 2021 LSOA.
    """
    postcode = pl.col("postcode")
    lookup = reference.postcodes.lazy().select(
        "postcode", pl.col("lsoa11_code").alias("_lk_lsoa11"), pl.col("country_code").alias("_lk_country")
    )
    spatial = reference.spatial.lazy().select(
        "postcode",
        pl.col("lsoa21_code").alias("_sp_lsoa21"),
        pl.col("is_decile_certain").alias("_sp_certain"),
        pl.col("is_core20_certain").alias("_sp_core20_certain"),
    )
    agreed = reference.agreed_imd2025().lazy().rename(
        {"lsoa11_code": "_lk_lsoa11", "agreed_imd2025_decile": "_agreed25"}
    )
    outside_postcodes = reference.outside_england_postcodes.lazy().select(
        "postcode", pl.lit(True).alias("_cp_outside")
    )
    # A plain list: `is_in` with a Series of the same dtype is deprecated in polars 2.
    outward = reference.outside_england_outward["outward"].to_list()
    one_to_one = reference.one_to_one_lsoa21().lazy().rename(
        {"lsoa11_code": "_lk_lsoa11", "lsoa21_code": "_o2o_lsoa21"}
    )
    reverse = reference.unique_lsoa11().lazy().rename({"lsoa21_code": "_sp_used", "lsoa11_code": "_rev_lsoa11"})

    in_lookup = pl.col("_lk_lsoa11").is_not_null()
    is_english = pl.col("_lk_lsoa11").str.starts_with("E01")
    # Lookup rows without a country are pseudo-postcodes without geography: treat as absent.
    lookup_outside = (
        pl.col("_lk_country").is_not_null() & (pl.col("_lk_country") != ENGLAND_COUNTRY_CODE)
    ) | (in_lookup & ~is_english)
    has_one_to_one = pl.col("_o2o_lsoa21").is_not_null()
    # The spatial table only answers what the lookup cannot: S/X LSOAs and absent postcodes.
    use_spatial = pl.col("_sp_lsoa21").is_not_null() & ~lookup_outside & (~in_lookup | (is_english & ~has_one_to_one))
    area_outside = (
        pl.col("_cp_outside").fill_null(False)
        | postcode_district(postcode).is_in(outward)
        | postcode_area(postcode).is_in(outward)
    )
    is_outside = lookup_outside | (~in_lookup & ~use_spatial & area_outside)
    # Split/complex LSOA that the spatial table did not place, but whose children agree.
    is_agreed = is_english & ~has_one_to_one & pl.col("_sp_used").is_null() & pl.col("_agreed25").is_not_null()

    def certainty(spatial_flag: str) -> pl.Expr:
        # Exact routes are certain; a spatial placement is as certain as its flag says.
        return (
            pl.when(pl.col("_pc_outside"))
            .then(None)
            .when((is_english & has_one_to_one) | is_agreed)
            .then(pl.lit(True))
            .when(pl.col("_sp_used").is_not_null())
            .then(pl.col(spatial_flag))
        )

    return (
        frame.join(lookup, on="postcode", how="left")
        .join(spatial, on="postcode", how="left")
        .join(outside_postcodes, on="postcode", how="left")
        .join(one_to_one, on="_lk_lsoa11", how="left")
        .join(agreed, on="_lk_lsoa11", how="left")
        .with_columns(
            pl.when(use_spatial).then(pl.col("_sp_lsoa21")).alias("_sp_used"),
            is_outside.alias("_pc_outside"),
        )
        .join(reverse, on="_sp_used", how="left")
        .with_columns(
            pl.when(pl.col("_pc_outside"))
            .then(None)
            .when(is_english)
            .then(pl.col("_lk_lsoa11"))
            .otherwise(pl.col("_rev_lsoa11"))
            .alias("_pc_lsoa11"),
            pl.when(pl.col("_pc_outside"))
            .then(None)
            .when(is_english & has_one_to_one)
            .then(pl.col("_o2o_lsoa21"))
            .otherwise(pl.col("_sp_used"))
            .alias("_pc_lsoa21"),
            pl.when(pl.col("_pc_outside"))
            .then(pl.lit("outside_england"))
            .when(is_english)
            .then(pl.lit("postcode_lookup"))
            .when(pl.col("_rev_lsoa11").is_not_null())
            .then(pl.lit("spatial"))
            .alias("_pc_m19"),
            pl.when(pl.col("_pc_outside"))
            .then(pl.lit("outside_england"))
            .when(is_english & has_one_to_one)
            .then(pl.lit("postcode_lookup"))
            .when(pl.col("_sp_used").is_not_null())
            .then(pl.lit("spatial"))
            .when(is_agreed)
            .then(pl.lit("postcode_lookup"))
            .alias("_pc_m25"),
            certainty("_sp_certain").alias("_pc_certain"),
            certainty("_sp_core20_certain").alias("_pc_core20_certain"),
            pl.when(~pl.col("_pc_outside") & is_agreed).then(pl.col("_agreed25")).alias("_pc_agreed25"),
        )
        .drop(
            "_lk_lsoa11", "_lk_country", "_sp_lsoa21", "_sp_certain", "_sp_core20_certain", "_cp_outside",
            "_o2o_lsoa21", "_sp_used", "_rev_lsoa11", "_pc_outside", "_agreed25",
        )
    )


def _practice_deciles(
    practices: pl.LazyFrame, reference: DeprivationReference
) -> pl.LazyFrame:
    """Return practice_code -> `_pr_dec19`, `_pr_dec25`, `_pr_certain`, `_pr_core20_certain`
    via the practice postcode."""
    routed = _postcode_route(
        practices.select("practice_code", normalise_postcode(pl.col("postcode")).alias("postcode"))
        .unique("practice_code", keep="first"),
        reference,
    )
    return (
        routed.join(reference.imd2019.lazy().rename({"lsoa11_code": "_pc_lsoa11"}), on="_pc_lsoa11", how="left")
        .join(reference.imd2025.lazy().rename({"lsoa21_code": "_pc_lsoa21"}), on="_pc_lsoa21", how="left")
        .select(
            "practice_code",
            pl.col("imd2019_decile").alias("_pr_dec19"),
            pl.coalesce("imd2025_decile", "_pc_agreed25").alias("_pr_dec25"),
            pl.col("_pc_certain").alias("_pr_certain"),
            pl.col("_pc_core20_certain").alias("_pr_core20_certain"),
        )
    )


def attach_deprivation(
    patients: pl.LazyFrame,
    reference: DeprivationReference,
    *,
    lsoa_vintage: int | None = None,
    practice_postcodes: pl.LazyFrame | None = None,
    practice_fallback: bool = False,
) -> pl.LazyFrame:
    """Attach IMD 2019 and IoD 2025 deciles, LSOAs, Sub-ICB/ICB/LAD and match methods.

    The postcode is tried first; a supplied LSOA is used for a vintage only when the
    postcode gave that vintage nothing (blank, invalid or unmatched), and the practice
    fallback only when `practice_fallback` is True and neither gave a decile. Fallback rows
    keep null LSOA and geography columns: the practice's area is not the patient's home.

    Arguments:
        patients: `reporting_month`, `patient_id`, `practice_code`, `postcode` (canonical
            or null), `postcode_status` ('valid'|'blank'|'invalid'), `lsoa_code_supplied`
            (nullable). `postcode`/`postcode_status`/`lsoa_code_supplied` may be absent.
        reference: the reference frames (`load_deprivation_reference`).
        lsoa_vintage: 2011 or 2021, the vintage of `lsoa_code_supplied` as stated in the
            column mapping. None infers it per code: a code that is a 2011 LSOA is read as
            2011 (codes shared by both vintages are unchanged LSOAs, the same area), else
            as 2021.
        practice_postcodes: `practice_code`, `postcode`; defaults to the reference's ODS list.
        practice_fallback: substitute the practice's postcode for patients with no decile.

    Returns:
        A LazyFrame with exactly the `PATIENT_DEPRIVATION` columns, one row per input row,
        in input order.

    Examples:
        >>> import datetime as dt
        >>> import polars as pl
        >>> reference = DeprivationReference(
        ...     postcodes=pl.DataFrame({"postcode": ["LS1 4AP", "CF10 1AA"], "lsoa11_code": ["E01033015", "W01001939"],
        ...                             "country_code": ["E92000001", "W92000004"], "lad_code": ["E08000035", "W06000015"]}),
        ...     imd2019=pl.DataFrame({"lsoa11_code": ["E01033015"], "imd2019_decile": [3]}, schema_overrides={"imd2019_decile": pl.Int8}),
        ...     imd2025=pl.DataFrame({"lsoa21_code": ["E01033015"], "imd2025_decile": [4]}, schema_overrides={"imd2025_decile": pl.Int8}),
        ...     lsoa11_lsoa21=pl.DataFrame({"lsoa11_code": ["E01033015"], "change_code": ["U"], "lsoa21_code": ["E01033015"]}),
        ...     lsoa21_geography=pl.DataFrame({"lsoa21_code": ["E01033015"], "sicbl_code": ["15F"], "icb_code": ["QWO"], "lad_code": ["E08000035"]}),
        ...     lsoa11_geography=pl.DataFrame({"lsoa11_code": ["E01033015"], "sicbl_code": ["15F"], "icb_code": ["QWO"], "lad_code": ["E08000035"]}),
        ... )
        >>> patients = pl.LazyFrame({"reporting_month": [dt.date(2026, 1, 1)] * 3, "patient_id": ["a", "b", "c"],
        ...     "practice_code": ["B86001"] * 3, "postcode": ["LS1 4AP", "CF10 1AA", None],
        ...     "postcode_status": ["valid", "valid", "blank"], "lsoa_code_supplied": [None, None, None]})
        >>> out = attach_deprivation(patients, reference).collect()
        >>> out.select("patient_id", "imd2019_decile", "imd2025_decile", "imd2025_method")
        shape: (3, 4)
        ┌────────────┬────────────────┬────────────────┬─────────────────┐
        │ patient_id ┆ imd2019_decile ┆ imd2025_decile ┆ imd2025_method  │
        │ ---        ┆ ---            ┆ ---            ┆ ---             │
        │ str        ┆ i8             ┆ i8             ┆ str             │
        ╞════════════╪════════════════╪════════════════╪═════════════════╡
        │ a          ┆ 3              ┆ 4              ┆ postcode_lookup │
        │ b          ┆ null           ┆ null           ┆ outside_england │
        │ c          ┆ null           ┆ null           ┆ blank           │
        └────────────┴────────────────┴────────────────┴─────────────────┘
    """
    if lsoa_vintage not in (None, 2011, 2021):
        raise ValueError(f"lsoa_vintage must be 2011, 2021 or None; got {lsoa_vintage!r}")
    names = patients.collect_schema().names()
    # Suppliers send either a postcode or an LSOA: absent columns mean "not supplied".
    if "postcode" not in names:
        patients = patients.with_columns(pl.lit(None, dtype=pl.String).alias("postcode"))
    if "postcode_status" not in names:
        patients = patients.with_columns(
            pl.when(pl.col("postcode").is_null()).then(pl.lit("blank")).otherwise(pl.lit("valid")).alias("postcode_status")
        )
    if "lsoa_code_supplied" not in names:
        patients = patients.with_columns(pl.lit(None, dtype=pl.String).alias("lsoa_code_supplied"))

    # All-null columns arrive as dtype Null from some readers; joins need String keys.
    patients = patients.with_columns(
        pl.col("practice_code", "postcode", "postcode_status", "lsoa_code_supplied").cast(pl.String)
    )
    frame = patients.with_row_index("_row").with_columns(
        # A postcode that is not 'valid' never joins (e.g. a stray value beside 'invalid').
        pl.when(pl.col("postcode_status") == "valid").then(pl.col("postcode")).alias("postcode"),
        normalise_lsoa_code(pl.col("lsoa_code_supplied")).alias("_sup"),
    )
    frame = _postcode_route(frame, reference)

    # --- supplied LSOA ---------------------------------------------------------------------
    known11 = reference.imd2019.lazy().select(pl.col("lsoa11_code").alias("_sup"), pl.lit(True).alias("_sup_is11"))
    known21 = reference.imd2025.lazy().select(pl.col("lsoa21_code").alias("_sup"), pl.lit(True).alias("_sup_is21"))
    one_to_one = reference.one_to_one_lsoa21().lazy().rename({"lsoa11_code": "_sup", "lsoa21_code": "_sup_o2o"})
    reverse = reference.unique_lsoa11().lazy().rename({"lsoa21_code": "_sup", "lsoa11_code": "_sup_rev"})
    is11 = pl.col("_sup_is11").fill_null(False)
    is21 = pl.col("_sup_is21").fill_null(False)
    if lsoa_vintage == 2011:
        read_as_2011, read_as_2021 = is11, pl.lit(False)
    elif lsoa_vintage == 2021:
        read_as_2011, read_as_2021 = pl.lit(False), is21
    else:
        read_as_2011, read_as_2021 = is11, ~is11 & is21
    frame = (
        frame.join(known11, on="_sup", how="left")
        .join(known21, on="_sup", how="left")
        .join(one_to_one, on="_sup", how="left")
        .join(reverse, on="_sup", how="left")
        .with_columns(
            pl.when(read_as_2011).then(pl.col("_sup")).when(read_as_2021).then(pl.col("_sup_rev")).alias("_sup_lsoa11"),
            pl.when(read_as_2011).then(pl.col("_sup_o2o")).when(read_as_2021).then(pl.col("_sup")).alias("_sup_lsoa21"),
            (read_as_2011 | read_as_2021).alias("_sup_known"),
            # A Welsh LSOA is a real address where IMD does not apply.
            pl.col("_sup").str.starts_with("W01").fill_null(False).alias("_sup_outside"),
        )
    )

    # --- choose a route per vintage ---------------------------------------------------------
    status = pl.col("postcode_status")
    failure = (
        pl.when(status == "invalid")
        .then(pl.lit("invalid_postcode"))
        .when((status == "blank") & pl.col("_sup").is_null() & pl.col("lsoa_code_supplied").is_null())
        .then(pl.lit("blank"))
        .otherwise(pl.lit("unmatched"))
    )
    sup_method = (
        pl.when(pl.col("_sup_outside")).then(pl.lit("outside_england"))
        .when(pl.col("_sup_known")).then(pl.lit("lsoa_supplied"))
    )
    m19 = pl.coalesce(pl.col("_pc_m19"), sup_method, failure)
    m25 = pl.coalesce(pl.col("_pc_m25"), sup_method, failure)
    frame = frame.with_columns(
        m19.alias("imd2019_method"),
        m25.alias("imd2025_method"),
        pl.when(pl.col("_pc_m19").is_not_null()).then(pl.col("_pc_lsoa11"))
        .when(m19 == "lsoa_supplied").then(pl.col("_sup_lsoa11"))
        .alias("lsoa11_code"),
        pl.when(pl.col("_pc_m25").is_not_null()).then(pl.col("_pc_lsoa21"))
        .when(m25 == "lsoa_supplied").then(pl.col("_sup_lsoa21"))
        .alias("lsoa21_code"),
    )
    # For the supplied route, the 2011 LSOA behind a split is known even when 2019 came from
    # elsewhere; keep it for the children-agree rule.
    agreed = reference.agreed_imd2025().lazy().rename({"lsoa11_code": "_sup"})
    frame = (
        frame.join(agreed, on="_sup", how="left")
        .join(reference.imd2019.lazy().select("lsoa11_code", "imd2019_decile"), on="lsoa11_code", how="left")
        .join(reference.imd2025.lazy().select("lsoa21_code", "imd2025_decile"), on="lsoa21_code", how="left")
    )
    supplied_split = (pl.col("imd2025_method") == "lsoa_supplied") & pl.col("lsoa21_code").is_null() & read_as_2011
    from_postcode = pl.col("imd2025_method").is_in(["postcode_lookup", "spatial"])
    supplied_certain = (
        pl.when(supplied_split)
        .then(pl.col("agreed_imd2025_decile").is_not_null())
        .when(pl.col("imd2025_method") == "lsoa_supplied")
        .then(pl.lit(True))
    )
    frame = frame.with_columns(
        pl.when(supplied_split)
        .then(pl.col("agreed_imd2025_decile"))
        .when(from_postcode)
        .then(pl.coalesce("imd2025_decile", "_pc_agreed25"))
        .otherwise(pl.col("imd2025_decile"))
        .cast(pl.Int8)
        .alias("imd2025_decile"),
        pl.when(from_postcode).then(pl.col("_pc_certain")).otherwise(supplied_certain).alias("imd2025_is_certain"),
        pl.when(from_postcode)
        .then(pl.col("_pc_core20_certain"))
        .otherwise(supplied_certain)
        .alias("imd2025_core20_is_certain"),
    )

    # --- practice fallback (off by default; flagged per row) --------------------------------
    if practice_fallback:
        practices = practice_postcodes if practice_postcodes is not None else reference.practice_postcodes.lazy()
        frame = frame.join(_practice_deciles(practices, reference), on="practice_code", how="left")
        use19 = pl.col("imd2019_method").is_in(_FAILURES) & pl.col("_pr_dec19").is_not_null()
        use25 = pl.col("imd2025_method").is_in(_FAILURES) & pl.col("_pr_dec25").is_not_null()
        frame = frame.with_columns(
            pl.when(use19).then(pl.col("_pr_dec19")).otherwise(pl.col("imd2019_decile")).alias("imd2019_decile"),
            pl.when(use19).then(pl.lit("practice_fallback")).otherwise(pl.col("imd2019_method")).alias("imd2019_method"),
            pl.when(use25).then(pl.col("_pr_dec25")).otherwise(pl.col("imd2025_decile")).alias("imd2025_decile"),
            pl.when(use25).then(pl.lit("practice_fallback")).otherwise(pl.col("imd2025_method")).alias("imd2025_method"),
            pl.when(use25).then(pl.col("_pr_certain")).otherwise(pl.col("imd2025_is_certain")).alias("imd2025_is_certain"),
            pl.when(use25)
            .then(pl.col("_pr_core20_certain"))
            .otherwise(pl.col("imd2025_core20_is_certain"))
            .alias("imd2025_core20_is_certain"),
        )

    # --- geography: 2024 lookup from the 2021 LSOA, else 2022 lookup from the 2011 LSOA ------
    geo21 = reference.lsoa21_geography.lazy().select(
        "lsoa21_code", *[pl.col(c).alias(f"_g21_{c}") for c in ("sicbl_code", "icb_code", "lad_code")]
    )
    geo11 = reference.lsoa11_geography.lazy().select(
        "lsoa11_code", *[pl.col(c).alias(f"_g11_{c}") for c in ("sicbl_code", "icb_code", "lad_code")]
    )
    has21 = pl.col("lsoa21_code").is_not_null()
    frame = (
        frame.join(geo21, on="lsoa21_code", how="left")
        .join(geo11, on="lsoa11_code", how="left")
        .with_columns(
            pl.when(has21).then(pl.col(f"_g21_{c}")).otherwise(pl.col(f"_g11_{c}")).alias(c)
            for c in ("sicbl_code", "icb_code", "lad_code")
        )
    )
    # Quintile and Core20 from the national decile of each vintage (never re-ranked).
    frame = frame.with_columns(
        *(imd_quintile(pl.col(f"{v}_decile")).alias(f"{v}_quintile") for v in ("imd2019", "imd2025")),
        *(is_core20(pl.col(f"{v}_decile")).alias(f"{v}_is_core20") for v in ("imd2019", "imd2025")),
    )
    return (
        frame.sort("_row")
        .select(PATIENT_DEPRIVATION.names)
        .cast(PATIENT_DEPRIVATION.schema)
    )


def imd_quintile(expr: pl.Expr) -> pl.Expr:
    """Return the national IMD quintile, ceil(decile / 2) (1 = most deprived 20%).

    Arguments:
        expr: an integer expression holding national deciles 1-10 (null stays null).

    Returns:
        An Int8 expression.

    Examples:
        >>> import polars as pl
        >>> df = pl.DataFrame({"imd2025_decile": [1, 4, None]})
        >>> df.select(imd_quintile(pl.col("imd2025_decile")).alias("quintile"))
        shape: (3, 1)
        ┌──────────┐
        │ quintile │
        │ ---      │
        │ i8       │
        ╞══════════╡
        │ 1        │
        │ 2        │
        │ null     │
        └──────────┘
    """
    return ((expr.cast(pl.Int16) + 1) // 2).cast(pl.Int8)


def is_core20(expr: pl.Expr) -> pl.Expr:
    """Return whether a national IMD decile puts the patient in Core20 (decile 1 or 2).

    Deciles are national: never re-rank within an ICB (DOMAIN.md section 1).

    Arguments:
        expr: an integer expression holding national deciles 1-10.

    Returns:
        A Boolean expression; null where the decile is null (unknown, not "not Core20").

    Examples:
        >>> import polars as pl
        >>> df = pl.DataFrame({"imd2019_decile": [2, 3, None]})
        >>> df.select(is_core20(pl.col("imd2019_decile")).alias("is_core20"))
        shape: (3, 1)
        ┌───────────┐
        │ is_core20 │
        │ ---       │
        │ bool      │
        ╞═══════════╡
        │ true      │
        │ false     │
        │ null      │
        └───────────┘
    """
    return pl.when(expr.is_null()).then(None).otherwise(expr.is_in([1, 2]))
