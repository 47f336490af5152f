"""The monthly HTML report (page.py assembles it; charts.py and mapping.py draw it)."""
