"""`fastdis data make | list | show` on CI-sized look-alikes, and the files they write."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fastdis.cli import app
from fastdis.data import load_dataset


def test_make_small_dsprites_and_shapes3d_then_list_and_show(tmp_path):
    runner = CliRunner()
    made = runner.invoke(app, ["data", "make", "dsprites", "--small", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    assert "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz" in made.stdout
    made = runner.invoke(app, ["data", "make", "shapes3d", "--small", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output

    dsprites = load_dataset("dsprites_full", data_dir=tmp_path)
    assert dsprites.num_factors == 5 and min(dsprites.factor_sizes) >= 2  # quickstart needs all 5
    shapes = load_dataset("shapes3d", data_dir=tmp_path)
    assert shapes.factor_sizes == (4, 4, 4, 2, 4, 5)
    import h5py

    with h5py.File(tmp_path / "3dshapes" / "3dshapes.h5") as handle:  # the public file's layout
        assert handle["images"].dtype == np.uint8 and handle["images"].shape[1:] == (64, 64, 3)
        labels = handle["labels"][...]
    assert labels.dtype == np.float64 and labels.shape == (2560, 6)
    np.testing.assert_allclose(labels[-1], [0.75, 0.75, 0.75, 1.25, 3.0, 30.0])
    # the hues are visible: the floor (bottom rows) changes with factor 0 only
    pair = shapes.sample_observations_from_factors([[0, 0, 0, 0, 0, 2], [1, 0, 0, 0, 0, 2]],
                                                   np.random.RandomState(0))
    assert np.abs(pair[0, -3:] - pair[1, -3:]).mean() > 0.1
    np.testing.assert_array_equal(pair[0, :2], pair[1, :2])  # the wall stays

    listed = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)],
                           env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "shapes3d" in line)
    assert "yes" in row and "10x10x10x8x4x15" in row
    assert "no (6 missing)" in next(line for line in listed.stdout.splitlines()
                                    if "smallnorb" in line)

    grid = tmp_path / "grid.png"
    shown = runner.invoke(app, ["data", "show", "color_dsprites", "--data-dir", str(tmp_path),
                                "--out", str(grid), "--columns", "6"])
    assert shown.exit_code == 0, shown.output
    with Image.open(grid) as picture:
        assert picture.size == (110 + 6 * 66, 5 * 66)  # one row per factor


def test_show_missing_data_fails_with_the_loader_message(tmp_path):
    result = CliRunner().invoke(app, ["data", "show", "mpi3d_real", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "mpi3d_real.npz" in result.stderr and "not found" in result.stderr


def test_make_is_deterministic(tmp_path):
    from fastdis.data import make_dsprites

    first = make_dsprites(tmp_path / "a", small=True).read_bytes()
    assert make_dsprites(tmp_path / "b", small=True).read_bytes() == first
