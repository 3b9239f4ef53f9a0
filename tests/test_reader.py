"""`load_schema_dataset`: builder folders are read afresh after a rebuild in place (datasets 5.2 caches a folder whose
card declares `configs` by pattern, and returns the old rows), splits are found from the file names, Hub-style names
go to `load_dataset` unchanged."""

from __future__ import annotations

import pytest

from trl_mig.datasets_builders import synthetic
from trl_mig.datasets_builders.reader import load_schema_dataset, local_data_files


def build(out, n, seed, num_test=0):
    synthetic.build(synthetic.BuildArguments(output_dir=str(out), num_train=n, num_test=num_test, seed=seed,
                                             overwrite=True))  # fmt: skip


def test_rebuilt_folder_is_read_afresh(tmp_path):
    first, second = tmp_path / "a" / "pool", tmp_path / "b" / "pool"  # same name, as two demo runs would have
    build(first, 3, seed=0)
    assert load_schema_dataset(str(first), split="train").num_rows == 3
    build(first, 5, seed=1)  # rebuilt in place
    rows = load_schema_dataset(str(first), split="train")
    assert rows.num_rows == 5 and rows[0]["id"] == "synthetic-train-000000"
    build(second, 2, seed=2)
    assert load_schema_dataset(str(second), split="train").num_rows == 2
    image = rows[0]["images"][0]
    assert image.size == tuple(rows[0]["image_sizes"][0])  # the Image feature survives the parquet builder


def test_splits_come_from_file_names(tmp_path):
    out = tmp_path / "set"
    build(out, 3, seed=0, num_test=2)
    assert sorted(local_data_files(out)) == ["test", "train"]
    both = load_schema_dataset(str(out))
    assert {k: v.num_rows for k, v in both.items()} == {"train": 3, "test": 2}
    with pytest.raises(ValueError, match=r"has no split 'validation'; it has \['test', 'train'\]"):
        load_schema_dataset(str(out), split="validation")
    assert local_data_files(tmp_path) is None
