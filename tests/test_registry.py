"""import_dataset / download_dataset: validate first, write atomically, verify checksums."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhns.data import MANIFESTS, DataError, ManifestEntry, download_dataset, import_dataset

FILES = {
    "entity2id.txt": "3\na 0\nb 1\nc 2\n",
    "relation2id.txt": "1\nr 0\n",
    "train2id.txt": "3\n0 1 0\n1 2 0\n2 0 0\n",
    "valid2id.txt": "1\n0 2 0\n",
    "test2id.txt": "1\n1 0 0\n",
}


def make_source(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "images" / "1").mkdir(parents=True)
    (root / "images" / "1" / "x.png").write_bytes(b"png")
    return root


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


# ----------------------------------------------------------------- import


def test_import_copies_valid_dataset(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    data_dir = tmp_path / "data"
    kg, warnings = import_dataset("toy", src, data_dir)
    assert leftovers(data_dir) == ["toy"]
    assert (data_dir / "toy" / "train2id.txt").read_text() == FILES["train2id.txt"]
    assert kg.name == "toy" and len(kg.train) == 3
    assert kg.image_dirs[1] == str((data_dir / "toy" / "images" / "1").resolve())


def test_import_corrupt_leaves_nothing(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    (src / "train2id.txt").write_text("3\n0 1 0\n1 9 0\n2 0 0\n")
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"train2id.txt:3: tail entity id 9 out of range"):
        import_dataset("toy", src, data_dir)
    assert leftovers(data_dir) == []


def test_import_corrupt_keeps_existing_copy(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    data_dir = tmp_path / "data"
    import_dataset("toy", src, data_dir)
    (src / "valid2id.txt").write_text("2\n0 2 0\n")  # count mismatch
    with pytest.raises(DataError, match="header says 2 records but the file has 1"):
        import_dataset("toy", src, data_dir)
    assert leftovers(data_dir) == ["toy"]
    assert (data_dir / "toy" / "valid2id.txt").read_text() == FILES["valid2id.txt"]


def test_import_replaces_existing(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    data_dir = tmp_path / "data"
    import_dataset("toy", src, data_dir)
    (src / "valid2id.txt").write_text("1\n2 1 0\n")
    import_dataset("toy", src, data_dir)
    assert leftovers(data_dir) == ["toy"]
    assert (data_dir / "toy" / "valid2id.txt").read_text() == "1\n2 1 0\n"


def test_import_rejects_bad_name(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    with pytest.raises(DataError, match="plain folder name"):
        import_dataset("../evil", src, tmp_path / "data")


# ----------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``tmp_path/www`` on 127.0.0.1; the fake dataset lives under ``www/FAKE/``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    www = tmp_path / "www" / "FAKE"
    www.mkdir(parents=True)
    for name, text in FILES.items():
        (www / name).write_text(text)
    yield from _serve(_QuietHandler, tmp_path / "www")


def _serve(handler_class: type, directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port with ``handler_class``; yield its URL."""
    handler = functools.partial(handler_class, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def manifest(**bad_hash: str) -> list[ManifestEntry]:
    return [
        ManifestEntry(name, f"https://example.invalid/{name}",
                      bad_hash.get(name.split(".")[0])
                      or hashlib.sha256(text.encode()).hexdigest())
        for name, text in FILES.items()
    ]


def test_download_from_local_server(server: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = download_dataset("FAKE", data_dir, base_url=server, progress=False,
                           manifest=manifest())
    assert out == data_dir / "FAKE"
    assert leftovers(data_dir) == ["FAKE"]
    for name, text in FILES.items():
        assert (out / name).read_text() == text


def test_download_checksum_mismatch_leaves_nothing(server: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(DataError) as info:
        download_dataset("FAKE", data_dir, base_url=server, progress=False,
                         manifest=manifest(train2id="0" * 64))
    assert str(info.value).startswith("train2id.txt: checksum mismatch (expected sha256 000")
    assert leftovers(data_dir) == []


def test_download_http_error(server: str, tmp_path: Path) -> None:
    entries = [*manifest(), ManifestEntry("absent.txt", "", "0" * 64)]
    with pytest.raises(DataError, match="download of absent.txt failed: HTTP 404"):
        download_dataset("FAKE", tmp_path / "data", base_url=server, progress=False,
                         manifest=entries)
    assert leftovers(tmp_path / "data") == []


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'NOPE'"):
        download_dataset("NOPE", tmp_path)


def test_builtin_manifests_are_pinned() -> None:
    assert set(MANIFESTS) == {"DB15K", "MKG-W", "MKG-Y"}
    for entries in MANIFESTS.values():
        assert {"entity2id.txt", "train2id.txt", "test2id_all.txt"} <= {e.file for e in entries}
        for e in entries:
            assert len(e.sha256) == 64
            assert "c72291c3d571b36c754897935d21718aa4568fe7" in e.url or (
                "e118ed7c5f8970ea97dc8954d4cd924ffe155700" in e.url)


@pytest.mark.shared
def test_manifest_hashes_match_shared_files(shared_data: Path) -> None:
    for ds, entries in MANIFESTS.items():
        for e in entries:
            digest = hashlib.sha256((shared_data / ds / e.file).read_bytes()).hexdigest()
            assert digest == e.sha256, f"{ds}/{e.file}"


@pytest.mark.shared
def test_download_real_layout_from_local_mirror(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real MKG-Y manifest, served from ../shared/data as if it were the mirror."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = functools.partial(_QuietHandler, directory=str(shared_data))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        out = download_dataset("MKG-Y", tmp_path / "data", progress=False,
                               base_url=f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert sorted(p.name for p in out.iterdir()) == sorted(e.file for e in MANIFESTS["MKG-Y"])


# ----------------------------------------------------------------- download: redirects, file://


class _RedirectHandler(_QuietHandler):
    """``/same/<path>`` redirects to ``/<path>`` on 127.0.0.1, ``/other/<path>`` to the same
    server under another host name (``localhost``); anything else is served from disk."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        for prefix, host in (("/same/", "127.0.0.1"), ("/other/", "localhost")):
            if self.path.startswith(prefix):
                self.send_response(302)
                port = self.server.server_address[1]
                self.send_header("Location", f"http://{host}:{port}/{self.path[len(prefix):]}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super().do_GET()


@pytest.fixture
def redirect_server(server: str, tmp_path: Path) -> Iterator[str]:
    """Like ``server`` (same files), plus the ``/same/`` and ``/other/`` redirects."""
    yield from _serve(_RedirectHandler, tmp_path / "www")


def test_download_follows_same_host_redirects(redirect_server: str, tmp_path: Path) -> None:
    out = download_dataset("FAKE", tmp_path / "data", base_url=f"{redirect_server}/same",
                           progress=False, manifest=manifest())
    assert (out / "train2id.txt").read_text() == FILES["train2id.txt"]


def test_download_refuses_redirect_to_another_host(redirect_server: str,
                                                   tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    base = f"{redirect_server}/other"
    with pytest.raises(DataError) as info:
        download_dataset("FAKE", data_dir, base_url=base, progress=False, manifest=manifest())
    port = redirect_server.rsplit(":", 1)[1]
    assert str(info.value) == (
        f"{base}/FAKE/entity2id.txt: download of entity2id.txt refused: HTTP 302 redirect to "
        f"another host (http://localhost:{port}/FAKE/entity2id.txt); pass --allow-redirects "
        "to follow it")
    assert leftovers(data_dir) == []
    out = download_dataset("FAKE", data_dir, base_url=base, progress=False,
                           manifest=manifest(), allow_redirects=True)
    assert (out / "train2id.txt").read_text() == FILES["train2id.txt"]


def test_download_refuses_file_url_unless_allowed(tmp_path: Path) -> None:
    www = tmp_path / "www" / "FAKE"
    www.mkdir(parents=True)
    for name, text in FILES.items():
        (www / name).write_text(text)
    base = (tmp_path / "www").as_uri()
    data_dir = tmp_path / "data"
    with pytest.raises(DataError) as info:
        download_dataset("FAKE", data_dir, base_url=base, progress=False, manifest=manifest())
    assert str(info.value) == (
        f"{base}: file:// URLs are refused (pass --allow-file-url to read local files)")
    assert leftovers(data_dir) == []
    # a manifest entry pointing at a local file is refused the same way
    local = [ManifestEntry(e.file, f"{base}/FAKE/{e.file}", e.sha256) for e in manifest()]
    with pytest.raises(DataError, match="file:// URLs are refused"):
        download_dataset("FAKE", data_dir, progress=False, manifest=local)
    out = download_dataset("FAKE", data_dir, base_url=base, progress=False,
                           manifest=manifest(), allow_file_url=True)
    assert (out / "test2id.txt").read_text() == FILES["test2id.txt"]


def test_download_refuses_other_schemes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unsupported URL scheme ftp: \(expected http:// or "
                       r"https://\)"):
        download_dataset("FAKE", tmp_path / "data", base_url="ftp://127.0.0.1/x",
                         progress=False, manifest=manifest())


def test_cli_download_flags(tmp_path: Path) -> None:
    from cli_checks import assert_user_error
    from typer.testing import CliRunner

    from dhns.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["data", "download", "--help"]).output
    assert "--allow-redirects" in help_text and "--allow-file-url" in help_text
    result = runner.invoke(app, ["data", "download", "DB15K", "--data-dir",
                                 str(tmp_path / "data"), "--base-url", tmp_path.as_uri()])
    assert_user_error(result, "file:// URLs are refused (pass --allow-file-url")
    assert leftovers(tmp_path / "data") == []
