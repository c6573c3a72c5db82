"""Photographs for backgrounds and clothing prints: fetching them, and the in-memory bank.

Fetch (needs ``apt-get`` and ``dpkg``, Debian/Ubuntu; no root)::

    python -m hmr_ros.data.synthetic.photos fetch [--dest DIR]
    python -m hmr_ros.data.synthetic.photos info [--dest DIR]

downloads the Debian packages of ``SOURCES`` with ``apt-get download``, unpacks them with
``dpkg -x`` (nothing is installed), copies the chosen photographs -- no people in them, and never
``opencv-doc``'s people footage (``vtest.avi`` is evaluation data) -- scaled to at most
``STORE_SIDE`` pixels into ``DIR/images/``, the packages' copyright files into
``DIR/licenses/``, and writes ``DIR/manifest.json`` (per photo: package, version, path in the
package, licence and copyright holder from the package's machine-readable copyright file, or
from the wallpaper's own metadata where it has one, and the stored file's SHA-256). The photos
stay in the cache: they are not part of the repository and must not be committed.

``DIR`` defaults to ``$HMR_ROS_PHOTOS`` or ``~/.cache/hmr_ros/photos``. Any other images dropped
into ``DIR/images/`` are used as well (the manifest is only a record).

The generator reads the photos through a ``PhotoBank``: every image fitted into a
``BANK_SIDE`` square (aspect kept, zero padding, true size recorded), stacked into one
``.npy`` next to the images and memory-mapped, so DataLoader workers share its pages and no
sample pays for JPEG decoding. The bank file is named after the *digest* of the image files
(SHA-256 over names and contents), which ``dataset.json`` records: same photos, same samples.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .config import PHOTOS_AUTO, PHOTOS_NONE

__all__ = [
    "BANK_SIDE",
    "ENV_VAR",
    "PhotoBank",
    "SOURCES",
    "default_photo_dir",
    "fetch_photos",
    "open_photo_bank",
    "parse_debian_copyright",
    "photos_main",
]

ENV_VAR = "HMR_ROS_PHOTOS"
BANK_SIDE = 512  #: side of the square each photo is fitted into in the bank
STORE_SIDE = 1024  #: longest side of a photo as stored in the cache
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_BANK_VERSION = 1


def default_photo_dir() -> Path:
    """``$HMR_ROS_PHOTOS`` or ``~/.cache/hmr_ros/photos``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hmr_ros" / "photos"


def _image_files(directory: Path) -> List[Path]:
    root = directory / "images" if (directory / "images").is_dir() else directory
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _digest(files: Sequence[Path]) -> str:
    h = hashlib.sha256(f"photobank/{_BANK_VERSION}/{BANK_SIDE}".encode())
    for p in files:
        h.update(p.name.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _read_rgb(path: Path) -> Optional[np.ndarray]:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])


def _fit(img: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1.0:
        return img
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True, eq=False)
class PhotoBank:
    """N photos, each in the top-left ``h x w`` corner of a ``BANK_SIDE`` square.

    images: N x S x S x 3 uint8 (usually a read-only memory map); sizes: N x 2 (h, w);
    names: file names; digest: SHA-256 of the image files (see module docs).
    """

    images: np.ndarray
    sizes: np.ndarray
    names: Tuple[str, ...]
    digest: str

    def __len__(self) -> int:
        return int(len(self.sizes))

    @classmethod
    def from_arrays(cls, photos: Sequence[np.ndarray], names: Optional[Sequence[str]] = None,
                    digest: str = "") -> "PhotoBank":
        """A bank from RGB uint8 arrays in memory (tests, or photos from elsewhere)."""
        n = len(photos)
        images = np.zeros((n, BANK_SIDE, BANK_SIDE, 3), np.uint8)
        sizes = np.zeros((n, 2), np.int64)
        for k, img in enumerate(photos):
            img = _fit(np.asarray(img, np.uint8)[..., :3], BANK_SIDE)
            images[k, :img.shape[0], :img.shape[1]] = img
            sizes[k] = img.shape[:2]
        if not digest:
            h = hashlib.sha256(b"photobank-arrays")
            h.update(images.tobytes())
            digest = h.hexdigest()
        names = tuple(names) if names is not None else tuple(f"photo{k}" for k in range(n))
        return cls(images, sizes, names, digest)

    @classmethod
    def build(cls, directory: Union[str, Path]) -> Optional["PhotoBank"]:
        """The bank of the images in ``directory`` (or ``directory/images``), built into
        ``directory/bank-<digest>.npy`` on first use (atomic rename: concurrent workers may
        both build it, one wins) and memory-mapped. None when there are no readable images."""
        directory = Path(directory)
        files = _image_files(directory)
        if not files:
            return None
        digest = _digest(files)
        npy = directory / f"bank-{digest[:16]}.npy"
        meta = directory / f"bank-{digest[:16]}.json"
        if npy.is_file() and meta.is_file():
            info = json.loads(meta.read_text())
            if info.get("digest") == digest:
                images = np.load(npy, mmap_mode="r")
                return cls(images, np.asarray(info["sizes"], np.int64), tuple(info["names"]),
                           digest)
        photos, names = [], []
        for p in files:
            img = _read_rgb(p)
            if img is not None and min(img.shape[:2]) >= 16:
                photos.append(img)
                names.append(p.name)
        if not photos:
            return None
        bank = cls.from_arrays(photos, names, digest)
        try:
            tmp = npy.with_name(f"{npy.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, bank.images)
            tmp_meta = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
            tmp_meta.write_text(json.dumps({"digest": digest, "names": list(bank.names),
                                            "sizes": bank.sizes.tolist()}, indent=1))
            os.replace(tmp, npy)
            os.replace(tmp_meta, meta)
            images = np.load(npy, mmap_mode="r")
            return cls(images, bank.sizes, bank.names, digest)
        except OSError:  # read-only cache: keep the bank in memory
            return bank

    def photo(self, index: int) -> np.ndarray:
        """Photo ``index`` as float32 h x w x 3 in [0, 1]."""
        h, w = self.sizes[int(index)]
        return np.asarray(self.images[int(index), :h, :w], np.float32) / np.float32(255.0)

    def crop(self, index: int, x0: float, y0: float, side: float, out: int,
             flip: bool = False) -> np.ndarray:
        """The square ``[x0, x0+side) x [y0, y0+side)`` of photo ``index`` (its pixels,
        clipped to the photo) resized to ``out x out``: float32 RGB in [0, 1]. Only the
        cut-out is read from the (memory-mapped) bank."""
        import cv2

        h, w = (int(v) for v in self.sizes[int(index)])
        side = max(2.0, min(float(side), h, w))
        x0 = float(np.clip(x0, 0, w - side))
        y0 = float(np.clip(y0, 0, h - side))
        xi, yi = int(np.floor(x0)), int(np.floor(y0))
        xe, ye = min(w, int(np.ceil(x0 + side)) + 1), min(h, int(np.ceil(y0 + side)) + 1)
        cut = np.asarray(self.images[int(index), yi:ye, xi:xe], np.float32) / np.float32(255.0)
        s = side / out  # photo pixels per output pixel
        if s > 1.0:  # shrink: area-resample the (pixel-aligned) cut-out
            n = int(round(side))
            res = cv2.resize(np.ascontiguousarray(cut[:n, :n]), (out, out),
                             interpolation=cv2.INTER_AREA)
        else:  # enlarge: output pixel centre c + .5 samples the photo at x0 + (c + .5) s
            m = np.array([[s, 0.0, x0 - xi + 0.5 * s - 0.5], [0.0, s, y0 - yi + 0.5 * s - 0.5]])
            res = cv2.warpAffine(cut, m, (out, out), flags=cv2.INTER_LINEAR |
                                 cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        if flip:
            res = res[:, ::-1]
        return np.ascontiguousarray(res, np.float32)

    def lookup(self, index: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Colours (N x 3 float32 in [0, 1]) at photo pixels (x, y), wrapped into each photo
        (nearest neighbour: textures on bodies and occluders)."""
        index = np.asarray(index, np.int64)
        h, w = self.sizes[index, 0], self.sizes[index, 1]
        col = np.floor(x).astype(np.int64) % w
        row = np.floor(y).astype(np.int64) % h
        return np.asarray(self.images[index, row, col], np.float32) / np.float32(255.0)


def open_photo_bank(setting: str = PHOTOS_AUTO) -> Optional[PhotoBank]:
    """The bank a ``SynthConfig.photos`` setting names: None for ``"none"``, or for ``"auto"``
    when the default folder holds no photos; an explicit folder must hold some."""
    if setting == PHOTOS_NONE:
        return None
    if setting == PHOTOS_AUTO:
        directory = default_photo_dir()
        return PhotoBank.build(directory) if directory.is_dir() else None
    bank = PhotoBank.build(Path(setting).expanduser())
    if bank is None:
        raise ValueError(f"photos={setting!r}: no readable images there (fetch them with "
                         f"python -m hmr_ros.data.synthetic.photos fetch --dest {setting})")
    return bank


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Photos of one package. ``package``: a Debian package (``apt-get download``), or
    ``python:<module>`` for files shipped with an installed Python package; ``files``: glob
    patterns relative to the unpacked package root (or the module's folder); ``exclude``: globs
    on the base name; ``one_per_dir``: keep only the largest image of each directory (KDE
    wallpapers ship one photo at many sizes); ``licences``: base name -> (licence, copyright)
    when the package has no machine-readable copyright file for them; ``source_root``: how
    installed paths map back to the source paths its copyright file names."""

    package: str
    files: Tuple[str, ...]
    exclude: Tuple[str, ...] = ()
    one_per_dir: bool = False
    licences: Tuple[Tuple[str, str, str], ...] = ()
    note: str = ""
    #: (installed prefix, source prefix): where the package's copyright file's ``Files``
    #: paths (source tree) are installed
    source_root: Tuple[str, str] = ("", "")


_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                  "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "Volna", "summer_1am")
_OPENCV_DATA = ("aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "blox.jpg", "board.jpg",
                "box_in_scene.png", "building.jpg", "butterfly.jpg", "cards.png",
                "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "HappyFish.jpg",
                "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "licenseplate_motion.jpg",
                "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png",
                "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg")

#: chosen by looking at every image: photographs (plus a few paintings and prints) without
#: people. Left out on purpose: opencv-doc's basketball*.png and messi5.jpg (people), its
#: videos (vtest.avi is the evaluation footage), KDE's Autumn (a figure in it), and the
#: vector-art wallpapers (the procedural backgrounds cover flat colours and gradients).
SOURCES: Tuple[Source, ...] = (
    Source("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",
                                "usr/share/backgrounds/mate/abstract/Elephants.jpg"),
           source_root=("usr/share/backgrounds/mate/", "")),
    Source("plasma-workspace-wallpapers",
           tuple(f"usr/share/wallpapers/{n}/contents/images/*" for n in _PLASMA_PHOTOS),
           one_per_dir=True, source_root=("usr/share/wallpapers/", ""),
           note="licence per wallpaper also in upstream_licence (its metadata.json)"),
    Source("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*.jpg",),
           exclude=("umang_*",), source_root=("usr/share/backgrounds/", "16.04/")),
    Source("lomiri-wallpapers-20.04", ("usr/share/backgrounds/Kleiber_*.jpg",
                                       "usr/share/backgrounds/Infinite-Sea_*.jpg"),
           source_root=("usr/share/backgrounds/", "20.04/")),
    Source("opencv-doc", tuple(f"usr/share/doc/opencv-doc/examples/data/{n}"
                               for n in _OPENCV_DATA),
           source_root=("usr/share/doc/opencv-doc/examples/", "samples/"),
           note="samples/data of OpenCV; people images and videos left out"),
    Source("python:skimage.data", ("coffee.png", "chelsea.png", "rocket.jpg", "brick.png",
                                   "grass.png", "gravel.png"),
           licences=(("coffee.png", "CC0-1.0", "Rachel Michetti (Pikolo Espresso Bar)"),
                     ("chelsea.png", "CC0-1.0", "Stefan van der Walt"),
                     ("rocket.jpg", "public-domain", "SpaceX"),
                     ("brick.png", "CC0-1.0", "cc0textures.com (Bricks25)"),
                     ("grass.png", "CC0-1.0", "linolafett (DeviantArt)"),
                     ("gravel.png", "CC0-1.0", "cc0textures.com (Gravel04)")),
           note="licences as stated in skimage.data's docstrings"),
)

#: licences whose terms allow this use (training data; the photos are never redistributed)
ALLOWED_LICENCES = ("GPL-2+", "GPL-2.0+", "GPL-3+", "LGPL-3", "LGPLv3", "LGPL-3+",
                    "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0",
                    "Apache-2.0", "Apache-2.0 AND BSD-3-Clause", "BSD-3-Clause", "Expat",
                    "public-domain")


def parse_debian_copyright(text: str) -> List[Dict[str, object]]:
    """Stanzas of a machine-readable debian/copyright: dicts with ``files`` (patterns),
    ``copyright`` and ``license`` (first line). Header and standalone licence stanzas are
    dropped."""
    stanzas, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if "files" in cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t" and key is not None:
            if key == "files":
                cur["files"] += line.split()
            elif key == "copyright":
                cur["copyright"] += "\n" + line.strip()
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        if key == "files":
            cur["files"] = value.split()
        elif key == "copyright":
            cur["copyright"] = value
        elif key == "license":
            cur["license"] = value
        else:
            key = None
    return stanzas


def licence_of(path: str, stanzas: Sequence[Dict[str, object]]) -> Tuple[str, str]:
    """(licence, copyright) of a *source* path: the last stanza with a matching ``Files``
    pattern (DEP-5: the last match wins); ("", "") when none matches."""
    found = ("", "")
    for st in stanzas:
        if any(fnmatch.fnmatchcase(path, pat) for pat in st["files"]):  # type: ignore
            found = (str(st.get("license", "")), str(st.get("copyright", "")))
    return found


def _source_path(rel: str, src: Source) -> str:
    installed, source = src.source_root
    return source + rel[len(installed):] if installed and rel.startswith(installed) else rel


def _select(root: Path, src: Source) -> List[Path]:
    chosen: Dict[Path, Path] = {}
    for pattern in src.files:
        for p in sorted(root.glob(pattern)):
            if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if any(fnmatch.fnmatch(p.name, e) for e in src.exclude):
                continue
            key = p.parent if src.one_per_dir else p
            if src.one_per_dir and key in chosen:
                if p.stat().st_size <= chosen[key].stat().st_size:
                    continue
            chosen[key] = p
    return sorted(set(chosen.values()))


def _store(img: np.ndarray, dest: Path) -> str:
    import cv2

    img = _fit(img, STORE_SIDE)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]),
                           [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    if not ok:
        raise OSError(f"could not encode {dest}")
    data = buf.tobytes()
    dest.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def collect(root: Path, src: Source, version: str, dest: Path,
            copyright_text: Optional[str]) -> List[Dict[str, str]]:
    """Copy the photos of one unpacked source into ``dest/images`` and return their manifest
    entries (raises if a photo's licence is not in ``ALLOWED_LICENCES``)."""
    stanzas = parse_debian_copyright(copyright_text) if copyright_text else []
    extra = {name: (lic, holder) for name, lic, holder in src.licences}
    upstream = _kde_metadata(root)
    entries = []
    (dest / "images").mkdir(parents=True, exist_ok=True)
    tag = src.package.replace("python:", "").replace(".", "-")
    for path in _select(root, src):
        rel = path.relative_to(root).as_posix()
        licence, holder = extra.get(path.name) or licence_of(_source_path(rel, src), stanzas)
        kde = upstream.get(rel.split("/contents/")[0]) if "/contents/" in rel else None
        if licence not in ALLOWED_LICENCES:
            raise ValueError(f"{src.package}: {rel}: licence {licence!r} is not in the "
                             f"allowed list")
        img = _read_rgb(path)
        if img is None:
            continue
        stem = path.stem if not src.one_per_dir else path.parent.parent.parent.name
        name = f"{tag}__{stem}.jpg"
        sha = _store(img, dest / "images" / name)
        entry = {"file": f"images/{name}", "package": src.package, "version": version,
                 "installed_path": rel, "licence": licence, "copyright": holder,
                 "sha256": sha, "original_size": f"{img.shape[1]}x{img.shape[0]}"}
        if kde:
            entry["upstream_licence"], entry["upstream_author"] = kde
        entries.append(entry)
    return entries


def _kde_metadata(root: Path) -> Dict[str, Tuple[str, str]]:
    """KDE wallpaper folder -> (licence, author) from its metadata.json."""
    out = {}
    for meta in root.glob("usr/share/wallpapers/*/metadata.json"):
        try:
            plugin = json.loads(meta.read_text())["KPlugin"]
            author = (plugin.get("Authors") or [{}])[0].get("Name", "")
            out[meta.parent.relative_to(root).as_posix()] = (plugin.get("License", ""), author)
        except (ValueError, KeyError, OSError):
            continue
    return out


def _unpack_debian(package: str, work: Path) -> Tuple[Path, str]:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise OSError(f"{tool} not found: fetching photos needs a Debian/Ubuntu system")
    run = subprocess.run(["apt-get", "download", package], cwd=work, capture_output=True,
                         text=True)
    if run.returncode != 0:
        raise OSError(f"apt-get download {package} failed: {run.stderr.strip()[-400:]}")
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise OSError(f"apt-get download {package} produced no .deb")
    root = work / package
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(debs[-1]), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    debs[-1].unlink()
    return root, version


def fetch_photos(dest: Optional[Union[str, Path]] = None,
                 sources: Sequence[Source] = SOURCES, log=print) -> Path:
    """Fetch ``sources`` into ``dest`` (default ``default_photo_dir()``); returns the manifest
    path. Packages that cannot be downloaded are reported and skipped."""
    dest = Path(dest).expanduser() if dest else default_photo_dir()
    (dest / "licenses").mkdir(parents=True, exist_ok=True)
    manifest: Dict[str, object] = {"sources": [], "photos": []}
    with tempfile.TemporaryDirectory(prefix="hmr_ros_photos_") as tmp:
        work = Path(tmp)
        for src in sources:
            try:
                if src.package.startswith("python:"):
                    import importlib

                    module = importlib.import_module(src.package[len("python:"):])
                    root = Path(module.__file__).parent
                    dist = src.package[len("python:"):].split(".")[0]
                    version = getattr(sys.modules.get(dist), "__version__", "")
                    text = None
                else:
                    root, version = _unpack_debian(src.package, work)
                    cp = root / "usr" / "share" / "doc" / src.package / "copyright"
                    text = cp.read_text(errors="replace") if cp.is_file() else None
                    if text is None:
                        raise ValueError(f"{src.package} has no copyright file")
                    (dest / "licenses" / f"{src.package}.copyright").write_text(text)
                entries = collect(root, src, version, dest, text)
            except (OSError, ValueError, ImportError, subprocess.CalledProcessError) as exc:
                log(f"photos: skipping {src.package}: {exc}")
                continue
            finally:
                if not src.package.startswith("python:"):
                    shutil.rmtree(work / src.package, ignore_errors=True)
            log(f"photos: {src.package} {version}: {len(entries)} photos")
            manifest["sources"].append({"package": src.package, "version": version,
                                        "count": len(entries), "note": src.note})
            manifest["photos"].extend(entries)
    manifest["photos"].sort(key=lambda e: e["file"])
    path = dest / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (dest / "README.txt").write_text(
        "Photographs for hmr_ros's synthetic data (backgrounds, clothing prints).\n"
        "Fetched from Debian packages by `python -m hmr_ros.data.synthetic.photos fetch`;\n"
        "licence and copyright holder of every file in manifest.json, the packages'\n"
        "copyright files in licenses/. Do not commit or redistribute these files.\n")
    bank = PhotoBank.build(dest)
    log(f"photos: {len(manifest['photos'])} photos in {dest} "
        f"(bank {bank.digest[:16] if bank else 'empty'})")
    return path


def photos_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hmr_ros.data.synthetic.photos",
                                     description="photographs for the synthetic data")
    parser.add_argument("command", choices=("fetch", "info"))
    parser.add_argument("--dest", default=None,
                        help=f"photo folder (default ${ENV_VAR} or ~/.cache/hmr_ros/photos)")
    args = parser.parse_args(argv)
    dest = Path(args.dest).expanduser() if args.dest else default_photo_dir()
    try:
        if args.command == "fetch":
            fetch_photos(dest)
        bank = PhotoBank.build(dest) if dest.is_dir() else None
        if bank is None:
            print(f"{dest}: no photos")
            return 1 if args.command == "info" else 0
        print(f"{dest}: {len(bank)} photos, digest {bank.digest}")
        man = dest / "manifest.json"
        if man.is_file():
            counts: Dict[str, int] = {}
            for e in json.loads(man.read_text())["photos"]:
                counts[e["licence"]] = counts.get(e["licence"], 0) + 1
            print("licences: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        return 0
    except (OSError, ValueError) as exc:
        print(f"photos: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(photos_main())
