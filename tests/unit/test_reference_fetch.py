"""`core20 reference fetch` against a web server on loopback (this machine has no internet).

The small-fixture tests use a made-up manifest; the last test serves the real shared
reference directory as a mirror and fetches every pinned file through the real manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from pipelines import cli
from reference_data.fetch import fetch_reference
from reference_data.loader import Manifest, ReferenceFile, load_manifest, resolve_reference_dir


class _Server:
    """A static file server on 127.0.0.1 in a thread, counting the requests it answers."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def mirror(tmp_path):
    """A mirror folder with two small files and a manifest pinning them."""
    root = tmp_path / "mirror"
    (root / "codelists").mkdir(parents=True)
    lookup = gzip.compress(b"lsoa11_code,imd2019_decile\nE01000001,3\n", mtime=0)
    codelist = b"code,term\n22298006,Myocardial infarction\n"
    (root / "imd.csv.gz").write_bytes(lookup)
    (root / "codelists" / "mi.csv").write_bytes(codelist)
    manifest = Manifest(
        files={
            "imd": ReferenceFile("imd", "imd.csv.gz", sha(lookup), attribution="ogl_mhclg",
                                 publisher_page="https://www.gov.uk/government/statistics/english-indices-of-deprivation-2019"),
        },
        codelists={"mi": ReferenceFile("mi", "codelists/mi.csv", sha(codelist))},
        attributions={"ogl_mhclg": "Contains public sector information (MHCLG).", "snomed_ct": "SNOMED CT licence.",
                      "unused": "Not fetched, not printed."},
    )
    return root, manifest


def test_fetches_verifies_and_states_attribution(mirror, tmp_path):
    root, manifest = mirror
    target = tmp_path / "reference"
    with _Server(root) as server:
        report = fetch_reference(target, source=server.url + "/", manifest=manifest, say=lambda _: None)
    assert report.ok and sorted(report.fetched) == ["imd", "mi"]
    assert (target / "imd.csv.gz").read_bytes() == (root / "imd.csv.gz").read_bytes()
    assert (target / "codelists" / "mi.csv").read_bytes() == (root / "codelists" / "mi.csv").read_bytes()
    assert report.attributions == ["Contains public sector information (MHCLG).", "SNOMED CT licence."]
    assert sorted(server.requests) == ["/codelists/mi.csv", "/imd.csv.gz"]


def test_present_and_verified_files_are_not_downloaded_again(mirror, tmp_path):
    root, manifest = mirror
    target = tmp_path / "reference"
    with _Server(root) as server:
        fetch_reference(target, source=server.url, manifest=manifest, say=lambda _: None)
        again = fetch_reference(target, source=server.url, manifest=manifest, say=lambda _: None)
        assert again.ok and again.fetched == [] and sorted(again.verified) == ["imd", "mi"]
        assert len(server.requests) == 2
        forced = fetch_reference(target, source=server.url, manifest=manifest, force=True, say=lambda _: None)
        assert sorted(forced.fetched) == ["imd", "mi"] and len(server.requests) == 4


def test_a_file_that_differs_from_its_pin_is_refused_and_the_good_copy_kept(mirror, tmp_path):
    root, manifest = mirror
    target = tmp_path / "reference"
    with _Server(root) as server:
        fetch_reference(target, source=server.url, manifest=manifest, say=lambda _: None)
        good = (target / "imd.csv.gz").read_bytes()
        (root / "imd.csv.gz").write_bytes(gzip.compress(b"lsoa11_code,imd2019_decile\nE01000001,9\n"))
        report = fetch_reference(target, source=server.url, manifest=manifest, force=True, say=lambda _: None)
    assert report.fetched == ["mi"]
    reason = report.failed["imd"]
    assert "imd.csv.gz" in reason and f"not the pinned {manifest.files['imd'].sha256}" in reason and "it was not written" in reason
    assert (target / "imd.csv.gz").read_bytes() == good
    assert sorted(p.name for p in target.iterdir()) == ["codelists", "imd.csv.gz"]  # no .part left behind


def test_missing_file_unknown_id_and_no_address_are_named(mirror, tmp_path):
    root, manifest = mirror
    (root / "codelists" / "mi.csv").unlink()
    with _Server(root) as server:
        report = fetch_reference(tmp_path / "r", source=server.url, manifest=manifest, only=["mi", "nope"], say=lambda _: None)
    assert "codelists/mi.csv" in report.failed["mi"] and "HTTP 404" in report.failed["mi"]
    assert "'nope' is not in the manifest" in report.failed["nope"]
    # No mirror and no exact-bytes address: the publisher's page is named instead.
    report = fetch_reference(tmp_path / "r", manifest=manifest, only=["imd"], say=lambda _: None)
    assert "english-indices-of-deprivation-2019" in report.failed["imd"] and "--source" in report.failed["imd"]


def test_unreachable_server_is_a_clear_failure(mirror, tmp_path):
    _, manifest = mirror
    with _Server(tmp_path) as server:
        url = server.url
    report = fetch_reference(tmp_path / "r", source=url, manifest=manifest, timeout=5, say=lambda _: None)
    assert not report.ok and all("could not download" in reason for reason in report.failed.values())


@pytest.mark.reference
def test_command_fetches_every_pinned_file_from_a_mirror_of_the_shared_directory(tmp_path, capsys):
    shared = resolve_reference_dir()
    target = tmp_path / "reference"
    with _Server(shared) as server:
        code = cli.main(["reference", "fetch", "--source", server.url, "--reference-dir", str(target)])
    out = capsys.readouterr()
    assert code == 0, out.err
    manifest = load_manifest()
    entries = {**manifest.files, **manifest.codelists}
    # Some codelists are named parts (`select:`) of one published file: the file is fetched
    # once, and each further entry on it finds it present and verified.
    files = {entry.path for entry in entries.values()}
    assert f"{len(files)} fetched, {len(entries) - len(files)} already present and verified, 0 failed" in out.out
    for entry in entries.values():
        assert sha((target / entry.path).read_bytes()) == entry.sha256, entry.path
    assert "Contains OS data" in out.out and "SNOMED CT" in out.out
    # The fetched directory is a working reference directory.
    from reference_data.loader import read_imd2019

    assert read_imd2019(target).height == 32_844
