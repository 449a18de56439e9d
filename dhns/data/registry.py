"""Finding, importing and downloading datasets.

- :func:`load_dataset` auto-detects the layout (OpenKE or TSV) of a folder.
- :func:`import_dataset` validates a user's folder, then copies it into ``data_dir/<name>``.
- :func:`download_dataset` fetches DB15K / MKG-W / MKG-Y from pinned GitHub commits and
  checks every file's SHA-256.

Both writers stage into a hidden temp folder inside ``data_dir`` and rename it into place,
so an error (bad file, bad checksum, Ctrl-C) never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dhns.data import openke, tsv
from dhns.data.errors import DataError
from dhns.data.kg import KnowledgeGraph

NATIVE_COMMIT = "c72291c3d571b36c754897935d21718aa4568fe7"
KON_COMMIT = "e118ed7c5f8970ea97dc8954d4cd924ffe155700"
_NATIVE = f"https://raw.githubusercontent.com/zjukg/NATIVE/{NATIVE_COMMIT}/benchmarks"
_KON = f"https://raw.githubusercontent.com/zjukg/K-ON/{KON_COMMIT}/data"


def load_dataset(
    directory: str | Path, name: str | None = None, clean_valid: bool = True
) -> tuple[KnowledgeGraph, list[str]]:
    """Load, validate and (optionally) clean a dataset folder of either layout.

    Args:
        directory: an OpenKE-layout folder (``train2id.txt`` ...) or a TSV-layout folder
            (``train.tsv`` ...).
        name: dataset name stored in the graph; defaults to the folder name.
        clean_valid: deduplicate valid and drop valid triples that are also in test.

    Returns:
        ``(kg, warnings)``: triples are ``(n, 3)`` int64 ``(h, r, t)`` tensors; warnings
        are human-readable strings (duplicates, split overlaps, unseen entities, cleaning).

    Raises:
        DataError: naming the file (and line) of the first problem found.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, "no such dataset folder")
    name = name or directory.resolve().name
    if (directory / openke.MARKER).is_file():
        return openke.load_openke(directory, name, clean_valid)
    if (directory / tsv.MARKER).is_file():
        return tsv.load_tsv(directory, name, clean_valid)
    raise DataError(
        directory,
        f"no dataset found: expected {openke.MARKER} (OpenKE layout) or {tsv.MARKER} "
        "(TSV layout)",
    )


def _check_name(name: str, data_dir: Path) -> Path:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise DataError(data_dir / str(name), "dataset name must be a plain folder name")
    return data_dir / name


def _replace_dir(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``; an existing ``target`` is removed only after success."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / "x")
    try:
        os.replace(staged, target)
    except BaseException:
        if old is not None:
            os.replace(old / "x", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def import_dataset(
    name: str, source: str | Path, data_dir: str | Path
) -> tuple[KnowledgeGraph, list[str]]:
    """Validate ``source`` with :func:`load_dataset`, then copy it to ``data_dir/name``.

    Nothing is written when validation fails. The returned graph's ``image_dirs`` point into
    the copy, not the source.
    """
    source, data_dir = Path(source), Path(data_dir)
    target = _check_name(name, data_dir)
    kg, warnings = load_dataset(source, name=name)  # raises before anything is written
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{name}.import-"))
    try:
        staged = staging / name
        shutil.copytree(source, staged)
        _replace_dir(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    src = str(source.resolve())
    dst = str(target.resolve())
    kg.image_dirs = [
        dst + d[len(src):] if d is not None and d.startswith(src) else d for d in kg.image_dirs
    ]
    return kg, warnings


# --------------------------------------------------------------------------- download


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a downloadable dataset: where it goes, where it comes from, its hash."""

    file: str
    url: str
    sha256: str


def _native(ds: str, rows: list[tuple[str, str]], extra: dict[str, str] | None = None):
    extra = extra or {}
    return [
        ManifestEntry(f, f"{extra.get(f, _NATIVE + '/' + ds)}/{f}", h) for f, h in rows
    ]


# Hashes of the files as published at the pinned commits (also listed in shared/data/SHA256SUMS).
MANIFESTS: dict[str, list[ManifestEntry]] = {
    "DB15K": _native("DB15K", [
        ("entity2id.txt", "8f8d070f1bb24d07ed3050e4e4e780cb7f2245d0b14db3346e8db4fa55981728"),
        ("relation2id.txt", "25e5a975ee079dbd5b8d22ffe23575a9e3135d263e0a3763224777bf526c1a74"),
        ("train2id.txt", "d41f9b9ab5c0e6eed393e0f93febb4258dc02e5e4a4e2a99c49410d167522804"),
        ("valid2id.txt", "dc7ed39aa14e35a2f7ac09a0ff046067ee0e0d7953f8a204f04e7c09776095b1"),
        ("test2id.txt", "15f28535d04f3711b739a49d824f2346167384283cde57123376392d418ad6de"),
        ("test2id_all.txt", "b495bbb16d77fdb28218203af8a4aa4c5cfcf887421b819098026c3451797cc3"),
        ("type_constrain.txt", "14b29c43fa0ffff9beedcc36beb090ca69d1a0d77aab64408fe718da7d52b221"),
        ("1-1.txt", "0de9be69167dca53ee7734184c3ec481fe3374d8c8f170ae34720b2e06e424e8"),
        ("1-n.txt", "00bdacab94b5bcb6e46357ca54ceaa4c616c784d47e1fdfeed27d198946c4107"),
        ("n-1.txt", "938ba707a01debe3f69ddfbe91bb7806426748c726ea059523694e32fadbfd52"),
        ("n-n.txt", "010440236d03475e38da960e2812711acf64d4684ff9ec877b20accf32eb5652"),
    ]),
    "MKG-W": _native("MKG-W", [
        ("entity2id.txt", "d94b546efcb535d8253821626dd32f3ee876b2f263b727a4a446bc74697785df"),
        ("relation2id.txt", "204203e03a92d4f973ee815449695bcfaae1b6917fcb08b65f3b0fb071a47f61"),
        ("train2id.txt", "a9f316506a20a7b5bef7de3ceaaa1e82de554b8e92e6aa26e7cb54bcd8ada53d"),
        ("valid2id.txt", "34dd556893b8e4832600298864dbd18012529a1f172793c21e45ad7bdee9d189"),
        ("test2id.txt", "0e1294b1f95c8ef80ad422aeefafea321d16c1d127570e6bb566882b2e053989"),
        ("test2id_all.txt", "318b63ec8f49f269b252ebe5b63c3fc6cbecc211fcf65e788dede835d9cb918f"),
        ("type_constrain.txt", "1cee62e538acc9a3469b1d0f03b8204c9fe61fe83262719089cd241cd841d8b8"),
        ("1-1.txt", "df013f351c0f3f09ffd5b75c8b8a6cd591ad49fa17d4497610501d74b0ba2a66"),
        ("1-n.txt", "387d7a49e92f6b552ff74ded7c3ff39aa5f544e754b978fee74ec46b876db795"),
        ("n-1.txt", "c5670686830d7f8ac1baf32886c8867cc07000e6a3391b00885c249b1e4071b0"),
        ("n-n.txt", "87323279130bd66e4366b13d08ea97a0036458d12a30b413b780d294d6805f9f"),
        # K-ON's names for MKG-W (Wikidata QID -> DBpedia title; relation labels by id).
        ("ent_links.txt", "4aa7e9f5ff3bbeea7dee3124669edba7903e65b22844529999325c6bec624511"),
        ("rel_links.txt", "4f4276bec413905e109b1daf938a91c57baf2d4be7d0e3f3bcb4904adfd02ffe"),
    ], extra={"ent_links.txt": f"{_KON}/MKG-W", "rel_links.txt": f"{_KON}/MKG-W"}),
    "MKG-Y": _native("MKG-Y", [
        ("entity2id.txt", "416f6f77c13d0cf0c5cae9625a62b9f7d26320c27ae408f5ce4e7eae3206b8d9"),
        ("relation2id.txt", "78d468edc02688f742c9b5a1030a071789ab24784dd2e48897643fe108ff4e4d"),
        ("train2id.txt", "71310c2c274e5ba2ce550433ef5c8496920bd03f50fd6057e64fc9c34e1e1aac"),
        ("valid2id.txt", "6c82db2d2b809aabf72f94bc19be3080b53ffba1caec12b81510354a7fe3470e"),
        ("test2id.txt", "8602cbbe7e3aef2c857df66eec5f7e4a2d6b02b19f58feff085688fb28980158"),
        ("test2id_all.txt", "b839fbfbd666631ce09d6ff92501ff50e5aac6c85c81d1d52f7fa029ef125860"),
        ("type_constrain.txt", "5d305df6c8166170f41eedba58f1dbee3f9f525869f17d411af3f59391a22eaf"),
        ("1-1.txt", "10a8f314e2ccd6f7e3e609c8c0d8fd3bdc9e600c7a6388baae5f2c733b467b26"),
        ("1-n.txt", "2bad559e7e2fbaf18276f05eae801eaea3c4eb7ec3461b1cb311e8e9a95b4ecf"),
        ("n-1.txt", "501d690a684f98b15490937c5462806418425218a2e1352154c7da6e3a04528f"),
        ("n-n.txt", "0895a8ce231ff3ef6e591799751157331693d8a5d325331a76c01d23097add74"),
    ]),
}


def _origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)``: two URLs are on the same host when these agree."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a malformed port: compare the raw text instead
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default


def check_url(url: str, allow_file_url: bool = False) -> None:
    """Refuse anything but ``http(s)://`` (``file://`` only with ``allow_file_url``)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return
    if scheme == "file":
        if allow_file_url:
            return
        raise DataError(url, "file:// URLs are refused (pass --allow-file-url to read "
                             "local files)")
    raise DataError(url, f"unsupported URL scheme {scheme + ':' if scheme else '(none)'} "
                         "(expected http:// or https://)")


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the original host (scheme, host and port)."""

    def __init__(self, origin_url: str, file: str) -> None:
        self.origin_url, self.file = origin_url, file

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(self.origin_url):
            fp.close()
            raise DataError(
                self.origin_url,
                f"download of {self.file} refused: HTTP {code} redirect to another host "
                f"({newurl}); pass --allow-redirects to follow it",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, entry: ManifestEntry, allow_redirects: bool):
    if allow_redirects:
        return urllib.request.urlopen(url, timeout=60)
    opener = urllib.request.build_opener(_SameHostRedirects(url, entry.file))
    return opener.open(url, timeout=60)


def _fetch(url: str, dest: Path, entry: ManifestEntry, progress: bool,
           allow_redirects: bool = False, allow_file_url: bool = False) -> None:
    """Stream ``url`` to ``dest``, hashing as we go; raise on HTTP error or bad checksum.

    Redirects to another host and ``file://`` URLs are refused unless allowed: the hash
    check would still catch a wrong file, but a mirror silently sending the client elsewhere
    (or a base URL reading local files) should be the user's explicit choice.
    """
    check_url(url, allow_file_url)
    digest = hashlib.sha256()
    try:
        with _open(url, entry, allow_redirects) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=entry.file,
                      disable=not progress, file=sys.stderr, leave=False) as bar:
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(url, f"download of {entry.file} failed: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(url, f"download of {entry.file} failed: {reason}") from None
    got = digest.hexdigest()
    if got != entry.sha256:
        raise DataError(
            entry.file, f"checksum mismatch (expected sha256 {entry.sha256}, got {got}; url {url})"
        )


def download_dataset(
    name: str,
    data_dir: str | Path,
    base_url: str | None = None,
    progress: bool = True,
    manifest: Sequence[ManifestEntry] | None = None,
    allow_redirects: bool = False,
    allow_file_url: bool = False,
) -> Path:
    """Download a benchmark into ``data_dir/name`` and return that folder.

    Args:
        name: ``DB15K``, ``MKG-W`` or ``MKG-Y`` (or any name when ``manifest`` is given).
        base_url: fetch ``<base_url>/<name>/<file>`` instead of the pinned GitHub URLs
            (mirrors, tests with a local server).
        manifest: override the built-in file list (tests).
        allow_redirects: follow HTTP redirects to another host (scheme, host or port);
            by default such a redirect is an error. Same-host redirects are always followed.
        allow_file_url: accept ``file://`` URLs (a local mirror); by default refused. Other
            schemes than http(s) and file are always refused.

    Every file is checked against its SHA-256; the downloaded folder is also loaded once
    with :func:`load_dataset` before being moved into place. On any error nothing is left
    in ``data_dir``.
    """
    data_dir = Path(data_dir)
    target = _check_name(name, data_dir)
    if base_url is not None:
        check_url(base_url, allow_file_url)  # before anything is written
    if manifest is None:
        if name not in MANIFESTS:
            raise DataError(
                target, f"unknown dataset {name!r} (downloadable: {', '.join(MANIFESTS)})"
            )
        manifest = MANIFESTS[name]
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{name}.download-"))
    try:
        staged = staging / name
        staged.mkdir()
        for entry in manifest:
            url = entry.url if base_url is None else f"{base_url.rstrip('/')}/{name}/{entry.file}"
            dest = staged / entry.file
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fetch(url, dest, entry, progress, allow_redirects, allow_file_url)
        load_dataset(staged, name=name)  # a checksum-clean download must also parse
        _replace_dir(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
