"""`core20 reference fetch`: put the pinned reference files into a reference directory.

For users outside the environment that ships `../shared/reference_data`. Every file named in
`manifest.yaml` (reference files and codelists) is downloaded, checked against its pinned
sha256 and only then moved into place, so the directory never holds a partial or unpinned
file and a failed download leaves any earlier good copy untouched.

Where each file comes from:

* `--source URL` (or `$CORE20_REFERENCE_SOURCE`): a mirror of the pinned files, laid out
  as in the manifest (`URL/imd2019_lsoa11.csv.gz`, `URL/codelists/...`) - an ICS file
  share, an intranet web server or a release of the bundle. This serves every file.
* otherwise the manifest's `download` address, which exists only where a public address
  serves exactly the pinned bytes (the verbatim IoD2019 files). The other files are
  re-serialisations of the publishers' releases (PROVENANCE.md: Parquet from ONS/OS zip
  and 7z archives, CSV from R data files), so the publishers' own downloads cannot match
  their pins; for those the error names the publisher's page and asks for a mirror.

After fetching, the licence attribution statements that products using the files must
carry are printed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from reference_data.loader import Manifest, ReferenceFile, load_manifest

__all__ = ["SOURCE_ENV", "FetchReport", "fetch_reference", "source_url"]

SOURCE_ENV = "CORE20_REFERENCE_SOURCE"
CODELIST_ATTRIBUTION = "snomed_ct"  # the manifest's attribution key for every codelist
_CHUNK = 1 << 20


@dataclass
class FetchReport:
    """What happened to each file: fetched, already present and verified, or failed (why)."""

    fetched: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attributions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True when every requested file is in place and verified."""
        return not self.failed


def source_url(entry: ReferenceFile, source: str | None) -> str | None:
    """Return where to download `entry` from: the mirror when given, else its own address.

    Examples:
        >>> entry = ReferenceFile("x", "codelists/a b.csv", "0" * 64)
        >>> source_url(entry, "http://127.0.0.1:8000/ref")
        'http://127.0.0.1:8000/ref/codelists/a%20b.csv'
        >>> source_url(entry, None) is None
        True
    """
    if source:
        return source.rstrip("/") + "/" + urllib.parse.quote(entry.path)
    return entry.download or None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, destination: Path, expected: str, timeout: float) -> None:
    """Stream `url` to a temporary file beside `destination`, check sha256, then rename."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(_CHUNK), b""):
                digest.update(block)
                out.write(block)
        actual = digest.hexdigest()
        if actual != expected:
            raise ValueError(
                f"downloaded {url} but its sha256 is {actual}, not the pinned {expected}; "
                "it was not written (a different release, or a corrupted or intercepted download)"
            )
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def fetch_reference(
    target_dir: str | Path,
    *,
    source: str | None = None,
    only: Iterable[str] | None = None,
    force: bool = False,
    manifest: Manifest | None = None,
    timeout: float = 120.0,
    say: Callable[[str], None] = print,
) -> FetchReport:
    """Download and verify the manifest's files into `target_dir`.

    Arguments:
        target_dir: the reference directory to fill (created if absent).
        source: base URL of a mirror of the pinned files (default `$CORE20_REFERENCE_SOURCE`).
        only: file or codelist ids to fetch (default all).
        force: download even files already present with the right sha256.
        manifest: the manifest to follow (default the project's).
        timeout: seconds to wait for a server before giving up on a file.
        say: where progress lines go.

    Returns:
        A `FetchReport`; files that failed are named with the reason, and the others are
        still fetched.
    """
    manifest = manifest or load_manifest()
    source = source or os.environ.get(SOURCE_ENV) or None
    target = Path(target_dir).expanduser().resolve()
    entries = {**manifest.files, **manifest.codelists}
    wanted = list(only) if only else list(entries)
    report = FetchReport()
    unknown = [w for w in wanted if w not in entries]
    for name in unknown:
        report.failed[name] = f"'{name}' is not in the manifest (known: {', '.join(sorted(manifest.files))}, and the codelist ids)"
    for name in (w for w in wanted if w in entries):
        entry = entries[name]
        destination = target / entry.path
        if not force and destination.is_file() and _sha256(destination) == entry.sha256:
            report.verified.append(name)
            continue
        url = source_url(entry, source)
        if url is None:
            page = f" Its publisher's page is {entry.publisher_page}." if entry.publisher_page else ""
            report.failed[name] = (
                f"{entry.path}: no public address serves the pinned bytes (it is a re-serialisation of the "
                f"official release).{page} Pass --source with a mirror of the pinned files, or set {SOURCE_ENV}."
            )
            continue
        say(f"  fetching {entry.path} from {url}")
        try:
            _download(url, destination, entry.sha256, timeout)
        except urllib.error.HTTPError as error:
            report.failed[name] = f"{entry.path}: {url} answered HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            report.failed[name] = f"{entry.path}: could not download {url}: {reason}"
        except ValueError as error:
            report.failed[name] = f"{entry.path}: {error}"
        else:
            report.fetched.append(name)
    done = report.fetched + report.verified
    used = {entries[n].attribution for n in done}
    if any(n in manifest.codelists for n in done):
        used.add(CODELIST_ATTRIBUTION)
    report.attributions = [text for key, text in manifest.attributions.items() if key in used]
    return report
