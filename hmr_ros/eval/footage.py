"""Real footage for ``hmr-ros eval-video``: OpenCV's sample data, from Debian's ``opencv-doc``.

``hmr-ros footage fetch`` runs ``apt-get download opencv-doc`` in a temporary folder (no root
needed: apt only reads its package lists and writes the ``.deb`` into the working directory),
checks the file against the SHA-256 apt's index gives for it, and unpacks from its data
archive (what ``dpkg -x`` unpacks, streamed through ``dpkg-deb --fsys-tarfile``) only

- ``usr/share/doc/opencv-doc/examples/data/{vtest.avi, messi5.jpg, basketball1.png,
  basketball2.png}`` -- a static-camera video of people walking (768 x 576, 795 frames) and
  three stills with people;
- ``usr/share/doc/opencv-doc/copyright`` -- the package's machine-readable (DEP-5) licence file,

into the cache folder (``--cache``, else ``$HMR_ROS_FOOTAGE_DIR``, else
``~/.cache/hmr_ros/footage``) with a ``manifest.json``: package and version, the SHA-256 of every
file, and each file's licence as the copyright file states it. The package's ``examples/data``
is upstream's ``samples/data``; the DEP-5 stanza that matches that upstream path last wins, as
the format says. The footage is never part of the repository.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from hmr_ros.export.manifest import sha256_of

PACKAGE = "opencv-doc"
DOC_DIR = "usr/share/doc/opencv-doc"
DATA_DIR = f"{DOC_DIR}/examples/data"
COPYRIGHT = f"{DOC_DIR}/copyright"
UPSTREAM_DATA_DIR = "samples/data"  # what examples/data is in the upstream source tree
VIDEO = "vtest.avi"
STILLS = ("messi5.jpg", "basketball1.png", "basketball2.png")
FILES = (VIDEO,) + STILLS
MANIFEST = "manifest.json"
ENV = "HMR_ROS_FOOTAGE_DIR"

FETCH_HINT = "run `hmr-ros footage fetch` (apt-get download opencv-doc; about 96 MB, once)"


def default_footage_dir() -> Path:
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hmr_ros" / "footage"


# --- DEP-5 copyright -------------------------------------------------------------------------


def dep5_stanzas(text: str) -> List[Dict[str, str]]:
    """The paragraphs of a DEP-5 copyright file as {field: value} (continuation lines joined
    with newlines, field names lower-cased)."""
    stanzas, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if line.startswith("#"):
            continue
        if line[0] in " \t" and key is not None:
            current[key] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def dep5_licence(text: str, path: str) -> Tuple[str, str, str]:
    """(licence, copyright, matching ``Files`` patterns) of ``path`` (a path in the upstream
    source tree) in a DEP-5 copyright file: the last ``Files`` stanza with a matching pattern
    wins; only the first line of ``License`` (its short name) is returned."""
    found = ("", "", "")
    for stanza in dep5_stanzas(text):
        patterns = stanza.get("files", "").split()
        if patterns and any(fnmatch.fnmatchcase(path, p) for p in patterns):
            licence = stanza.get("license", "").split("\n")[0].strip()
            found = (licence, stanza.get("copyright", ""), " ".join(patterns))
    return found


def _excluded(text: str, path: str) -> bool:
    for stanza in dep5_stanzas(text)[:1]:  # the header paragraph
        for p in stanza.get("files-excluded", "").split():
            if fnmatch.fnmatchcase(path, p) or path.startswith(p.rstrip("/") + "/"):
                return True
    return False


# --- manifest --------------------------------------------------------------------------------


def install_from_tree(tree: Union[str, Path], dest: Union[str, Path], version: str,
                      source: str, extra: Optional[dict] = None) -> dict:
    """Copy the footage and the copyright file from an unpacked ``opencv-doc`` (``tree`` is
    the folder holding ``usr/``) into ``dest`` and write ``dest/manifest.json``; returns it."""
    tree, dest = Path(tree), Path(dest)
    copyright_src = tree / COPYRIGHT
    missing = [n for n in FILES if not (tree / DATA_DIR / n).is_file()]
    if not copyright_src.is_file():
        missing.append(COPYRIGHT)
    if missing:
        raise OSError(f"{tree}: not an unpacked {PACKAGE} (missing {', '.join(missing)})")
    dest.mkdir(parents=True, exist_ok=True)
    text = copyright_src.read_text(encoding="utf-8", errors="replace")
    files = {}
    for name in FILES:
        target = dest / name
        shutil.copyfile(tree / DATA_DIR / name, target)
        upstream = f"{UPSTREAM_DATA_DIR}/{name}"
        licence, holders, patterns = dep5_licence(text, upstream)
        files[name] = {
            "sha256": sha256_of(target), "bytes": target.stat().st_size,
            "package_path": f"{DATA_DIR}/{name}", "upstream_path": upstream,
            "license": licence or "not stated", "copyright": holders,
            "dep5_files": patterns,
            "excluded_upstream": _excluded(text, upstream),
        }
    shutil.copyfile(copyright_src, dest / "copyright")
    manifest = {
        "package": PACKAGE, "version": version, "source": source,
        "fetched_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
        "copyright_file": {"path": "copyright", "package_path": COPYRIGHT,
                           "sha256": sha256_of(dest / "copyright")},
        "license_note": (f"licences as stated in {COPYRIGHT} of the package: the last DEP-5 "
                         f"'Files' stanza matching the upstream path ({UPSTREAM_DATA_DIR}/<name>,"
                         f" which the package installs as examples/data/<name>)"),
        **(extra or {}),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_footage(folder: Union[str, Path]) -> Dict[str, Path]:
    """{name: path} of the footage in ``folder``; raises OSError (with the fetch hint) when a
    file is missing or its SHA-256 differs from the folder's manifest (a folder without a
    manifest, e.g. a hand-unpacked ``examples/data``, is taken as it is)."""
    folder = Path(folder)
    missing = [n for n in FILES if not (folder / n).is_file()]
    if missing:
        raise OSError(f"{folder}: footage missing ({', '.join(missing)}): {FETCH_HINT}")
    manifest = folder / MANIFEST
    if manifest.is_file():
        record = json.loads(manifest.read_text())
        for name in FILES:
            want = record.get("files", {}).get(name, {}).get("sha256")
            if want and sha256_of(folder / name) != want:
                raise OSError(f"{folder / name}: SHA-256 differs from {manifest}: {FETCH_HINT} "
                              "--force")
    return {n: folder / n for n in FILES}


# --- fetching --------------------------------------------------------------------------------


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise RuntimeError(f"`{cmd[0]}` is not installed: the footage comes from Debian's "
                           f"{PACKAGE} package (pass --deb with a downloaded .deb instead)"
                           ) from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}): " + " | ".join(tail))
    return done.stdout


def apt_download(workdir: Path) -> Tuple[Path, Optional[str]]:
    """``apt-get download opencv-doc`` in ``workdir`` -> (the .deb, the SHA-256 apt's index
    states for it, when it states one)."""
    expected = None
    uris = _run(["apt-get", "download", "--print-uris", PACKAGE], cwd=workdir)
    m = re.search(r"SHA256:([0-9a-f]{64})", uris)
    if m:
        expected = m.group(1)
    _run(["apt-get", "download", PACKAGE], cwd=workdir)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {PACKAGE} wrote no .deb into {workdir}")
    return debs[-1], expected


def deb_version(deb: Path) -> str:
    try:
        return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    except RuntimeError:  # no dpkg-deb: the file name says it (package_version_arch.deb)
        parts = deb.name.split("_")
        return parts[1] if len(parts) >= 3 else "unknown"


def unpack_needed(deb: Path, tree: Path) -> None:
    """The footage and copyright members of ``deb``'s data archive under ``tree`` (the subset of
    ``dpkg -x deb tree`` this needs; the rest, ~300 MB of HTML, is not written)."""
    wanted = {f"{DATA_DIR}/{n}" for n in FILES} | {COPYRIGHT}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    found = set()
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in wanted:
                    continue
                if not member.isfile():
                    raise RuntimeError(f"{deb}: {name} is not a regular file in the package")
                target = tree / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found.add(name)
    finally:
        if proc.stdout:
            proc.stdout.close()
        proc.wait()
    if found != wanted:
        raise RuntimeError(f"{deb}: missing {', '.join(sorted(wanted - found))}")


def fetch_footage(cache: Union[str, Path, None] = None, deb: Union[str, Path, None] = None,
                  force: bool = False) -> Tuple[Path, dict]:
    """Download (or take ``deb``), unpack and install the footage; -> (folder, manifest)."""
    dest = Path(cache).expanduser() if cache else default_footage_dir()
    if not force and (dest / MANIFEST).is_file():
        try:
            check_footage(dest)
            return dest, json.loads((dest / MANIFEST).read_text())
        except OSError:
            pass  # incomplete or changed: fetch again
    with tempfile.TemporaryDirectory(prefix="hmr_ros_footage_") as tmp:
        tmp = Path(tmp)
        expected = None
        if deb is None:
            deb_path, expected = apt_download(tmp)
            source = f"apt-get download {PACKAGE}"
        else:
            deb_path, source = Path(deb), f"local file {Path(deb).name}"
        digest = sha256_of(deb_path)
        if expected and digest != expected:
            raise RuntimeError(f"{deb_path.name}: SHA-256 {digest} differs from apt's index "
                               f"({expected})")
        version = deb_version(deb_path)
        unpack_needed(deb_path, tmp / "root")
        manifest = install_from_tree(tmp / "root", dest, version, source,
                                     {"deb": deb_path.name, "deb_sha256": digest,
                                      "deb_sha256_checked_against_apt_index": bool(expected)})
    return dest, manifest


# --- command line ----------------------------------------------------------------------------


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None,
                        help=f"folder to put the footage in (default: ${ENV} or "
                             "~/.cache/hmr_ros/footage)")
    parser.add_argument("--deb", default=None,
                        help=f"a downloaded {PACKAGE}_*.deb (default: apt-get download it)")
    parser.add_argument("--force", action="store_true", help="fetch again even if present")


def run_fetch(args: argparse.Namespace) -> int:
    dest, manifest = fetch_footage(args.cache, args.deb, args.force)
    print(f"{dest}: {manifest['package']} {manifest['version']}")
    for name, rec in manifest["files"].items():
        print(f"  {name:16s} {rec['bytes']:>9d} B  sha256 {rec['sha256'][:16]}  "
              f"licence: {rec['license']}")
    return 0
