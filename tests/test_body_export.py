"""Mesh export (.obj, binary .ply) read back by small parsers, and the ``hmr-ros body`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmr_ros import cli
from hmr_ros.body import part_colors, procedural_body, save_mesh


def read_obj(path):
    vertices, colors, faces = [], [], []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "v":
            vertices.append([float(x) for x in fields[1:4]])
            colors.append([float(x) for x in fields[4:7]])
        elif fields and fields[0] == "f":
            faces.append([int(x) - 1 for x in fields[1:4]])
    return np.array(vertices), np.array(colors), np.array(faces)


def read_binary_ply(path):
    data = path.read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:header_end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    elements = [line.split() for line in header if line.startswith("element")]
    counts = {name: int(count) for _, name, count in elements}
    names = [line.split()[-1] for line in header if line.startswith("property ")][:-1]
    vertex_dtype = [(n, "<f4") if n in "xyz" else (n, "u1") for n in names]
    vertices = np.frombuffer(data, dtype=vertex_dtype, count=counts["vertex"], offset=header_end)
    offset = header_end + vertices.nbytes
    faces = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=counts["face"],
                          offset=offset)
    assert offset + faces.nbytes == len(data)
    assert np.all(faces["n"] == 3)
    return vertices, faces["i"]


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def test_obj_round_trip(tmp_path, body):
    path = save_mesh(tmp_path / "body.obj", body.v_template, body.faces)
    vertices, _, faces = read_obj(path)
    np.testing.assert_allclose(vertices, body.v_template, atol=1e-6)
    np.testing.assert_array_equal(faces, body.faces)


def test_obj_with_colors(tmp_path, body):
    colors = part_colors(body.part)
    vertices, read_colors, _ = read_obj(save_mesh(tmp_path / "c.obj", body.v_template,
                                                   body.faces, colors))
    assert len(vertices) == body.num_vertices
    np.testing.assert_allclose(read_colors * 255, colors, atol=0.05)


def test_ply_round_trip_with_colors(tmp_path, body):
    colors = np.random.default_rng(0).uniform(size=(body.num_vertices, 3))  # floats in [0, 1]
    path = save_mesh(tmp_path / "body.PLY", body.v_template, body.faces, colors)
    vertices, faces = read_binary_ply(path)
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    np.testing.assert_array_equal(xyz, body.v_template)
    np.testing.assert_array_equal(faces, body.faces)
    rgb = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)
    np.testing.assert_array_equal(rgb, np.round(colors * 255).astype(np.uint8))


def test_ply_without_colors(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    read_vertices, read_faces = read_binary_ply(save_mesh(tmp_path / "t.ply", vertices, faces))
    assert read_vertices.dtype.names == ("x", "y", "z")
    np.testing.assert_array_equal(read_faces, faces)


def test_part_colors_are_distinct():
    colors = part_colors(np.arange(24))
    assert colors.dtype == np.uint8 and len(np.unique(colors, axis=0)) == 24


@pytest.mark.parametrize(
    "name, vertices, faces, colors, match",
    [
        ("mesh.stl", np.zeros((3, 3)), np.array([[0, 1, 2]]), None, "unknown mesh format"),
        ("mesh.obj", np.zeros((3, 2)), np.array([[0, 1, 2]]), None, "vertices"),
        ("mesh.obj", np.zeros((3, 3)), np.array([[0, 1, 3]]), None, "faces index"),
        ("mesh.obj", np.zeros((3, 3)), np.array([[0.0, 1, 2]]), None, "faces must be integers"),
        ("mesh.ply", np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((2, 3)), "colors"),
    ],
)
def test_save_mesh_rejects_bad_input(tmp_path, name, vertices, faces, colors, match):
    with pytest.raises(ValueError, match=match):
        save_mesh(tmp_path / name, vertices, faces, colors)
    assert not (tmp_path / name).exists()


def test_cli_export_rest_obj(tmp_path, body, capsys):
    out = tmp_path / "rest.obj"
    assert cli.main(["body", "export", "--out", str(out)]) == 0
    vertices, _, faces = read_obj(out)
    np.testing.assert_allclose(vertices, body.v_template, atol=1e-6)
    assert len(faces) == body.num_faces
    assert "wrote" in capsys.readouterr().out


def test_cli_export_random_pose_and_betas_ply(tmp_path, body):
    out_a, out_b = tmp_path / "a.ply", tmp_path / "b.ply"
    argv = ["body", "export", "--model", "procedural", "--pose", "random", "--seed", "3",
            "--betas", "2,0,0,0,0,0,0,0,0,0.5", "--part-colors"]
    assert cli.main(argv + ["--out", str(out_a)]) == 0
    assert cli.main(argv + ["--out", str(out_b)]) == 0
    vertices, faces = read_binary_ply(out_a)
    assert len(vertices) == body.num_vertices and len(faces) == body.num_faces
    assert out_a.read_bytes() == out_b.read_bytes()  # same seed, same file
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    assert np.abs(xyz - body.v_template).max() > 0.05  # posed and reshaped
    assert np.ptp(xyz[:, 1]) > 1.5


def test_cli_info(capsys):
    assert cli.main(["body", "info"]) == 0
    out = capsys.readouterr().out
    assert "vertices: 5424" in out and "joints:   24" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--betas", "1,x"], "--betas expects comma-separated numbers"),
        (["--betas", ",".join(["1"] * 11)], "at most 10"),
        (["--model", "missing.npz"], "no such body model file"),
        (["--out-format-is-in-the-name"], None),
    ],
)
def test_cli_errors(tmp_path, capsys, argv, match):
    argv = ["body", "export", "--out", str(tmp_path / "x.obj")] + argv
    if match is None:  # argparse usage errors exit with status 2
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        return
    assert cli.main(argv) == 1
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x.obj").exists()


def test_cli_commands_are_registered_in_one_table():
    parser = cli.build_parser()
    for group, commands in cli.COMMANDS.items():
        if isinstance(commands, tuple):  # top-level command: its own help works
            sub = parser._subparsers._group_actions[0].choices[group]
            assert sub.get_default("run") is commands[2]
            continue
        required = {("body", "export"): ["--out", "x.obj"], ("body", "faces"): ["--out", "f.cdr"],
                    ("bag", "make-sample"): ["out"], ("bag", "info"): ["bag"],
                ("detector", "run"): ["x.png", "--out", "o"],
                ("convert", "3dpw"): ["s.pkl", "--images", "d", "--out", "b"],
                ("convert", "spin"): ["a.npz", "--images", "d", "--out", "b"],
                ("convert", "synthetic"): ["--num", "3", "--out", "b"]}
        for name in commands:
            args = parser.parse_args([group, name, *required.get((group, name), [])])
            assert args.run is commands[name][2]


def test_python_dash_m_entry_point(tmp_path):
    out = tmp_path / "x.obj"
    root = Path(cli.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "hmr_ros.cli", "body", "export", "--out",
                             str(out)], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
