"""Load the user's SMPL files (``.npz``, ``.pkl``) or the procedural body by name.

SMPL files are licensed and never shipped, so these readers are the one place where a user's
file meets the package: every failure names the file and the key, and says what was expected.
Files use SMPL's released keys and layouts: ``v_template`` (V, 3), ``shapedirs`` (V, 3, >=10),
``posedirs`` (V, 3, 207), ``J_regressor`` (24, V; scipy sparse in .pkl files),
``kintree_table`` (2, 24), ``weights`` (V, 24), ``f`` (F, 3).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from .constants import NUM_BETAS, NUM_JOINTS, NUM_POSE_FEATURES, PARENTS
from .errors import BodyModelError
from .model import BodyModel
from .procedural import procedural_body

__all__ = ["SMPL_KEYS", "load_body_model", "load_npz", "load_pkl", "body_model_from_smpl_arrays"]

SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")

PathLike = Union[str, os.PathLike]


def load_body_model(path_or_name: PathLike) -> BodyModel:
    """``"procedural"`` -> the procedural body; a path ending in .npz or .pkl -> that SMPL file."""
    if str(path_or_name) == "procedural":
        return procedural_body()
    path = Path(path_or_name)
    readers = {".npz": load_npz, ".pkl": load_pkl}
    if path.suffix.lower() not in readers:
        raise BodyModelError(
            f"{path}: unknown body model; expected 'procedural' or an SMPL file ending in "
            f"{' or '.join(readers)}"
        )
    return readers[path.suffix.lower()](path)


def load_npz(path: PathLike) -> BodyModel:
    """Read an SMPL ``.npz`` with NumPy alone (no pickled objects are loaded)."""
    path = _existing(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BodyModelError(f"{path}: could not read as .npz: {exc}") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise BodyModelError(f"{path}: could not read as .npz: it holds a single array")
    with npz:
        missing = [key for key in SMPL_KEYS if key not in npz.files]
        if missing:
            raise BodyModelError(_missing_message(path, missing[0]))
        arrays = {key: _read_npz_key(npz, key, path) for key in SMPL_KEYS}
    return body_model_from_smpl_arrays(arrays, str(path))


def load_pkl(path: PathLike) -> BodyModel:
    """Read an SMPL ``.pkl`` through smplx (the reader SMPL's own code uses).

    The pickle is opened here (latin-1, as smplx does) so that missing keys and wrong shapes are
    reported by name before smplx converts it; smplx then builds its ``SMPL`` layer from the data
    (``data_struct``, the same path ``smplx.SMPL(model_path=file)`` takes) and the buffers are
    read back. SMPL's released .pkl files store chumpy arrays, so unpickling them needs chumpy.
    Unpickling runs code from the file: only load files you trust.
    """
    path = _existing(path)
    try:
        import smplx
        from smplx.utils import Struct
    except ImportError as exc:
        raise BodyModelError(
            f"{path}: reading SMPL .pkl files needs the 'smplx' package ({exc}); install smplx "
            f"or convert the file to .npz"
        ) from exc
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
    except ModuleNotFoundError as exc:
        raise BodyModelError(
            f"{path}: unpickling needs the '{exc.name}' package (SMPL's released .pkl files store "
            f"chumpy arrays); install it or convert the file to .npz"
        ) from exc
    except Exception as exc:  # any unpickling failure: corrupt or not a pickle
        raise BodyModelError(f"{path}: could not unpickle: {exc}") from exc
    if not isinstance(data, Mapping):
        raise BodyModelError(f"{path}: expected a pickled dict of SMPL arrays, got {type(data)}")
    _check_smpl_arrays(data, str(path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a 10-betas warning
            smpl = smplx.SMPL(model_path=str(path), data_struct=Struct(**data), num_betas=NUM_BETAS)
    except Exception as exc:
        raise BodyModelError(f"{path}: smplx could not build an SMPL model: {exc}") from exc
    return BodyModel(
        v_template=smpl.v_template.numpy(), shapedirs=smpl.shapedirs.numpy(),
        posedirs=smpl.posedirs.numpy(), j_regressor=smpl.J_regressor.numpy(),
        weights=smpl.lbs_weights.numpy(), faces=np.asarray(smpl.faces, np.int64),
        parents=smpl.parents.numpy(), name=str(path),
    )


def body_model_from_smpl_arrays(arrays: Mapping[str, Any], source: str) -> BodyModel:
    """Convert SMPL-file arrays to a ``BodyModel`` exactly as smplx does.

    posedirs (V, 3, 207) -> ``posedirs.reshape(-1, 207).T`` = (207, V*3); shapedirs keeps its
    first 10 components; the root's kintree entry (an arbitrary large id in SMPL) becomes -1.
    """
    _check_smpl_arrays(arrays, source)
    j_regressor = arrays["J_regressor"]
    if hasattr(j_regressor, "toarray"):  # scipy sparse
        j_regressor = j_regressor.toarray()
    parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
    parents[0] = -1
    return BodyModel(
        v_template=np.asarray(arrays["v_template"]),
        shapedirs=np.asarray(arrays["shapedirs"])[:, :, :NUM_BETAS],
        posedirs=np.asarray(arrays["posedirs"]).reshape(-1, NUM_POSE_FEATURES).T,
        j_regressor=np.asarray(j_regressor),
        weights=np.asarray(arrays["weights"]),
        faces=np.asarray(arrays["f"]).astype(np.int64),
        parents=parents,
        name=source,
    )


def _check_smpl_arrays(arrays: Mapping[str, Any], source: str) -> None:
    """Raise ``BodyModelError`` for the first missing key or wrong shape, naming both."""
    for key in SMPL_KEYS:
        if key not in arrays:
            raise BodyModelError(_missing_message(source, key))
    shapes = {key: tuple(np.shape(arrays[key])) for key in SMPL_KEYS}
    v_template = shapes["v_template"]
    if len(v_template) != 2 or v_template[1] != 3 or v_template[0] == 0:
        raise BodyModelError(f"{source}: key 'v_template' has shape {v_template}, expected (V, 3)")
    v = v_template[0]
    expected = {
        "posedirs": ((v, 3, NUM_POSE_FEATURES), f"(V, 3, {NUM_POSE_FEATURES})"),
        "J_regressor": ((NUM_JOINTS, v), f"({NUM_JOINTS}, V)"),
        "kintree_table": ((2, NUM_JOINTS), f"(2, {NUM_JOINTS})"),
        "weights": ((v, NUM_JOINTS), f"(V, {NUM_JOINTS})"),
    }
    for key, (shape, text) in expected.items():
        if shapes[key] != shape:
            raise BodyModelError(
                f"{source}: key '{key}' has shape {shapes[key]}, expected {text} with V={v}"
            )
    shapedirs = shapes["shapedirs"]
    if len(shapedirs) != 3 or shapedirs[:2] != (v, 3) or shapedirs[2] < NUM_BETAS:
        raise BodyModelError(
            f"{source}: key 'shapedirs' has shape {shapedirs}, expected (V, 3, K) with V={v} "
            f"and K >= {NUM_BETAS}"
        )
    if len(shapes["f"]) != 2 or shapes["f"][1] != 3:
        raise BodyModelError(f"{source}: key 'f' has shape {shapes['f']}, expected (F, 3)")
    parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
    if not np.array_equal(parents[1:], PARENTS[1:]):
        raise BodyModelError(
            f"{source}: key 'kintree_table' gives parents {parents[1:].tolist()} for joints "
            f"1..23, expected SMPL's {PARENTS[1:].tolist()}"
        )


def _read_npz_key(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:  # object arrays need pickle, which we do not load from .npz
        raise BodyModelError(
            f"{path}: key '{key}' holds Python objects ({exc}); save it as a plain numeric "
            f"array (e.g. a dense J_regressor)"
        ) from exc


def _missing_message(source: Union[str, Path], key: str) -> str:
    return f"{source}: missing key '{key}' (an SMPL model file needs {', '.join(SMPL_KEYS)})"


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(f"{path}: no such body model file")
    return path
