"""Loading SMPL files: fake SMPL-layout .npz/.pkl files built in tmp_path (SMPL is licensed)."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from hmr_ros.body import BodyModelError, load_body_model, load_npz, load_pkl, procedural_body
from hmr_ros.body.loaders import SMPL_KEYS

FIELDS = ("v_template", "shapedirs", "posedirs", "j_regressor", "weights", "faces", "parents")


@pytest.fixture(scope="module")
def body():
    return procedural_body()


@pytest.fixture()
def smpl_arrays(body):
    """The procedural body in the layout of SMPL's released files (more than 10 shape
    components, posedirs V x 3 x 207, kintree_table with SMPL's large root id, uint32 faces)."""
    v = body.num_vertices
    extra = np.random.default_rng(0).normal(0, 1e-3, (v, 3, 6)).astype(np.float32)
    kintree = np.stack([np.r_[4294967295, body.parents[1:]], np.arange(24)]).astype(np.uint32)
    return {
        "v_template": np.array(body.v_template),
        "shapedirs": np.concatenate([body.shapedirs, extra], axis=2),
        "posedirs": np.array(body.posedirs).T.reshape(v, 3, 207),
        "J_regressor": np.array(body.j_regressor),
        "kintree_table": kintree,
        "weights": np.array(body.weights),
        "f": np.array(body.faces).astype(np.uint32),
    }


def write_pkl(path, arrays):
    sparse = pytest.importorskip("scipy.sparse")
    arrays = dict(arrays, J_regressor=sparse.csc_matrix(arrays["J_regressor"]))
    with open(path, "wb") as handle:
        pickle.dump(arrays, handle, protocol=2)
    return path


def assert_same_model(loaded, body):
    for key in FIELDS:
        np.testing.assert_array_equal(getattr(loaded, key), getattr(body, key), err_msg=key)


def test_npz_round_trip(tmp_path, smpl_arrays, body):
    more = np.ones(smpl_arrays["shapedirs"].shape[:2] + (284,), np.float32)
    smpl_arrays["shapedirs"] = np.concatenate([smpl_arrays["shapedirs"], more], axis=2)  # 300
    path = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(path, **smpl_arrays)
    loaded = load_body_model(path)
    assert_same_model(loaded, body)
    assert loaded.name == str(path)
    assert loaded.shapedirs.shape[-1] == 10  # the first 10 of 300 components


def test_npz_posedirs_conversion_matches_smplx(tmp_path, smpl_arrays):
    """(V, 3, 207) -> (207, V*3) exactly as smplx: ``posedirs.reshape(-1, 207).T``."""
    rng = np.random.default_rng(3)
    smpl_arrays["posedirs"] = rng.normal(size=smpl_arrays["posedirs"].shape).astype(np.float32)
    path = tmp_path / "model.npz"
    np.savez(path, **smpl_arrays)
    loaded = load_npz(path)
    np.testing.assert_array_equal(loaded.posedirs, smpl_arrays["posedirs"].reshape(-1, 207).T)
    # the corrective of vertex v, coordinate c, feature p is posedirs_smpl[v, c, p]
    assert loaded.posedirs[5, 3 * 7 + 2] == smpl_arrays["posedirs"][7, 2, 5]


def test_pkl_round_trip_through_smplx(tmp_path, smpl_arrays, body):
    pytest.importorskip("smplx")
    path = write_pkl(tmp_path / "SMPL_NEUTRAL.pkl", smpl_arrays)
    loaded = load_body_model(str(path))
    assert_same_model(loaded, body)


def test_pkl_matches_smplx_reading_the_file_itself(tmp_path, smpl_arrays):
    smplx = pytest.importorskip("smplx")
    path = write_pkl(tmp_path / "SMPL_NEUTRAL.pkl", smpl_arrays)
    loaded = load_pkl(path)
    reference = smplx.SMPL(model_path=str(path))
    np.testing.assert_array_equal(loaded.posedirs, reference.posedirs.numpy())
    np.testing.assert_array_equal(loaded.shapedirs, reference.shapedirs.numpy())
    np.testing.assert_array_equal(loaded.j_regressor, reference.J_regressor.numpy())
    np.testing.assert_array_equal(loaded.parents, reference.parents.numpy())


def test_procedural_by_name():
    assert load_body_model("procedural").name == "procedural(seed=0)"


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_missing_file(tmp_path, suffix):
    with pytest.raises(BodyModelError, match="no such body model file"):
        load_body_model(tmp_path / f"absent{suffix}")


def test_unknown_extension(tmp_path):
    with pytest.raises(BodyModelError, match=r"unknown body model.*\.npz"):
        load_body_model(tmp_path / "model.obj")


@pytest.mark.parametrize("key", SMPL_KEYS)
def test_npz_missing_key_names_file_and_key(tmp_path, smpl_arrays, key):
    path = tmp_path / "model.npz"
    np.savez(path, **{k: v for k, v in smpl_arrays.items() if k != key})
    with pytest.raises(BodyModelError, match=f"model.npz: missing key '{key}'"):
        load_npz(path)


@pytest.mark.parametrize("key", ["weights", "J_regressor"])
def test_pkl_missing_key_names_file_and_key(tmp_path, smpl_arrays, key):
    pytest.importorskip("smplx")
    path = write_pkl(tmp_path / "model.pkl", smpl_arrays)
    arrays = pickle.loads(path.read_bytes())
    del arrays[key]
    path.write_bytes(pickle.dumps(arrays))
    with pytest.raises(BodyModelError, match=f"model.pkl: missing key '{key}'"):
        load_pkl(path)


@pytest.mark.parametrize(
    "key, bad",
    [
        ("posedirs", lambda a: a["posedirs"].reshape(-1, 207).T),  # already smplx layout
        ("shapedirs", lambda a: a["shapedirs"][..., :8]),  # fewer than 10 components
        ("J_regressor", lambda a: a["J_regressor"][:20]),
        ("weights", lambda a: a["weights"][:, :23]),
        ("v_template", lambda a: a["v_template"][:, :2]),
        ("kintree_table", lambda a: a["kintree_table"][:, ::-1]),  # not SMPL's tree
        ("f", lambda a: a["f"][:, :2]),
    ],
)
def test_wrong_shape_names_file_and_key(tmp_path, smpl_arrays, key, bad):
    smpl_arrays[key] = np.ascontiguousarray(bad(smpl_arrays))
    path = tmp_path / "model.npz"
    np.savez(path, **smpl_arrays)
    with pytest.raises(BodyModelError, match=f"model.npz: key '{key}'"):
        load_npz(path)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(BodyModelError, match="model.npz: could not read"):
        load_npz(path)


def test_bad_values_name_the_field(tmp_path, smpl_arrays):
    smpl_arrays["weights"] = smpl_arrays["weights"] * 2  # rows sum to 2
    path = tmp_path / "model.npz"
    np.savez(path, **smpl_arrays)
    with pytest.raises(BodyModelError, match="model.npz: field 'weights'"):
        load_npz(path)


def test_pkl_without_smplx_says_so(tmp_path, smpl_arrays, monkeypatch):
    path = write_pkl(tmp_path / "model.pkl", smpl_arrays)
    monkeypatch.setitem(sys.modules, "smplx", None)  # makes `import smplx` fail
    with pytest.raises(BodyModelError, match="model.pkl: .*needs the 'smplx' package"):
        load_pkl(path)


def test_pkl_with_chumpy_arrays_without_chumpy_says_so(tmp_path):
    pytest.importorskip("smplx")
    if "chumpy" in sys.modules or _importable("chumpy"):
        pytest.skip("chumpy is installed")
    path = tmp_path / "model.pkl"
    # a pickle whose payload references chumpy's array class, like SMPL's released files
    path.write_bytes(b"\x80\x02cchumpy.ch\nCh\nq\x00.")
    with pytest.raises(BodyModelError, match="model.pkl: unpickling needs the 'chumpy' package"):
        load_pkl(path)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
