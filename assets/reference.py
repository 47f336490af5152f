"""Reference data assets: the pinned external files loaded into the `reference` schema.

Each asset reads one verified file (sha256 against reference_data/manifest.yaml) through
the loader and records the checksum it was built from, so "which reference data made this
figure" is answerable from the warehouse. The code version is the pin itself: when a file
is re-pinned, Dagster shows the asset as changed.
"""


import hashlib

import dagster as dg
import polars as pl

from pipelines.resources import ReferenceData
from pipelines.warehouse import REFERENCE_PIN
from reference_data import loader

GROUP = "reference"


def _pins(*file_ids: str) -> str:
    manifest = loader.load_manifest()
    # A codelist that selects part of its file (manifest `select`) is pinned by the selection too.
    joined = "+".join(manifest.entry(f).sha256 + (f":{manifest.entry(f).select!r}" if manifest.entry(f).select else "")
                      for f in file_ids)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _result(frame: pl.DataFrame, *file_ids: str) -> dg.Output:
    manifest = loader.load_manifest()
    return dg.Output(
        frame,
        metadata={
            "n_rows": frame.height,
            "sources": ", ".join(manifest.entry(f).path for f in file_ids),
            "sha256": ", ".join(manifest.entry(f).sha256 for f in file_ids),
        },
    )


def _reference_asset(name: str, file_ids: tuple[str, ...], description: str, build, rule: str = ""):
    """Return an unpartitioned asset `reference/<name>` built by `build(reference_dir)`.

    `rule` names the version of a mapping the table applies to its files (e.g. how
    ethnicity codes map to categories): changing it re-pins the table, so an existing
    warehouse rebuilds it.
    """
    pin = _pins(*file_ids) if not rule else hashlib.sha256(f"{_pins(*file_ids)}|{rule}".encode()).hexdigest()[:16]

    @dg.asset(
        name=name,
        key_prefix="reference",
        group_name=GROUP,
        description=description,
        code_version=pin,
        metadata={REFERENCE_PIN: pin},
    )
    def _asset(reference_data: ReferenceData) -> dg.Output:
        return _result(build(reference_data.path()), *file_ids)

    return _asset


def _geography21(directory) -> pl.DataFrame:
    return loader.read_lsoa21_icb24(directory).join(loader.read_lsoa21_ward24(directory), on="lsoa21_code", how="left")


def _postcodes(directory) -> pl.DataFrame:
    return loader.scan_postcode_lsoa11(directory).collect()


def _codelists(directory) -> pl.DataFrame:
    manifest = loader.load_manifest()
    frames = [
        loader.read_codelist(codelist_id, directory)
        .select("code", "term")
        .with_columns(
            pl.lit(codelist_id).alias("codelist_id"),
            pl.lit(entry.version).alias("codelist_version"),
            pl.lit(entry.sha256).alias("sha256"),
        )
        for codelist_id, entry in manifest.codelists.items()
    ]
    return pl.concat(frames).select("codelist_id", "codelist_version", "code", "term", "sha256")


def _outside_england(directory) -> pl.DataFrame:
    from pipelines.segmentation.deprivation import outside_england

    postcodes = loader.scan_postcode_lsoa11(directory).select("postcode", "lsoa11_code", "country_code").collect()
    return outside_england(postcodes, loader.scan_postcode_centroids(directory))


def _ethnicity_codes(directory) -> pl.DataFrame:
    from pipelines.segmentation.cohorts import load_ethnicity_codes

    return load_ethnicity_codes(directory)


def _spatial(directory) -> pl.DataFrame:
    from pipelines.segmentation.spatial import build_spatial_lsoa21

    return build_spatial_lsoa21(directory)


REFERENCE_ASSETS = [
    _reference_asset("imd2019_lsoa11", ("imd2019_lsoa11",), "IMD 2019 rank and decile per LSOA 2011 (MHCLG).", loader.read_imd2019),
    _reference_asset("imd2025_lsoa21", ("imd2025_lsoa21",), "IoD 2025 IMD score, rank and decile per LSOA 2021 (MHCLG).", loader.read_imd2025),
    _reference_asset("lsoa11_lsoa21", ("lsoa11_lsoa21",), "ONS LSOA 2011 -> 2021 lookup with change codes U/S/M/X.", loader.read_lsoa11_lsoa21),
    _reference_asset(
        "lsoa21_geography", ("lsoa21_icb24", "lsoa21_ward24"),
        "LSOA 2021 -> Sub-ICB, ICB (April 2024) and LAD 2024.", _geography21,
    ),
    _reference_asset("lsoa11_geography", ("lsoa11_icb22",), "LSOA 2011 -> Sub-ICB, ICB (July 2022) and LAD 2022.", loader.read_lsoa11_icb22),
    _reference_asset("gp_practices", ("gp_practices",), "GP practices from NHS ODS epraccur (September 2025).", loader.read_gp_practices),
    _reference_asset(
        "postcode_lsoa11", ("postcode_lsoa11",),
        "ONS postcode -> LSOA 2011 lookup (May 2022), live and terminated postcodes.", _postcodes,
    ),
    _reference_asset(
        "postcode_lsoa21_spatial", ("postcode_centroids", "lsoa21_boundaries", "postcode_lsoa11", "lsoa11_lsoa21", "imd2025_lsoa21"),
        "Postcode -> LSOA 2021 by placing Code-Point Open centroids in LSOA 2021 polygons, for postcodes in split "
        "or complex LSOAs and postcodes newer than the lookup. Built once per reference-data version.",
        _spatial,
    ),
    _reference_asset(
        "outside_england", ("postcode_lsoa11", "postcode_centroids"),
        "Postcode districts and areas wholly outside England (ONS lookup) and postcodes Code-Point places outside "
        "England that the lookup lacks: addresses IMD does not cover.", _outside_england,
    ),
    _reference_asset(
        "ethnicity_codes", ("ethnicity_snomed", "eth_not_stated"),
        "Ethnicity SNOMED codes -> NHS ethnic category (A-S, Z = not stated, 99 = not known), 16 census groups and broad group.",
        _ethnicity_codes, rule="not-known-99",
    ),
    _reference_asset(
        "codelists", tuple(loader.load_manifest().codelists),
        "Every pinned SNOMED CT / dm+d codelist, long format, with its version and sha256.", _codelists,
    ),
]
