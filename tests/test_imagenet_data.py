"""Tiny ImageNet and downscaled ImageNet loaders on small data the tests write in each
dataset's layout: labels, shapes, value range, and clear errors naming a missing path."""
import pickle

import numpy as np
import pytest
import torch

from lirpa_diffai.data import DatasetNotFoundError
from lirpa_diffai.imagenet import load_downscaled_imagenet, load_tiny_imagenet

WNIDS = ["n09999999", "n01443537", "n02000000"]  # sorted: n01443537, n02000000, n09999999


def raw_decode(path):
    """The tests' "JPEG" files hold raw (4, 4, 3) uint8 pixels."""
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(4, 4, 3)


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.full((4, 4, 3), value, np.uint8).tobytes())


def tiny_imagenet(root):
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for c, wnid in enumerate(WNIDS):
        for i in range(2):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 10 * c + i)
    notes = []
    for i, wnid in enumerate(["n02000000", "n09999999", "n01443537", "n02000000"]):
        write_image(root / "val" / "images" / f"val_{i}.JPEG", 100 + i)
        notes.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t3\t3")
    (root / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    return root


def test_tiny_imagenet_labels_follow_the_sorted_wnids(tmp_path):
    root = tiny_imagenet(tmp_path / "tiny-imagenet-200")
    train = load_tiny_imagenet(root, "train", decode=raw_decode)
    x, y = train.tensors
    assert x.shape == (6, 3, 4, 4) and x.dtype == torch.float32
    # n01443537 (label 0) is the second line of wnids.txt: its images hold 10, 11
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    assert x[:, 0, 0, 0].mul(255).round().tolist() == [10, 11, 20, 21, 0, 1]
    test = load_tiny_imagenet(root, "test", decode=raw_decode)
    assert test.tensors[1].tolist() == [1, 2, 0, 1]
    assert test.tensors[0][:, 2, 3, 3].mul(255).round().tolist() == [100, 101, 102, 103]
    assert len(load_tiny_imagenet(root, "train", limit=3, decode=raw_decode)) == 3


def test_tiny_imagenet_missing_paths_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nowhere")):
        load_tiny_imagenet(tmp_path / "nowhere")
    root = tiny_imagenet(tmp_path / "t")
    (root / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(DatasetNotFoundError, match="val_2.JPEG"):
        load_tiny_imagenet(root, "test", decode=raw_decode)
    (root / "wnids.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="wnids.txt"):
        load_tiny_imagenet(root, decode=raw_decode)


def test_tiny_imagenet_unknown_class_in_the_annotations_names_the_line(tmp_path):
    root = tiny_imagenet(tmp_path / "t")
    notes = root / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_9.JPEG\tn00000001\t0\t0\t3\t3\n")
    with pytest.raises(ValueError, match="line 5: class 'n00000001'"):
        load_tiny_imagenet(root, "test", decode=raw_decode)


def test_tiny_imagenet_decodes_real_jpegs_with_pillow(tmp_path):
    image = pytest.importorskip("PIL.Image")
    root = tiny_imagenet(tmp_path / "t")
    for path in root.glob("train/*/images/*.JPEG"):
        image.new("L", (64, 64), 128).save(path, format="JPEG")  # grayscale: becomes RGB
    x, _ = load_tiny_imagenet(root, "train").tensors
    assert x.shape == (6, 3, 64, 64) and (x - 128 / 255).abs().max() < 0.02


def test_without_pillow_the_error_says_what_to_install(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name.startswith("PIL"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    root = tiny_imagenet(tmp_path / "t")
    with pytest.raises(ImportError, match="pip install pillow"):
        load_tiny_imagenet(root)


def downscaled_batch(n, side, first_label, rng):
    return {"data": rng.integers(0, 256, (n, 3 * side * side), dtype=np.uint8),
            "labels": list(range(first_label, first_label + n)), "mean": np.zeros(3 * side * side)}


def write_pickle(path, batch):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch))


def test_downscaled_imagenet_reads_the_ten_batches_and_val_data(tmp_path):
    rng = np.random.default_rng(0)
    batches = [downscaled_batch(2, 8, 1 + 2 * i, rng) for i in range(10)]
    for i, batch in enumerate(batches, 1):
        write_pickle(tmp_path / "Imagenet8_train" / f"train_data_batch_{i}", batch)
    val = downscaled_batch(3, 8, 998, rng)
    (tmp_path / "Imagenet8_val").mkdir()
    np.savez(tmp_path / "Imagenet8_val" / "val_data.npz", data=val["data"], labels=val["labels"])
    x, y = load_downscaled_imagenet(tmp_path, "train").tensors
    assert x.shape == (20, 3, 8, 8) and y.tolist() == list(range(20))  # 1-based on disk
    first = batches[0]["data"][1].reshape(3, 8, 8)  # channel planes, as CIFAR's rows
    assert torch.equal(x[1].mul(255).round().to(torch.uint8), torch.from_numpy(first))
    x_test, y_test = load_downscaled_imagenet(tmp_path, "test").tensors
    assert x_test.shape == (3, 3, 8, 8) and y_test.tolist() == [997, 998, 999]
    assert len(load_downscaled_imagenet(tmp_path, "train", limit=3)) == 3


def test_downscaled_imagenet_missing_paths_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "none")):
        load_downscaled_imagenet(tmp_path / "none")
    write_pickle(tmp_path / "train_data_batch_1", downscaled_batch(2, 8, 1, np.random.default_rng(0)))
    with pytest.raises(DatasetNotFoundError, match="train_data_batch_2"):
        load_downscaled_imagenet(tmp_path, "train")
    assert len(load_downscaled_imagenet(tmp_path, "train", limit=2)) == 2


def test_downscaled_imagenet_refuses_rows_that_are_not_square_planes(tmp_path):
    batch = {"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}
    write_pickle(tmp_path / "val_data", batch)
    with pytest.raises(ValueError, match="not 3 square channel planes"):
        load_downscaled_imagenet(tmp_path, "test")
