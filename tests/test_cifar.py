"""CIFAR-10/100 loaders, registry and fetch, on tiny synthetic archives in the published layout."""
from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch

import metagrad as mg
import metagrad.data as md
from metagrad.cli import main as cli_main
from metagrad.data.paths import ChecksumError, DataCorruptError, DataNotFoundError
from metagrad.errors import ConfigError


def _records(n: int, label_bytes: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` records: labels (n × label_bytes), pixels (n × 3072), and their bytes."""
    rng = np.random.default_rng(seed)
    limits = [20, 100] if label_bytes == 2 else [10]
    labels = np.stack([np.arange(n) * (k + 3) % lim for k, lim in enumerate(limits)], 1)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    pixels[0, :3] = (0, 255, 128)  # known values at the start of the red plane
    pixels[0, 1024] = 7  # first green pixel
    return np.concatenate([labels.astype(np.uint8), pixels], 1).tobytes(), labels, pixels


def _tar(path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _cifar10(root, n=(3, 2, 2, 2, 2), n_test=4):
    """Write ``<root>/cifar-10/cifar-10-binary.tar.gz``; return the expected arrays."""
    train = [_records(k, 1, seed=i) for i, k in enumerate(n)]
    test = _records(n_test, 1, seed=99)
    members = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\nautomobile\n"}
    members.update({f"cifar-10-batches-bin/data_batch_{i + 1}.bin": r[0] for i, r in enumerate(train)})
    members["cifar-10-batches-bin/test_batch.bin"] = test[0]
    _tar(root / "cifar-10" / "cifar-10-binary.tar.gz", members)
    return ((np.concatenate([r[1] for r in train]), np.concatenate([r[2] for r in train])),
            (test[1], test[2]))


def _cifar100(root, n_train=5, n_test=3):
    train, test = _records(n_train, 2, seed=1), _records(n_test, 2, seed=2)
    _tar(root / "cifar-100" / "cifar-100-binary.tar.gz",
         {"cifar-100-binary/fine_label_names.txt": b"apple\n",
          "cifar-100-binary/train.bin": train[0], "cifar-100-binary/test.bin": test[0]})
    return train, test


def test_cifar10_train_and_test_from_the_archive(tmp_path):
    (ytr, xtr), (yte, xte) = _cifar10(tmp_path)
    x, y = md.load_cifar("cifar10", "train", root=tmp_path)
    assert x.shape == (11, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.from_numpy(ytr[:, 0].astype(np.int64)))
    assert torch.equal(x, torch.from_numpy(xtr.reshape(-1, 3, 32, 32)).float() / 255)
    assert (x[0, 0, 0, :3] * 255).round().tolist() == [0, 255, 128] and round(float(x[0, 1, 0, 0]) * 255) == 7
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    x, y = md.load_cifar("cifar10", "test", root=tmp_path, dtype=torch.float64)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float64
    assert torch.equal(y, torch.from_numpy(yte[:, 0].astype(np.int64)))


def test_cifar100_coarse_and_fine_labels(tmp_path):
    (raw, labels, pixels), _ = _cifar100(tmp_path)
    x, fine = md.load_cifar("cifar100", "train", root=tmp_path)
    _, coarse = md.load_cifar("cifar100", "train", root=tmp_path, label="coarse")
    assert x.shape == (5, 3, 32, 32)
    assert fine.tolist() == labels[:, 1].tolist() and coarse.tolist() == labels[:, 0].tolist()
    assert fine.tolist() != coarse.tolist()
    assert torch.equal(x, torch.from_numpy(pixels.reshape(-1, 3, 32, 32)).float() / 255)
    assert md.load_cifar("cifar100", "test", root=tmp_path)[0].shape == (3, 3, 32, 32)
    with pytest.raises(ConfigError, match="label='coarse'.*'fine'"):
        md.load_cifar("cifar10", "test", root=tmp_path, label="coarse")


def test_extracted_folder_is_read_when_no_archive(tmp_path):
    folder = tmp_path / "cifar-100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    train, test = _records(4, 2, seed=5), _records(2, 2, seed=6)
    (folder / "train.bin").write_bytes(train[0])
    (folder / "test.bin").write_bytes(test[0])
    x, y = md.load_cifar("cifar100", "train", root=tmp_path)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == train[1][:, 1].tolist()


def test_cache_rereads_a_changed_file(tmp_path, monkeypatch):
    _cifar10(tmp_path, n_test=4)
    assert len(md.load_cifar("cifar10", "test", root=tmp_path)[1]) == 4
    _cifar10(tmp_path, n_test=6)  # rewritten: new size and mtime
    assert len(md.load_cifar("cifar10", "test", root=tmp_path)[1]) == 6


def test_missing_files_name_the_folder_and_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path))
    for name, folder in (("cifar10", "cifar-10"), ("cifar100", "cifar-100")):
        with pytest.raises(DataNotFoundError) as info:
            md.load_cifar(name, "train")
        msg = str(info.value)
        assert str(tmp_path / folder) in msg and f"metagrad fetch {name} --root {tmp_path}" in msg


@pytest.mark.parametrize("damage", ["truncated archive", "garbage", "partial record", "bad label",
                                    "missing member"])
def test_corrupt_files_raise_data_corrupt_error(tmp_path, damage):
    _cifar10(tmp_path)
    path = tmp_path / "cifar-10" / "cifar-10-binary.tar.gz"
    if damage == "truncated archive":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a tar.gz at all" * 10)
    elif damage == "partial record":
        _tar(path, {"cifar-10-batches-bin/test_batch.bin": _records(2, 1, 0)[0][:-5]})
    elif damage == "bad label":
        raw = bytearray(_records(2, 1, 0)[0])
        raw[3073] = 10  # second record's label, CIFAR-10 has 0..9
        _tar(path, {"cifar-10-batches-bin/test_batch.bin": bytes(raw)})
    else:
        _tar(path, {"cifar-10-batches-bin/data_batch_1.bin": _records(2, 1, 0)[0]})
    with pytest.raises(DataCorruptError) as info:
        md.load_cifar("cifar10", "test", root=tmp_path)
    msg = str(info.value)
    assert str(path) in msg and f"metagrad fetch cifar10 --root {tmp_path} --force" in msg


def test_corrupt_extracted_file_names_the_data_root(tmp_path):
    folder = tmp_path / "cifar-10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DataCorruptError, match=f"metagrad fetch cifar10 --root {tmp_path} --force"):
        md.load_cifar("cifar10", "test", root=tmp_path)


def test_registry_entries_and_all():
    for name, folder, filename in (("cifar10", "cifar-10", "cifar-10-binary.tar.gz"),
                                   ("cifar100", "cifar-100", "cifar-100-binary.tar.gz")):
        (r,) = md.resources_for(name)
        assert (r.folder, r.filename, r.algorithm, r.decompressed) == (folder, filename, "md5", False)
        assert r.urls == (f"https://www.cs.toronto.edu/~kriz/{filename}",)
        assert len(r.digest) == 32 and int(r.digest, 16) >= 0
    assert "cifar10" in md.DATASETS and "cifar100" in md.DATASETS
    assert not {r.folder for r in md.resources_for("all")} & {"cifar-10", "cifar-100"}


def test_fetch_verifies_the_md5_and_refuses_a_tampered_archive(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "root"
    _cifar10(mirror)
    good = (mirror / "cifar-10" / "cifar-10-binary.tar.gz").read_bytes()
    (r,) = md.resources_for("cifar10")
    r = replace(r, digest=hashlib.md5(good).hexdigest())  # the synthetic archive's own md5
    path = md.download(r, root, mirror=mirror.as_uri(), progress=False, quiet=True)
    assert path == root / "cifar-10" / "cifar-10-binary.tar.gz" and path.read_bytes() == good
    assert md.load_cifar("cifar10", "test", root=root)[0].shape == (4, 3, 32, 32)
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0xFF
    (mirror / "cifar-10" / "cifar-10-binary.tar.gz").write_bytes(bytes(tampered))
    with pytest.raises(ChecksumError) as info:
        md.download(r, root, mirror=mirror.as_uri(), force=True, progress=False, quiet=True)
    assert r.digest in str(info.value) and hashlib.md5(tampered).hexdigest() in str(info.value)
    assert path.read_bytes() == good  # the valid file was not replaced
    assert not list(path.parent.glob("*.part"))
    # the published checksum refuses the synthetic archive
    (published,) = md.resources_for("cifar10")
    with pytest.raises(ChecksumError, match=published.digest):
        md.verify_file(path, published)


def test_fetch_offline_is_one_clean_error(tmp_path, capsys):
    # an unreachable mirror stands in for no network: a clean message, exit status 1
    status = cli_main(["fetch", "cifar100", "--root", str(tmp_path / "root"), "--quiet",
                       "--mirror", (tmp_path / "nowhere").as_uri()])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert err.startswith("metagrad fetch: error: could not download cifar-100-binary.tar.gz")


def test_condensation_setup_builds_a_problem_from_a_cifar_root(tmp_path, monkeypatch):
    from metagrad.tasks import condensation as C
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="metagrad fetch cifar10"):
        C.run_table1(C.Setup(), {"RGU (full)": {"method": "rmd"}}, datasets=("digits", "cifar10"),
                     out_dir=tmp_path / "out")
    _cifar10(tmp_path, n=(4, 4, 4, 4, 4), n_test=6)
    setup = C.Setup(dataset="cifar10", official_split=True, pool_size=20, test_size=6, ipc=1,
                    width=4, depth=2, T=2, real_batch=8, init="noise", device="cpu")
    assert "CIFAR-10 official splits" in C.data_source(setup)
    data = C.load_data(setup)
    assert data.pool_x.shape == (20, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.n_classes == 10
    problem = C.make_problem(setup, data, seed=0, step=0)
    alpha = C.initial_images(setup, data, 0)
    assert alpha["images"].shape == (10, 3, 32, 32)
    grad = mg.hypergrad(problem, alpha, "rmd").grad["images"]
    assert grad.shape == (10, 3, 32, 32) and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="pool_size=21 .* exceed the 20 training"):
        C.load_data(replace(setup, pool_size=21))
    drawn = C.load_data(replace(setup, official_split=False, pool_size=3, test_size=3))
    assert drawn.pool_x.shape == (3, 3, 32, 32)
