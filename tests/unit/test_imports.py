"""Loading the code location must stay light: heavy libraries are imported only when used."""

import subprocess
import sys

HEAVY = ("great_expectations", "geopandas", "shapely", "pyogrio", "scipy")


def test_definitions_import_does_not_load_heavy_libraries():
    code = (
        "import sys, pipelines.definitions, pipelines.segmentation.cohorts, pipelines.segmentation.gaps, "
        "pipelines.segmentation.deprivation, pipelines.segmentation.stats; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
