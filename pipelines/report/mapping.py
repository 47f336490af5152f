"""The report's map: the ICS's LSOAs shaded by national IMD decile, Core20 areas outlined, practices marked.

The LSOA boundaries must match the IMD vintage (DOMAIN.md section 2): IoD 2025 deciles are
drawn on the December 2021 LSOA boundaries, IMD 2019 deciles on the December 2011 ones.
Geopandas reads and reprojects the pinned ONS boundary files (sha256-checked) to the
British National Grid, so the map is drawn in metres with north up; it is written as
inline SVG paths, so the report needs no tiles, no script and no network.

Geopandas and shapely are imported inside the functions (the report module is imported by
the code location, which must stay light). Reading the national boundary file is most of
the map's cost (about 1 s to decompress and scan 35,000 LSOAs for one ICB's 700, plus 0.7 s
to import geopandas): an ICB's prepared boundaries (reprojected, repaired, simplified) are
kept as WKB in the cache folder (`CORE20_CACHE_DIR`, default data/cache), keyed by the
boundary file's pinned sha256, the LSOA codes and the simplification, so a later month of
the same ICB reads about 700 shapes and needs shapely only. Both paths draw from the same
WKB, so a map is the same to the byte whether its boundaries came from the file or the cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

import duckdb
import polars as pl

# Decile 1 (most deprived) darkest; a perceptually even sequential scale (viridis, 10 steps).
DECILE_COLOURS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e",
                  "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725")
CORE20_STROKE = "#ff6b00"
BNG = 27700
SIMPLIFY_M = 10.0
MAP_WIDTH = 640

VINTAGES = {
    # vintage: (boundary file id, boundary code property, geography SQL, deciles table, decile column, code column)
    "IMD2025": ("lsoa21_boundaries", "LSOA21CD",
                "select lsoa21_code as code, lsoa21_name as name, sicbl24_code_nhs as sub_icb, lad24_name as place "
                "from wh.reference.lsoa21_geography where icb24_code_nhs = $1",
                "wh.reference.imd2025_lsoa21", "imd2025_decile", "lsoa21_code"),
    "IMD2019": ("lsoa11_boundaries", "LSOA11CD",
                "select lsoa11_code as code, lsoa11_code as name, sicbl22_code_nhs as sub_icb, NULL::VARCHAR as place "
                "from wh.reference.lsoa11_geography where icb22_code_nhs = $1",
                "wh.reference.imd2019_lsoa11", "imd2019_decile", "lsoa11_code"),
}


@dataclass(frozen=True)
class MapResult:
    """The map SVG and what it shows, for the caption."""

    svg: str
    n_lsoas: int
    n_core20: int
    n_practices: int
    n_practices_unplaced: int
    boundary_vintage: str
    n_sub_icbs: int = 0
    n_places: int = 0


def area_deciles(con: duckdb.DuckDBPyConnection, icb_code: str, vintage: str) -> pl.DataFrame:
    """Return code, name, decile, Sub-ICB location and local authority of every LSOA of the ICB (boundaries of the vintage)."""
    _, _, geography, deciles, decile_column, code_column = VINTAGES[vintage]
    return pl.from_arrow(con.sql(
        f"select g.code, g.name, g.sub_icb, g.place, d.{decile_column}::integer as decile from ({geography}) g "
        f"left join {deciles} d on d.{code_column} = g.code order by g.code", params=[icb_code],
    ).to_arrow_table())


def practice_points(con: duckdb.DuckDBPyConnection, practice_codes: list[str], reference_dir: Path) -> tuple[pl.DataFrame, int]:
    """Return (practice_code, practice_name, easting, northing) of the practices, and how many had no centroid.

    Practices are placed at their ODS postcode's Code-Point Open centroid.
    """
    from reference_data.loader import scan_postcode_centroids

    practices = pl.from_arrow(con.sql(
        "select practice_code, practice_name, postcode from wh.reference.gp_practices where list_contains($1, practice_code)",
        params=[practice_codes],
    ).to_arrow_table())
    centroids = scan_postcode_centroids(reference_dir).filter(pl.col("postcode").is_in(practices["postcode"].to_list())).collect()
    placed = practices.join(centroids.select("postcode", "easting", "northing"), on="postcode", how="inner")
    return placed.select("practice_code", "practice_name", "easting", "northing"), len(practice_codes) - placed.height


def _rings(geometry) -> list:
    polygons = getattr(geometry, "geoms", [geometry])
    return [ring for polygon in polygons for ring in (polygon.exterior, *polygon.interiors)]


def _path(geometry, to_px) -> str:
    parts = []
    for ring in _rings(geometry):
        points = [to_px(x, y) for x, y in ring.coords]
        parts.append("M" + " L".join(f"{px:.1f},{py:.1f}" for px, py in points) + "Z")
    return "".join(parts)


def _boundary_cache(file_id: str, codes: list[str]) -> Path:
    """Return the cache file of an area's prepared boundaries (the pinned file's sha256, the codes, the simplification)."""
    import hashlib

    from pipelines.gates import CACHE_ENV, DEFAULT_CACHE
    from reference_data.loader import load_manifest

    key = hashlib.sha256(json.dumps({"file": load_manifest().entry(file_id).sha256, "codes": sorted(codes),
                                     "simplify_m": SIMPLIFY_M, "crs": BNG, "version": 1}).encode()).hexdigest()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE) / "map_boundaries" / f"{file_id}-{key[:24]}.parquet"


def prepared_boundaries(reference_dir: Path, file_id: str, code_property: str, codes: list[str]) -> pl.DataFrame:
    """Return (code, wkb) of the LSOAs among `codes`, in the boundary file's order, reprojected to the
    British National Grid, repaired (buffer 0) and simplified; from the cache when it holds them."""
    cache = _boundary_cache(file_id, codes)
    try:
        return pl.read_parquet(cache)
    except Exception:  # noqa: BLE001 - absent or unreadable: read the pinned file again
        pass
    import geopandas as gpd
    import shapely

    from reference_data.loader import verified_path

    listed = ", ".join(f"'{c}'" for c in codes if c and c.isalnum())
    boundaries = gpd.read_file(f"/vsigzip/{verified_path(file_id, reference_dir)}", engine="pyogrio",
                               columns=[code_property], where=f"{code_property} IN ({listed})" if listed else "1 = 0")
    boundaries = boundaries.to_crs(BNG)
    # Super-generalised boundaries can carry tiny self-intersections; buffer(0) repairs them.
    geometry = boundaries.geometry.buffer(0).simplify(SIMPLIFY_M, preserve_topology=True)
    prepared = pl.DataFrame({"code": boundaries[code_property].astype(str).tolist(),
                             "wkb": shapely.to_wkb(geometry.values, include_srid=False).tolist()},
                            schema={"code": pl.String, "wkb": pl.Binary})
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        prepared.write_parquet(partial)
        partial.replace(cache)
    except OSError:
        pass  # a read-only cache folder costs the next month the read again, nothing else
    return prepared


def ics_map(con: duckdb.DuckDBPyConnection, reference_dir: Path, *, icb_code: str, vintage: str,
            practice_codes: list[str]) -> MapResult:
    """Return the ICS map as inline SVG with counts for its caption.

    Arguments:
        con: a connection with the warehouse attached read-only as `wh`.
        reference_dir: the pinned reference directory (boundaries and postcode centroids).
        icb_code: ODS code of the ICB whose LSOAs are drawn.
        vintage: 'IMD2025' or 'IMD2019': which deciles and which LSOA boundaries.
        practice_codes: the practices to mark (those in the month's extract).
    """
    import shapely

    file_id, code_property = VINTAGES[vintage][0], VINTAGES[vintage][1]
    areas = area_deciles(con, icb_code, vintage)
    prepared = prepared_boundaries(reference_dir, file_id, code_property, areas["code"].to_list())
    # The boundaries in file order with their area's attributes (an inner join on the code).
    frame = prepared.with_row_index("_order").join(areas, on="code", how="inner").sort("_order")
    geometries = shapely.from_wkb(frame["wkb"].to_list())
    points, unplaced = practice_points(con, practice_codes, reference_dir)
    if frame.is_empty():
        return MapResult('<p class="note">No LSOA boundaries were found for this ICB.</p>', 0, 0, points.height, unplaced,
                         file_id)
    minx, miny, maxx, maxy = shapely.total_bounds(geometries).tolist()
    scale = MAP_WIDTH / (maxx - minx)
    height = (maxy - miny) * scale

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (x - minx) * scale, (maxy - y) * scale

    legend_h = 110
    parts = [f'<svg class="map" role="img" viewBox="-4 -4 {MAP_WIDTH + 8} {height + legend_h + 8:.0f}" '
             f'width="{MAP_WIDTH + 8}" height="{height + legend_h + 8:.0f}" data-lsoas="{frame.height}" '
             f'data-practices="{points.height}" xmlns="http://www.w3.org/2000/svg">'
             f'<title>LSOAs of {escape(icb_code)} shaded by national {escape(vintage)} decile; Core20 areas outlined; GP practices marked</title>']
    # The areas and their outlines depend only on the ICB's reference data, the same every month:
    # drawn once and kept in the cache, keyed by everything they are drawn from.
    layers = _cached_layers(frame, geometries, to_px)
    parts.append(layers["svg"])
    n_core20, outlines = layers["n_core20"], layers["outlines"]
    for practice in points.iter_rows(named=True):
        px, py = to_px(practice["easting"], practice["northing"])
        parts.append(f'<circle class="practice" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#ffffff" stroke="#111111" '
                     f'stroke-width="1.2"><title>{escape(practice["practice_name"] or "")} ({practice["practice_code"]})</title></circle>')
    # The legend: a numbered swatch per decile, then the outlines and marks, in 13 px type.
    y0 = height + 14
    parts.append(f'<text x="0" y="{y0 + 4:.0f}" font-size="13" font-weight="bold">National IMD decile</text>')
    for k, colour in enumerate(DECILE_COLOURS):
        parts.append(f'<rect x="{k * 34}" y="{y0 + 12:.0f}" width="34" height="18" fill="{colour}"/>'
                     f'<text x="{k * 34 + 17}" y="{y0 + 46:.0f}" font-size="13" text-anchor="middle">{k + 1}</text>')
    parts.append(f'<text x="0" y="{y0 + 64:.0f}" font-size="13">1 = most deprived, 10 = least deprived</text>')
    keys = [(f'<rect x="0" y="-11" width="30" height="14" fill="none" stroke="{CORE20_STROKE}" stroke-width="2.5"/>',
             "Core20 area (deciles 1-2)"),
            ('<line x1="0" y1="-4" x2="30" y2="-4" stroke="#000000" stroke-width="2.4"/>', "Sub-ICB location"),
            ('<line x1="0" y1="-4" x2="30" y2="-4" stroke="#3a3a3a" stroke-width="0.9" stroke-dasharray="4 3"/>',
             "local authority (named)"),
            ('<circle cx="15" cy="-4" r="4" fill="#ffffff" stroke="#111111" stroke-width="1.4"/>', "GP practice")]
    for k, (mark, text) in enumerate(keys):
        parts.append(f'<g transform="translate(380,{y0 + 18 + 20 * k:.0f})">{mark}'
                     f'<text x="38" y="0" font-size="13">{escape(text)}</text></g>')
    parts.append("</svg>")
    n_sub_icbs = sum(1 for column, _ in outlines if column == "sub_icb")
    n_places = sum(1 for column, _ in outlines if column == "place")
    return MapResult("".join(parts), frame.height, n_core20, points.height, unplaced, file_id, n_sub_icbs, n_places)


def _draw_layers(frame: pl.DataFrame, geometries, to_px) -> dict:
    """Return the SVG of the LSOAs, the Core20 outline, the Sub-ICB and local-authority outlines and
    the place names, with the counts the caption needs."""
    import shapely

    parts: list[str] = []
    rows = frame.select("code", "name", "decile", "sub_icb", "place").rows()
    for (code, name, decile, _, _), geometry in zip(rows, geometries):
        fill = DECILE_COLOURS[decile - 1] if decile else "#cccccc"
        label = f"{name} ({code}): decile {decile if decile else 'unknown'}"
        parts.append(f'<path class="lsoa" data-decile="{decile or ""}" d="{_path(geometry, to_px)}" fill="{fill}" '
                     f'stroke="#ffffff" stroke-width="0.3"><title>{escape(label)}</title></path>')
    core20 = [g for (_, _, decile, _, _), g in zip(rows, geometries) if decile is not None and decile <= 2]
    if core20:
        outline = shapely.union_all(core20)
        parts.append(f'<path class="core20" d="{_path(outline, to_px)}" fill="none" stroke="{CORE20_STROKE}" '
                     f'stroke-width="1.6" fill-rule="evenodd"><title>Core20: national IMD deciles 1-2</title></path>')
    # Sub-ICB locations and local authorities: no boundary file of their own is pinned, so their
    # outlines are the union of their LSOAs (the ONS LSOA21 -> Sub-ICB / LAD 2024 lookups);
    # each local authority is named at a point inside it.
    outlines = []
    for position, css, stroke, width, dash in ((4, "lad", "#3a3a3a", 0.9, ' stroke-dasharray="4 3"'),
                                               (3, "subicb", "#000000", 2.4, "")):
        groups: dict[str, list] = {}
        for row, geometry in zip(rows, geometries):
            if row[position] is not None:
                groups.setdefault(row[position], []).append(geometry)
        for key in sorted(groups):
            # Simplified neighbours leave hairline gaps; closing by 25 m before the union keeps
            # them from drawing as stray lines inside the outline.
            shape = shapely.union_all(shapely.buffer(groups[key], 25, quad_segs=16)).buffer(-25, quad_segs=16)
            attribute = f' data-subicb="{escape(str(key))}"' if css == "subicb" else ""
            parts.append(f'<path class="{css}"{attribute} d="{_path(shape, to_px)}" fill="none" stroke="{stroke}" '
                         f'stroke-width="{width}"{dash}><title>{escape(str(key))}</title></path>')
            outlines.append(("place" if css == "lad" else "sub_icb", str(key), shape))
    for column, key, shape in outlines:
        if column != "place":
            continue
        px, py = to_px(*shape.representative_point().coords[0])
        parts.append(f'<text class="place" x="{px:.1f}" y="{py:.1f}" font-size="12" font-weight="bold" text-anchor="middle" '
                     f'fill="#111111" stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(key)}</text>')
    return {"svg": "".join(parts), "n_core20": len(core20),
            "outlines": [(column, key) for column, key, _ in outlines]}


def _cached_layers(frame: pl.DataFrame, geometries, to_px) -> dict:
    """Return `_draw_layers`, from the cache folder when it holds the drawing of the same input.

    The key is a sha256 of every input of the drawing (each area's code, name, decile, Sub-ICB,
    local authority and prepared boundary, and the map's width), so a changed lookup, decile or
    boundary draws again; a hit is the same string to the byte (about 0.2 s of shapely unions
    and path formatting a month).
    """
    import hashlib

    from pipelines.gates import CACHE_ENV, DEFAULT_CACHE

    digest = hashlib.sha256(json.dumps({"width": MAP_WIDTH, "version": 1,
                                        "rows": frame.select("code", "name", "decile", "sub_icb", "place").rows()}).encode())
    for wkb in frame["wkb"].to_list():
        digest.update(len(wkb).to_bytes(8, "little"))
        digest.update(wkb)
    cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE) / "map_layers" / f"{digest.hexdigest()[:32]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - absent or unreadable: draw again
        pass
    layers = _draw_layers(frame, geometries, to_px)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(layers), encoding="utf-8")
        partial.replace(cache)
    except OSError:
        pass  # a read-only cache folder costs the next month the drawing again, nothing else
    return json.loads(json.dumps(layers))  # the same types a cache hit returns
