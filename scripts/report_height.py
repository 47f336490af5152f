"""Measure monthly reports as a reader's browser lays them out: total height and each section's.

    .venv/bin/python scripts/report_height.py data/reports/core20plus5_report_2026-10.html [more.html ...]

Headless Chromium (Debian's `chromium`, or $CORE20_CHROMIUM) opens a copy of each report
in a 1100 x 900 window; a script added to the copy records, once the page has loaded, the
document's scroll height and every top-level section's id, top and height; the DOM is
dumped and the figures read back from it. Nothing is fetched and the report itself is not
changed. Prints one line per report (total px) and one per section (top, height).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1100,900", "--virtual-time-budget=5000")
PROBE = ("<script>window.addEventListener('load',function(){var d=document.documentElement;"
         "var s=Array.from(document.querySelectorAll('body>header,body>nav,body>section')).map(function(e){"
         "return [e.id||e.tagName.toLowerCase(),e.offsetTop,e.offsetHeight];});"
         "d.setAttribute('data-layout',JSON.stringify({height:Math.max(d.scrollHeight,document.body.scrollHeight),"
         "sections:s}));});</script>")


def chromium() -> str:
    """Return the Chromium binary ($CORE20_CHROMIUM, else chromium / chromium-browser on PATH)."""
    found = os.environ.get("CORE20_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("headless Chromium is needed: install Debian's chromium or set CORE20_CHROMIUM")
    return found


def layout(page: Path) -> dict:
    """Return {"height": px, "sections": [[id, top, height], ...]} of a report rendered 1100 px wide."""
    text = page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / page.name
        copy.write_text(text, encoding="utf-8")
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={folder}/profile", "--dump-dom", copy.as_uri()],
                              capture_output=True, text=True, timeout=180)
    found = re.search(r"data-layout=\"([^\"]*)\"", done.stdout)
    if found is None:
        raise RuntimeError(f"Chromium did not lay out {page}: {done.stderr[-500:]}")
    return json.loads(found.group(1).replace("&quot;", '"'))


def main(argv: list[str]) -> int:
    for name in argv:
        result = layout(Path(name))
        print(f"{name}: {result['height']:,} px")
        for section, top, height in result["sections"]:
            print(f"  {section:<40} top {top:>7,}  height {height:>7,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
