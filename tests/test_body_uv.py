"""The UV atlas: 24 cylindrical part charts on a 5x5 grid, and its rasterised part map."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.body import BodyModel, atlas_part_map, procedural_body, texel_index
from hmr_ros.body.uv_atlas import GRID, MARGIN


@pytest.fixture(scope="module", params=[0, 5], ids=["mean", "seed5"])
def body(request):
    return procedural_body(seed=request.param)


def cell_of_texels(size: int):
    """Which grid cell each texel row / column lies in (texel centre u = col / (S-1))."""
    centre = np.arange(size) / (size - 1)
    return np.minimum((centre * GRID).astype(int), GRID - 1)


def test_texel_index_convention():
    uv = np.array([[0.0, 0.0], [1.0, 1.0], [0.25, 0.75], [0.5 / 63, 0.0]])
    # rows from v, columns from u; round half up
    np.testing.assert_array_equal(texel_index(uv, 64), [[0, 0], [63, 63], [47, 16], [0, 1]])


def test_uv_in_unit_square_and_in_own_cell(body):
    atlas = body.uv_atlas()
    assert atlas.uv.shape == (body.num_vertices, 2) and atlas.uv.dtype == np.float32
    assert atlas.uv.min() >= 0.0 and atlas.uv.max() <= 1.0
    cell = np.floor(atlas.uv * GRID).astype(int)  # column, row
    np.testing.assert_array_equal(cell[:, 1] * GRID + cell[:, 0], body.part)
    # a margin inside the cell: charts never touch
    inside = atlas.uv * GRID - cell
    assert inside.min() >= MARGIN - 1e-6 and inside.max() <= 1 - MARGIN + 1e-6


def test_charts_use_their_cell(body):
    """Cylindrical projection spreads each part over its whole cell (angle and length)."""
    local = body.uv_atlas().local
    for part in range(24):
        sel = body.part == part
        assert np.ptp(local[sel, 0]) > 0.9 and np.ptp(local[sel, 1]) > 0.99


@pytest.mark.parametrize("size", [32, 64, 127, 256])
def test_vertex_texels_belong_to_their_part(body, size):
    part_map = body.atlas_part_map(size)
    rows, cols = texel_index(body.uv_atlas().uv, size).T
    np.testing.assert_array_equal(part_map[rows, cols], body.part)


@pytest.mark.parametrize("size", [32, 64, 256])
def test_charts_do_not_overlap(body, size):
    """Every texel of part i lies in cell i, so distinct parts never share a texel."""
    part_map = body.atlas_part_map(size)
    assert part_map.shape == (size, size) and part_map.min() >= -1 and part_map.max() < 24
    cells = cell_of_texels(size)
    expected_cell = cells[:, None] * GRID + cells[None, :]  # S x S, row-major cells
    used = part_map >= 0
    np.testing.assert_array_equal(part_map[used], expected_cell[used])
    assert np.all(part_map[expected_cell == 24] == -1)  # the 25th cell stays empty


def test_every_part_has_texels_at_64(body):
    counts = np.bincount(body.atlas_part_map(64)[body.atlas_part_map(64) >= 0], minlength=24)
    assert counts.min() >= 20
    # whole tubes are charted: each chart covers most of its cell's inner square
    chart_side = (1 - 2 * MARGIN) / GRID * 63
    assert counts.min() > 0.8 * chart_side**2


def test_chart_has_no_hole_at_the_seam():
    """The u = 0/1 seam is closed by drawing seam triangles shifted by one turn."""
    body = procedural_body()
    size = 128
    part_map = body.atlas_part_map(size)
    for part in range(24):
        rows, cols = np.nonzero(part_map == part)
        mid_rows = (rows > np.percentile(rows, 20)) & (rows < np.percentile(rows, 80))
        # each chart row in the middle of the chart is one unbroken run of texels
        for row in np.unique(rows[mid_rows]):
            run = np.sort(cols[rows == row])
            assert np.all(np.diff(run) == 1), (part, row)


def test_part_map_is_cached_and_read_only():
    body = procedural_body()
    first = atlas_part_map(body, 64)
    assert atlas_part_map(body, 64) is first and body.uv_atlas() is body.uv_atlas()
    with pytest.raises(ValueError):
        first[0, 0] = 3
    with pytest.raises(ValueError, match="size"):
        body.atlas_part_map(1)


def test_atlas_of_a_model_with_cross_part_faces():
    """User SMPL meshes have faces spanning two parts: those belong to no chart."""
    body = procedural_body()
    # relabel half of the upper arm's tube as forearm by moving its weights
    weights = np.array(body.weights)
    upper_arm = np.nonzero(body.part == 16)[0]
    moved = upper_arm[len(upper_arm) // 2 :]
    weights[moved] = 0.0
    weights[moved, 18] = 1.0
    model = BodyModel(
        v_template=body.v_template, shapedirs=body.shapedirs, posedirs=body.posedirs,
        j_regressor=body.j_regressor, weights=weights, faces=body.faces, name="relabelled",
    )
    atlas = model.uv_atlas()
    face_part = model.part[model.faces]
    crossing = ~(face_part == face_part[:, :1]).all(axis=1)
    assert crossing.any() and len(atlas.faces) == len(model.faces) - crossing.sum()
    part_map = model.atlas_part_map(64)
    rows, cols = texel_index(atlas.uv, 64).T
    np.testing.assert_array_equal(part_map[rows, cols], model.part)


def test_atlas_part_labels_inverts_the_chart_placement():
    from hmr_ros.body.uv_atlas import atlas_part_labels, chart_placement

    offsets, scale = chart_placement(24)
    rng = np.random.default_rng(0)
    parts = rng.integers(0, 24, size=(2, 5, 7))
    local = rng.uniform(0, 1, size=(2, 5, 7, 2))
    uv = offsets[parts] + scale * local  # 2 x 5 x 7 x 2
    fg = rng.uniform(size=(2, 5, 7)) > 0.3
    iuv = np.concatenate([fg[:, None].astype(np.float32),
                          uv.transpose(0, 3, 1, 2).astype(np.float32)], axis=1)
    labels = atlas_part_labels(iuv)
    np.testing.assert_array_equal(labels, np.where(fg, parts + 1, 0))
    iuv[0, 0, 0, 0], iuv[0, 1, 0, 0] = 1.0, np.nan  # foreground, undefined U: background
    labels = atlas_part_labels(iuv)
    assert labels[0, 0, 0] == 0
    np.testing.assert_array_equal(labels[1], np.where(fg, parts + 1, 0)[1])
