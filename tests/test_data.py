"""Datasets, archive handling and the device-side loader (nasflow.data).

The CIFAR archives built here are tiny *test fixtures* in the official layouts (a few records of
made-up pixels), used only to exercise the parsers and the safety checks.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import operator
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import nasflow.data.cifar as cifar
import nasflow.data.fashion_mnist as fmnist
from nasflow.data import (
    ArrayDataset,
    DatasetInfo,
    FolderDataset,
    available_datasets,
    dataset_info,
    load_dataset,
    make_loader,
    register_dataset,
    search_split,
)
from nasflow.data.archives import md5_file
from nasflow.data.loader import augment_batch
from nasflow.errors import DataError
from nasflow.params import AugmentParams, DatasetParams

CPU = torch.device("cpu")
NO_AUG = AugmentParams(crop_padding=0, flip=False, cutout=0)


# ---------------------------------------------------------------- registry and static info

def test_registry_and_static_info(tmp_path):
    assert available_datasets() == ["digits", "fashion_mnist", "cifar10", "cifar100", "imagenet"]
    empty = tmp_path / "nothing"
    c10 = dataset_info(DatasetParams(name="cifar10", root=empty, download=False))
    assert (c10.num_classes, c10.in_channels, c10.image_size) == (10, 3, 32)
    assert c10.mean == (0.49139968, 0.48215827, 0.44653124)
    assert dataset_info(DatasetParams(name="cifar100", root=empty)).std == (0.2673, 0.2564, 0.2762)
    inet = dataset_info(DatasetParams(name="imagenet", root=empty))
    assert (inet.num_classes, inet.in_channels, inet.image_size) == (1000, 3, 224)
    assert not empty.exists()  # static metadata touches no files
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.0,), std=(1.0,))


def test_register_a_new_dataset(monkeypatch):
    from nasflow.data import DATASETS

    monkeypatch.setitem(DATASETS, "dummy", None)  # restored (removed) after the test
    del DATASETS["dummy"]

    @register_dataset("dummy", num_classes=3, in_channels=1, image_size=4, mean=(0.5,), std=(0.5,))
    def load(params, split):
        n = 5 if split == "train" else 2
        return np.zeros((n, 1, 4, 4), np.uint8), np.arange(n) % 3

    assert "dummy" in available_datasets()
    ds = load_dataset(DatasetParams(name="dummy"), "train")
    assert len(ds) == 5
    assert ds.info.num_classes == 3
    assert ds.labels.dtype == torch.int64


def test_unknown_dataset_is_an_error_at_config_load_and_use(tmp_path):
    """The name is checked against the registry by the config loader (nasflow.params sits
    below nasflow.data and does not import it) and again where the registry is used."""
    from nasflow.config import load_config
    from nasflow.errors import ParamsError

    path = tmp_path / "d.yaml"
    path.write_text("dataset: {name: cifar11}\nmethod: {name: darts}\n")
    with pytest.raises(ParamsError, match="cifar11") as err:
        load_config([path])
    assert "dataset.name" in str(err.value)
    assert "d.yaml" in str(err.value)
    with pytest.raises(DataError, match="cifar11"):
        dataset_info(DatasetParams(name="cifar11"))


# ---------------------------------------------------------------- digits

def test_digits_split_is_fixed_disjoint_and_stratified():
    from sklearn.datasets import load_digits

    params = DatasetParams(name="digits")
    train, test = load_dataset(params, "train"), load_dataset(params, "test")
    assert (len(train), len(test)) == (1347, 450)
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64
        assert ds.images.shape[1:] == (1, 8, 8)
        assert ds.images.is_contiguous()
        assert int(ds.images.max()) == 255
        assert set(ds.labels.tolist()) == set(range(10))
    # Train + test is exactly the whole set, each image once (a partition, hence disjoint).
    full = np.round(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, 64)
    both = torch.cat([train.images, test.images]).reshape(-1, 64).numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, full))
    # Stratified: every class has ~25% of its images in the test split.
    all_counts = np.bincount(load_digits().target, minlength=10)
    test_counts = np.bincount(test.labels.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * all_counts) <= 1)
    # Fixed: the same split every time.
    assert torch.equal(load_dataset(params, "test").images, test.images)
    # The hard-coded normalisation is the train split's.
    pixels = train.images.double() / 255
    assert train.info.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert train.info.std[0] == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-9)


def test_digits_split_cache_is_the_computed_split_and_survives_corruption(tmp_path, monkeypatch):
    from nasflow.data import digits

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    computed = digits._compute_split()
    first = digits.digits_split()  # computes and writes the cache
    cache = digits._cache_file()
    assert cache.parent == tmp_path / "nasflow"
    assert cache.is_file()
    for split in ("train", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(first[split], computed[split], strict=True))
    for damage in (None, b"not an npz", b""):
        if damage is not None:
            cache.write_bytes(damage)
        again = digits.digits_split()
        for split in ("train", "test"):
            for got, want in zip(again[split], computed[split], strict=True):
                assert got.dtype == want.dtype
                assert np.array_equal(got, want)
        assert np.load(cache, allow_pickle=False)["x_test"].shape == (450, 1, 8, 8)


def test_limits_keep_the_first_examples():
    full = load_dataset(DatasetParams(name="digits"), "train")
    small = load_dataset(DatasetParams(name="digits", limit_train=100, limit_test=20), "train")
    assert len(small) == 100
    assert torch.equal(small.images, full.images[:100])
    assert len(load_dataset(DatasetParams(name="digits", limit_test=20), "test")) == 20


# ---------------------------------------------------------------- fashion-mnist

def _idx(array: np.ndarray) -> bytes:
    return bytes((0, 0, 8, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.skipif(not fmnist.DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian(tmp_path):
    params = DatasetParams(name="fashion_mnist", root=tmp_path, download=False)
    train, test = load_dataset(params, "train"), load_dataset(params, "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    pixels = train.images.double() / 255
    assert train.info.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert train.info.std[0] == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-9)


def test_idx_files_in_root_come_first_and_are_validated(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", tmp_path / "no-debian")
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    images = np.arange(12 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(12, 28, 28)
    labels = np.arange(12, dtype=np.uint8) % 10
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))  # uncompressed works too
    params = DatasetParams(name="fashion_mnist", root=tmp_path, download=False)
    ds = load_dataset(params, "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == labels.tolist()

    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:5]))
    with pytest.raises(DataError, match="5 labels for 12 images"):
        load_dataset(params, "test")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + _idx(labels)[4:])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*not an IDX file"):
        load_dataset(params, "test")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels)[:-3])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*truncated"):
        load_dataset(params, "test")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels))
    gz = gzip.compress(_idx(images))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz.*corrupt or truncated"):
        load_dataset(params, "test")
    # No files anywhere and no download: says where to put them.
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*fashion_mnist"):
        load_dataset(params, "train")


# ---------------------------------------------------------------- loader

def _id_dataset(n: int = 50, size: int = 8, channels: int = 1) -> ArrayDataset:
    """Test-only dataset whose label is the example's index, so batches reveal their indices."""
    g = torch.Generator().manual_seed(0)
    info = DatasetInfo("ids", n, channels, size, (0.5,) * channels, (0.25,) * channels)
    images = torch.randint(1, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return ArrayDataset(images, torch.arange(n), info)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_loader_normalises_and_keeps_order_without_shuffle():
    ds = load_dataset(DatasetParams(name="digits"), "test")
    loader = make_loader(ds, None, batch_size=64, device=CPU, augment=None, shuffle=False,
                         drop_last=False, seed=0)
    assert len(loader) == 8
    assert loader.num_examples == 450
    batches = _epoch(loader, 0)
    x, y = batches[0]
    assert x.dtype == torch.float32
    assert x.shape == (64, 1, 8, 8)
    assert y.dtype == torch.int64
    assert batches[-1][0].shape[0] == 450 - 7 * 64
    mean, std = ds.info.mean[0], ds.info.std[0]
    torch.testing.assert_close(x * std + mean, ds.images[:64].float() / 255, atol=1e-6, rtol=0)
    assert torch.equal(y, ds.labels[:64])
    assert abs(torch.cat([b[0] for b in batches]).mean().item()) < 0.1  # roughly zero-mean
    dropped = make_loader(ds, None, batch_size=64, device=CPU, augment=None, shuffle=False,
                          drop_last=True, seed=0)
    assert len(dropped) == 7
    assert len(list(dropped)) == 7


def test_loader_covers_each_index_once_and_is_reproducible():
    ds = _id_dataset(50)
    aug = AugmentParams(crop_padding=2, flip=True, cutout=3)
    args = {"batch_size": 16, "device": CPU, "augment": aug, "shuffle": True, "drop_last": False, "seed": 7}
    subset = torch.arange(5, 45)
    loader = make_loader(ds, subset, **args)
    assert len(loader) == 3
    assert loader.num_examples == 40
    e0 = _epoch(loader, 0)
    seen = torch.cat([y for _, y in e0])
    assert sorted(seen.tolist()) == list(range(5, 45))
    assert seen.tolist() != list(range(5, 45))  # shuffled
    # A fresh loader (a resumed run) replays epoch 0 exactly; epoch 1 differs in order and pixels.
    again = _epoch(make_loader(ds, subset, **args), 0)
    for (x0, y0), (x1, y1) in zip(e0, again, strict=True):
        assert torch.equal(x0, x1)
        assert torch.equal(y0, y1)
    e1 = _epoch(loader, 1)
    assert not torch.equal(torch.cat([y for _, y in e1]), seen)
    assert sorted(torch.cat([y for _, y in e1]).tolist()) == list(range(5, 45))
    # Same example in epochs 0 and 1 gets different augmentation.
    x0 = torch.cat([x for x, _ in e0])[seen.argsort()]
    x1 = torch.cat([x for x, _ in e1])[torch.cat([y for _, y in e1]).argsort()]
    assert not torch.equal(x0, x1)
    # Another seed, another order.
    other = _epoch(make_loader(ds, subset, **{**args, "seed": 8}), 0)
    assert not torch.equal(torch.cat([y for _, y in other]), seen)


def test_search_split_loaders_stay_in_their_halves():
    ds = _id_dataset(50)
    w_idx, a_idx = search_split(len(ds), 0.5)
    for idx in (w_idx, a_idx):
        loader = make_loader(ds, idx, batch_size=8, device=CPU, augment=NO_AUG, shuffle=True,
                             drop_last=True, seed=0)
        got = torch.cat([y for _, y in _epoch(loader, 3)])
        assert len(loader) == 3
        assert set(got.tolist()) <= set(idx.tolist())
        assert len(set(got.tolist())) == 24


def test_search_split():
    w, a = search_split(10, 0.5)
    assert w.tolist() == [0, 1, 2, 3, 4]
    assert a.tolist() == [5, 6, 7, 8, 9]
    w, a = search_split(7, 0.3)
    assert w.tolist() == [0, 1]
    assert a.tolist() == [2, 3, 4, 5, 6]
    w, a = search_split(7, 1.0)
    assert w.tolist() == list(range(7))
    assert a.numel() == 0
    assert a.dtype == torch.int64


def _valid_crops(image: np.ndarray, pad: int, flip: bool) -> list[np.ndarray]:
    """All images RandomCrop(padding=pad) (+ optional flip) can produce from ``image`` (C, H, W)."""
    _, H, W = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    crops = [padded[:, oy:oy + H, ox:ox + W] for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)]
    return crops + [c[:, :, ::-1] for c in crops] if flip else crops


@pytest.mark.parametrize("flip", [False, True])
def test_loader_crop_and_flip_produce_valid_changed_images(flip):
    ds = _id_dataset(40, channels=2)
    aug = AugmentParams(crop_padding=2, flip=flip, cutout=0)
    loader = make_loader(ds, None, batch_size=40, device=CPU, augment=aug, shuffle=True,
                         drop_last=False, seed=1)
    (x, y), = _epoch(loader, 0)
    mean, std = torch.tensor(ds.info.mean).view(1, -1, 1, 1), torch.tensor(ds.info.std).view(1, -1, 1, 1)
    pixels = torch.round((x * std + mean) * 255).to(torch.uint8).numpy()
    changed = mirrored = 0
    for out, label in zip(pixels, y.tolist(), strict=True):
        original = ds.images[label].numpy()
        assert any(np.array_equal(out, c) for c in _valid_crops(original, 2, flip))
        changed += not np.array_equal(out, original)
        mirrored += not any(np.array_equal(out, c) for c in _valid_crops(original, 2, False))
    assert changed > 30  # 1/25 of crops are the identity (less with flips)
    assert (mirrored > 10) if flip else (mirrored == 0)  # about half are flipped


def test_augment_batch_against_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (3, 2, 6, 7), dtype=torch.uint8, generator=g)
    scale, shift = torch.ones(1, 2, 1, 1) / 255, torch.zeros(1, 2, 1, 1)
    # plan columns: crop offset y, x, flip, cutout centre y, x
    plan = torch.tensor([[0, 3, 0, 0, 0], [2, 1, 1, 0, 0], [3, 3, 1, 0, 0]])
    out = augment_batch(x, plan, AugmentParams(crop_padding=2, flip=True, cutout=0), scale, shift)
    for i, (oy, ox, f, _, _) in enumerate(plan.tolist()):
        ref = np.pad(x[i].numpy(), ((0, 0), (2, 2), (2, 2)))[:, oy:oy + 6, ox:ox + 7]
        ref = ref[:, :, ::-1] if f else ref
        np.testing.assert_array_equal(np.round(out[i].numpy() * 255).astype(np.uint8), ref)


def test_cutout_zeroes_a_clipped_square_after_normalisation():
    x = torch.full((3, 3, 32, 32), 255, dtype=torch.uint8)
    info = dataset_info(DatasetParams(name="cifar10"))
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    plan = torch.tensor([[0, 0, 0, 16, 10], [0, 0, 0, 0, 0], [0, 0, 0, 31, 5]])
    out = augment_batch(x, plan, AugmentParams(crop_padding=0, flip=False, cutout=16),
                        1 / (255 * std), mean / std, channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    zero = out == 0
    assert (zero.all(dim=1) == zero.any(dim=1)).all()  # same square in every channel
    square = torch.zeros(32, 32, dtype=torch.bool)
    square[8:24, 2:18] = True
    assert torch.equal(zero[0, 0], square)  # 16x16 centred at (16, 10)
    assert zero[1, 0].sum() == 8 * 8
    assert zero[1, 0, :8, :8].all()
    assert zero[2, 0].sum() == 9 * 13
    assert zero[2, 0, 23:, :13].all()
    assert (out[~zero] > 0).all()  # everything else is the normalised white pixel
    # Through the loader: every image gets exactly one (possibly clipped) square.
    ds = ArrayDataset(x[:1].repeat(64, 1, 1, 1), torch.zeros(64, dtype=torch.int64), info)
    loader = make_loader(ds, None, batch_size=64, device=CPU, shuffle=False, drop_last=False, seed=0,
                         augment=AugmentParams(crop_padding=0, flip=False, cutout=16))
    (xb, _), = _epoch(loader, 0)
    counts = (xb[:, 0] == 0).sum(dim=(1, 2))
    assert (counts >= 64).all()
    assert (counts <= 256).all()
    assert (counts == 256).any()


def test_channels_last_and_device_data_off_give_the_same_batches():
    ds = _id_dataset(30, channels=3)
    aug = AugmentParams(crop_padding=1, flip=True, cutout=2)
    common = {"batch_size": 8, "device": CPU, "augment": aug, "shuffle": True, "drop_last": False, "seed": 5}
    a = _epoch(make_loader(ds, None, **common), 2)
    b = _epoch(make_loader(ds, None, channels_last=True, device_data=False, **common), 2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_matches_cpu():
    ds = _id_dataset(30, channels=3)
    common = {"batch_size": 8, "augment": AugmentParams(crop_padding=2, flip=True, cutout=4), "shuffle": True,
                  "drop_last": False, "seed": 5}
    cpu = _epoch(make_loader(ds, None, device=CPU, **common), 1)
    gpu = _epoch(make_loader(ds, None, device=torch.device("cuda"), **common), 1)
    for (xa, ya), (xb, yb) in zip(cpu, gpu, strict=True):
        assert xb.device.type == "cuda"
        assert torch.equal(ya, yb.cpu())
        torch.testing.assert_close(xa, xb.cpu())


# ---------------------------------------------------------------- CIFAR

def _records(n: int, labels_per_record: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    labels = g.integers(0, 10, (n, labels_per_record), dtype=np.uint8)
    pixels = g.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes(), labels[:, -1], pixels


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _c10_binary(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    members, labels, pixels = {}, [], []
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        data, lab, pix = _records(3, 1, seed=i)
        members[f"cifar-10-batches-bin/{name}"] = data
        labels.append(lab)
        pixels.append(pix)
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    return _tar(path, members), np.concatenate(labels), np.concatenate(pixels)


def test_cifar10_binary_archive_in_root(tmp_path):
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _, labels, pixels = _c10_binary(root / "cifar10" / "cifar-10-binary.tar.gz")
    params = DatasetParams(name="cifar10", root=root, download=False)
    train, test = load_dataset(params, "train"), load_dataset(params, "test")
    assert train.images.shape == (15, 3, 32, 32)
    assert test.images.shape == (3, 3, 32, 32)
    assert train.labels.tolist() == labels[:15].tolist()
    assert test.labels.tolist() == labels[15:].tolist()
    assert torch.equal(train.images.reshape(15, -1), torch.from_numpy(pixels[:15]))  # R, G, B planes
    assert (root / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    # The extracted folder is used from now on, even without the archive.
    (root / "cifar10" / "cifar-10-binary.tar.gz").unlink()
    assert torch.equal(load_dataset(params, "test").images, test.images)


def test_cifar100_binary_via_archive_param(tmp_path):
    train, train_labels, train_pixels = _records(4, 2, seed=1)
    test, test_labels, _ = _records(2, 2, seed=2)
    archive = _tar(tmp_path / "my-c100.tgz", {"cifar-100-binary/train.bin": train,
                                              "cifar-100-binary/test.bin": test})
    params = DatasetParams(name="cifar100", root=tmp_path / "data", archive=archive, download=False)
    ds = load_dataset(params, "train")
    assert ds.info.num_classes == 100
    assert ds.labels.tolist() == train_labels.tolist()
    assert torch.equal(ds.images.reshape(4, -1), torch.from_numpy(train_pixels))
    assert load_dataset(params, "test").labels.tolist() == test_labels.tolist()
    # A CIFAR-10 archive handed to cifar100 is refused with what was expected.
    wrong, _, _ = _c10_binary(tmp_path / "c10.tar.gz")
    with pytest.raises(DataError, match=r"c10.tar.gz.*cifar-100-binary"):
        load_dataset(params.model_copy(update={"archive": wrong}), "train")


def test_tar_path_traversal_is_refused(tmp_path):
    archive = _tar(tmp_path / "cifar-10-binary.tar.gz",
                   {"cifar-10-batches-bin/test_batch.bin": _records(1, 1, 0)[0], "../evil": b"x"})
    params = DatasetParams(name="cifar10", root=tmp_path / "data", archive=archive, download=False)
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz.*'\.\./evil'"):
        load_dataset(params, "test")
    assert not (tmp_path / "data" / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-batches-bin").exists()


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_truncated_archive_names_the_file(tmp_path, cut):
    archive, _, _ = _c10_binary(tmp_path / "c10-cut.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * cut)])
    params = DatasetParams(name="cifar10", root=tmp_path / "data", archive=archive, download=False)
    with pytest.raises(DataError, match=r"c10-cut.tar.gz.*(corrupt|truncated)"):
        load_dataset(params, "train")


def test_truncated_binary_batch_names_the_file(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "test_batch.bin").write_bytes(_records(2, 1, 0)[0][:-10])
    params = DatasetParams(name="cifar10", root=tmp_path, download=False)
    with pytest.raises(DataError, match=r"test_batch.bin.*truncated"):
        load_dataset(params, "test")


def _c10_python_members() -> tuple[dict[str, bytes], np.ndarray]:
    g = np.random.default_rng(0)
    members, labels = {}, {}
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        lab = g.integers(0, 10, 2).tolist()
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(
            {"data": g.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": lab})
        labels[name] = lab
    return members, labels


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("unpickled an unverified file")

    monkeypatch.setattr(cifar.pickle, "load", refuse)


def test_python_archive_with_wrong_md5_is_refused(tmp_path, no_unpickling):
    members, _ = _c10_python_members()
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _tar(root / "cifar10" / "cifar-10-python.tar.gz", members)
    params = DatasetParams(name="cifar10", root=root, download=False)
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz.*c58f30108f718f92721af3b95e74349a"):
        load_dataset(params, "train")
    # Same under any name via dataset.archive (recognised by its python-format folder).
    other = _tar(tmp_path / "mine.tar.gz", members)
    with pytest.raises(DataError, match=r"mine.tar.gz.*refusing to unpickle"):
        load_dataset(params.model_copy(update={"archive": other}), "train")
    # An extracted python folder whose batches are not the official files is refused too.
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in members.items():
        (root / "cifar10" / name).write_bytes(data)
    with pytest.raises(DataError, match=r"data_batch_1.*md5.*c99cafc152244af753f735de768cd75f"):
        load_dataset(params, "train")


def test_python_archive_with_matching_md5_is_read(tmp_path, monkeypatch):
    # Pretend the fixture's checksums are the official ones, to exercise the python-format path.
    members, labels = _c10_python_members()
    archive = _tar(tmp_path / "c10py.tar.gz", members)
    file_md5s = {name.split("/")[1]: __import__("hashlib").md5(data).hexdigest()
                 for name, data in members.items()}
    monkeypatch.setattr(cifar, "_official_py_md5s", lambda spec: file_md5s)
    spec = dataclasses.replace(cifar.CIFAR10, py_md5=md5_file(archive))
    params = DatasetParams(name="cifar10", root=tmp_path / "data", archive=archive, download=False)
    folder = cifar.locate(params, spec)
    assert folder.name == "cifar-10-batches-py"
    images, got = cifar._read_folder(folder, spec, "train", 10)
    assert images.shape == (10, 3, 32, 32)
    assert images.dtype == np.uint8
    assert got.tolist() == functools.reduce(operator.iadd,
                                            (labels[f"data_batch_{k}"] for k in range(1, 6)), [])


def _offline(monkeypatch):
    import torchvision.datasets.utils as tvu

    def no_network(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(tvu, "download_url", no_network)
    monkeypatch.setattr(tvu, "download_and_extract_archive", no_network)


@pytest.mark.parametrize(("name", "archive"), [("cifar10", "cifar-10-python.tar.gz"),
                                          ("cifar100", "cifar-100-python.tar.gz")])
def test_missing_cifar_offline_says_where_to_put_it(tmp_path, monkeypatch, name, archive):
    _offline(monkeypatch)
    params = DatasetParams(name=name, root=tmp_path / "data", download=True)
    with pytest.raises(DataError) as err:
        load_dataset(params, "train")
    msg = str(err.value)
    assert f"https://www.cs.toronto.edu/~kriz/{archive}" in msg
    assert str(tmp_path / "data" / name) in msg
    assert "dataset.archive" in msg
    assert "offline" in msg
    assert cifar.CIFAR10.py_md5 in msg if name == "cifar10" else cifar.CIFAR100.py_md5 in msg
    assert not (tmp_path / "data" / name).exists()  # no partial download or empty folder left
    with pytest.raises(DataError, match="Downloading is off"):
        load_dataset(params.model_copy(update={"download": False}), "train")


def test_missing_archive_param(tmp_path):
    params = DatasetParams(name="cifar10", root=tmp_path, archive=tmp_path / "nope.tar.gz")
    with pytest.raises(DataError, match=r"nope.tar.gz not found"):
        load_dataset(params, "train")


# ---------------------------------------------------------------- ImageNet

def test_imagenet_missing_says_where(tmp_path):
    with pytest.raises(DataError, match=r"imagenet/train/<wnid>"):
        load_dataset(DatasetParams(name="imagenet", root=tmp_path), "train")


def test_folder_loader_is_reproducible(tmp_path):
    from PIL import Image

    g = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(g.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    info = DatasetInfo("tiny", 2, 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    ds = FolderDataset(tmp_path, info, train=True)
    args = {"batch_size": 4, "device": CPU, "augment": AugmentParams(), "shuffle": True,
            "drop_last": False, "seed": 0}
    loader = make_loader(ds, torch.arange(1, 6), **args)
    assert len(loader) == 2
    assert loader.num_examples == 5
    a, b = _epoch(loader, 3), _epoch(loader, 3)
    assert a[0][0].shape == (4, 3, 16, 16)
    assert a[0][0].dtype == torch.float32
    assert sorted(torch.cat([y for _, y in a]).tolist()) == [0, 0, 1, 1, 1]
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)
    test = make_loader(ds, None, **{**args, "augment": None, "shuffle": False})
    x, _ = next(iter(test))
    assert x.shape == (4, 3, 16, 16)
    assert len(ds.limited(3)) == 3
