"""Tests of metagrad.data and the ``metagrad fetch`` command.

Digits, splits, IDX parsing, errors, checksums and the download path (against a local
127.0.0.1 server) always run. Tests on the real data sets run when the shared data folder is
present: ``$METAGRAD_DATA`` if it holds the files, else ``../shared/data`` from the repository root.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import shutil
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import metagrad.data as md
from metagrad.cli import main, register_command
from metagrad.data import ChecksumError, DataNotFoundError

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    for cand in (os.environ.get("METAGRAD_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "pde" / "burgers_shock.mat").is_file():
            return Path(cand)
    return None


SHARED = _shared()


def _needs(*rel: str):
    ok = SHARED is not None and all((SHARED / r).is_file() for r in rel)
    return pytest.mark.skipif(not ok, reason=f"shared data ({', '.join(rel)}) not present")


MNIST_T10K = ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz")
SMALL = ("omniglot/images_background_small1.zip", "omniglot/images_background_small2.zip")


# ----------------------------------------------------------------------------- digits, splits

def test_digits_shapes_range_and_upsampling():
    x, y = md.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert x.min() == 0 and x.max() == 1
    x28, y28 = md.load_digits(size=28, dtype=torch.float64, device="cpu")
    assert x28.shape == (1797, 1, 28, 28) and x28.dtype == torch.float64
    assert 0 <= x28.min() and x28.max() <= 1 and torch.equal(y28, y)


def test_disjoint_split_is_disjoint_and_deterministic():
    a = md.disjoint_split(10_000, (1000, 1000, 2000), seed=3)
    assert [len(p) for p in a] == [1000, 1000, 2000]
    assert len(torch.cat(a).unique()) == 4000 and all(p.dtype == torch.int64 for p in a)
    b = md.disjoint_split(10_000, (1000, 1000, 2000), seed=3)
    c = md.disjoint_split(10_000, (1000, 1000, 2000), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    with pytest.raises(ValueError, match="do not fit"):
        md.disjoint_split(100, (60, 60), seed=0)


def test_split_classes_fractions_and_counts():
    tr, te = md.split_classes(242, (0.8, 0.2), seed=0)
    assert (len(tr), len(te)) == (193, 49)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(242))
    tr2, te2 = md.split_classes(242, (0.8, 0.2), seed=0)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    parts = md.split_classes(242, (100, 42, 50), seed=1)
    assert [len(p) for p in parts] == [100, 42, 50] and len(torch.cat(parts).unique()) == 192
    with pytest.raises(ValueError):
        md.split_classes(10, (0.9, 0.3))


def test_sample_task_labels_and_membership():
    images = torch.arange(30 * 20, dtype=torch.float32).reshape(30, 20, 1, 1, 1)  # value = id
    pool = torch.tensor([2, 5, 7, 11, 13, 17, 19])
    t = md.sample_task(images, pool, n_way=5, k_shot=2, n_query=3, generator=0)
    assert t.support_x.shape == (10, 1, 1, 1) and t.query_x.shape == (15, 1, 1, 1)
    assert t.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert t.query_y.tolist() == [i for i in range(5) for _ in range(3)]
    assert set(t.classes.tolist()) <= set(pool.tolist()) and len(set(t.classes.tolist())) == 5
    ids_s, ids_q = t.support_x.flatten().long(), t.query_x.flatten().long()
    assert torch.equal(ids_s // 20, t.classes[t.support_y])  # each image is of its class
    assert torch.equal(ids_q // 20, t.classes[t.query_y])
    assert not set(ids_s.tolist()) & set(ids_q.tolist())  # support and query disjoint
    again = md.sample_task(images, pool, 5, 2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.support_x, t.support_x) and torch.equal(again.query_x, t.query_x)
    with pytest.raises(ValueError):
        md.sample_task(images, pool, n_way=8, k_shot=1, n_query=1)


# ----------------------------------------------------------------------------- IDX, MNIST

def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08, compress: bool = False) -> None:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip_and_truncation(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", arr, compress=compress)
    assert np.array_equal(md.read_idx(tmp_path / "a"), arr)
    (tmp_path / "b").write_bytes((tmp_path / "a").read_bytes() if compress else
                                 (tmp_path / "a").read_bytes()[:-5])
    if not compress:
        with pytest.raises(ValueError, match="truncated"):
            md.read_idx(tmp_path / "b")


def test_load_mnist_from_raw_files(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = np.arange(7, dtype=np.uint8)
    (tmp_path / "fashion-mnist").mkdir()
    _write_idx(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte", x)
    _write_idx(tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte", y, compress=True)
    # .gz name holding raw bytes is fine too: the format is detected from the content
    images, labels = md.load_mnist("train", root=tmp_path, kind="fashion", dtype=torch.float64)
    assert images.shape == (7, 1, 28, 28) and images.dtype == torch.float64
    assert torch.allclose(images[:, 0], torch.from_numpy(x).double() / 255)
    assert labels.tolist() == list(range(7)) and labels.dtype == torch.int64


@_needs(*MNIST_T10K)
def test_load_mnist_test_split():
    x, y = md.load_mnist("test", root=SHARED)
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1 and y.dtype == torch.int64
    assert y[:5].tolist() == [7, 2, 1, 0, 4] and torch.bincount(y).min() > 850


# ----------------------------------------------------------------------------- errors, root

def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path / "env"))
    assert md.data_root() == tmp_path / "env"
    assert md.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("METAGRAD_DATA")
    assert md.data_root() == Path("~/.cache/metagrad/data").expanduser()


@pytest.mark.parametrize("call, name, dataset", [
    (lambda r: md.load_mnist(root=r), "t10k-images-idx3-ubyte.gz", "mnist"),
    (lambda r: md.load_mnist("train", root=r, kind="fashion"), "train-images-idx3-ubyte.gz",
     "fashion-mnist"),
    (lambda r: md.load_omniglot(root=r), "images_background_small1.zip", "omniglot"),
    (lambda r: md.load_oneshot_runs(root=r), "all_runs.zip", "omniglot"),
    (lambda r: md.load_pde("kdv", root=r), "KdV.mat", "pde"),
])
def test_missing_data_message(tmp_path, call, name, dataset):
    with pytest.raises(DataNotFoundError) as info:
        call(tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert name in msg and str(tmp_path / dataset) in msg
    assert f"metagrad fetch {dataset} --root {tmp_path}" in msg and "METAGRAD_DATA" in msg


# ----------------------------------------------------------------------------- checksums

def test_registry_is_well_formed():
    for r in md.resources_for("all"):
        assert len(r.digest) == {"md5": 32, "sha256": 64}[r.algorithm]
        assert r.urls and all(u.startswith(("https://", "http://")) for u in r.urls)
        assert all(u.endswith("/" + r.filename) for u in r.urls)
    assert {r.folder for r in md.resources_for("all")} == {"mnist", "fashion-mnist", "omniglot",
                                                           "pde"}


@pytest.mark.skipif(SHARED is None, reason="shared data not present")
def test_shared_files_match_published_checksums():
    checked = [r for r in md.resources_for("all") if r.path(SHARED).is_file()]
    assert len(checked) >= 8
    for r in checked:
        md.verify_file(r.path(SHARED), r)  # MNIST: md5 of the decompressed bytes


@_needs("pde/burgers_shock.mat", *MNIST_T10K)
def test_checksum_mismatch_reports_expected_and_actual(tmp_path):
    for folder, name in (("pde", "burgers_shock.mat"), ("mnist", "t10k-labels-idx1-ubyte.gz")):
        r = next(r for r in md.RESOURCES[folder] if r.filename == name)
        bad = tmp_path / name
        data = bytearray((SHARED / folder / name).read_bytes())
        if name.endswith(".gz"):  # corrupt the content, keep a valid gzip stream
            data = bytearray(gzip.compress(bytes(gzip.decompress(bytes(data))[:-1]) + b"\x07"))
        else:
            data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
        with pytest.raises(ChecksumError) as info:
            md.verify_file(bad, r)
        msg = str(info.value)
        assert str(bad) in msg and r.digest in msg
        assert hashlib.new(r.algorithm, gzip.decompress(bytes(data)) if name.endswith(".gz")
                           else bytes(data)).hexdigest() in msg
    (tmp_path / "trunc.gz").write_bytes((SHARED / MNIST_T10K[1]).read_bytes()[:100])
    with pytest.raises(ChecksumError, match="unreadable"):
        md.verify_file(tmp_path / "trunc.gz", md.RESOURCES["mnist"][3])


# ----------------------------------------------------------------------------- fetch

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/'srv'`` on 127.0.0.1; count requests; stop at teardown (or after 60 s)."""
    served = tmp_path / "srv"
    served.mkdir()
    hits: list[str] = []

    class Handler(_Quiet):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    guard = threading.Timer(60, httpd.shutdown)  # bounded even if teardown never runs
    guard.daemon = True
    guard.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        guard.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_download_synthetic_resource(server, tmp_path):
    served, url, hits = server
    (served / "toy").mkdir()
    payload = os.urandom(300_000)
    (served / "toy" / "blob.bin").write_bytes(payload)
    good = md.Resource("toy", "blob.bin", (url + "/missing/blob.bin", url + "/toy/blob.bin"),
                       "sha256", hashlib.sha256(payload).hexdigest())
    root = tmp_path / "root"
    path = md.download(good, root, progress=False, quiet=True)  # first address 404s, second works
    assert path.read_bytes() == payload and len(hits) == 2
    md.download(good, root, progress=False, quiet=True)
    assert len(hits) == 2  # present and valid: skipped
    path.write_bytes(b"junk")
    md.download(good, root, progress=False, quiet=True)
    assert path.read_bytes() == payload and len(hits) == 4  # invalid: fetched again (2 URLs)
    bad = md.Resource("toy", "other.bin", (url + "/toy/blob.bin",), "sha256", "0" * 64)
    with pytest.raises(ChecksumError, match="0{64}"):
        md.download(bad, root, progress=False, quiet=True)
    missing = md.Resource("toy", "nope.bin", (url + "/toy/nope.bin",), "md5", "0" * 32)
    with pytest.raises(DataNotFoundError, match="404"):
        md.download(missing, root, progress=False, quiet=True, timeout=5)
    assert sorted(p.name for p in (root / "toy").iterdir()) == ["blob.bin"]  # no partial files


@_needs("pde/burgers_shock.mat", "pde/AC.mat", "pde/KdV.mat", *MNIST_T10K)
def test_fetch_cli_end_to_end(server, tmp_path, capsys):
    served, url, hits = server
    for rel in ("pde/burgers_shock.mat", "pde/AC.mat", "pde/KdV.mat", *MNIST_T10K):
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED / rel, served / rel)
    root = tmp_path / "data"
    assert main(["fetch", "pde", "--root", str(root), "--mirror", url, "--quiet"]) == 0
    assert sorted(p.name for p in (root / "pde").iterdir()) == ["AC.mat", "KdV.mat",
                                                                "burgers_shock.mat"]
    assert md.load_pde("burgers", root=root).u.shape == (256, 100) and len(hits) == 3
    assert main(["fetch", "pde", "--root", str(root), "--mirror", url, "--quiet"]) == 0
    assert len(hits) == 3  # all present and valid
    md.fetch("mnist", root, mirror=url, progress=False, quiet=True,
             select=lambda r: r.filename.startswith("t10k"))
    assert md.load_mnist(root=root)[0].shape == (10_000, 1, 28, 28)
    # a corrupted file on the server: checksum error, nothing written
    data = bytearray((served / "pde" / "AC.mat").read_bytes())
    data[1000] ^= 0xFF
    (served / "pde" / "AC.mat").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["fetch", "pde", "--root", str(tmp_path / "other"), "--mirror", url,
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "AC.mat" in err and md.RESOURCES["pde"][1].digest in err
    assert sorted(p.name for p in (tmp_path / "other" / "pde").iterdir()) == ["KdV.mat",
                                                                           "burgers_shock.mat"]


def test_cli_registers_new_subcommands(monkeypatch, capsys):
    from metagrad import cli
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))

    def configure(parser):
        parser.add_argument("--n", type=int, default=1)
        return lambda args: print("hello", args.n) or 0

    register_command("hello", configure, help="say hello")
    assert main(["hello", "--n", "3"]) == 0 and "hello 3" in capsys.readouterr().out
    assert main([]) == 2


# ----------------------------------------------------------------------------- Omniglot

@pytest.fixture(scope="module")
def omniglot():
    return md.load_omniglot("small", root=SHARED)


@_needs(*SMALL)
def test_omniglot_small_dedup_shapes_range(omniglot):
    images, names = omniglot
    assert images.shape == (242, 20, 1, 28, 28) and images.dtype == torch.float32
    assert len(names) == len(set(names)) == 242 and names == sorted(names)
    assert names.count("Greek/character01") == 1 and "Tagalog/character17" in names
    assert len({n.split("/")[0] for n in names}) == 8
    assert images.min() == 0 and images.max() == 1
    assert images.mean() < 0.2 and images[..., 0, 0].abs().max() == 0  # ink = 1, background 0
    with zipfile.ZipFile(SHARED / SMALL[0]) as z1, zipfile.ZipFile(SHARED / SMALL[1]) as z2:
        crc1 = {i.filename.split("/", 1)[1]: i.CRC for i in z1.infolist()}
        crc2 = {i.filename.split("/", 1)[1]: i.CRC for i in z2.infolist()}
    common = [k for k in crc1.keys() & crc2.keys() if k.endswith(".png")]
    assert len(common) == 1000 and all(crc1[k] == crc2[k] for k in common)  # same files
    again = md.load_omniglot(root=SHARED)  # cached: identical, and a fresh tensor
    assert torch.equal(again.images, images) and again.images.data_ptr() != images.data_ptr()


@_needs(*SMALL)
def test_omniglot_single_zip_and_splits(omniglot):
    images, names = md.load_omniglot(["images_background_small1.zip"], root=SHARED, size=14)
    assert images.shape == (136, 20, 1, 14, 14)
    idx = {n: i for i, n in enumerate(omniglot.names)}
    assert all(n in idx for n in names)
    tr, te = md.split_classes(len(omniglot.names), (0.8, 0.2), seed=0)
    task = md.sample_task(omniglot.images, te, n_way=5, k_shot=1, n_query=5, generator=1)
    assert task.support_x.shape == (5, 1, 28, 28) and task.query_x.shape == (25, 1, 28, 28)
    assert task.support_y.tolist() == [0, 1, 2, 3, 4]
    assert set(task.classes.tolist()) <= set(te.tolist())


@_needs("omniglot/all_runs.zip")
def test_oneshot_runs():
    runs = md.load_oneshot_runs(root=SHARED)
    assert len(runs) == 20
    for run in runs:
        assert run.support.shape == run.query.shape == (20, 1, 28, 28)
        assert sorted(run.query_labels.tolist()) == list(range(20))  # one query per class
        assert run.support.min() == 0 and run.support.max() == 1 and run.query.mean() < 0.2
    assert runs[0].query_labels[:3].tolist() == [7, 8, 1]  # item01→class08, item02→class09, …


# ----------------------------------------------------------------------------- PDE

@_needs("pde/burgers_shock.mat", "pde/AC.mat", "pde/KdV.mat")
@pytest.mark.parametrize("name, shape, nu, u0", [
    ("burgers", (256, 100), 0.01 / np.pi, lambda x: -torch.sin(np.pi * x)),
    ("allen_cahn", (512, 201), 1e-4, lambda x: x ** 2 * torch.cos(np.pi * x)),
    ("kdv", (512, 201), 0.0025, lambda x: torch.cos(np.pi * x)),
])
def test_pde_solutions_and_observation_grid(name, shape, nu, u0):
    sol = md.load_pde(name, root=SHARED)
    assert sol.u.shape == shape == (len(sol.x), len(sol.t)) and sol.u.dtype == torch.float64
    assert sol.nu == pytest.approx(nu) and sol.name == name
    assert torch.allclose(sol.u[:, 0], u0(sol.x), atol=1e-6)  # the stated initial condition
    obs = md.observation_grid(sol, n=8)
    assert obs.u.shape == (64,) and len(set(zip(obs.ix.tolist(), obs.it.tolist()))) == 64
    assert obs.ix.min() > 0 and obs.ix.max() < len(sol.x) - 1 and obs.it.min() > 0
    assert (obs.t > 0).all() and torch.equal(obs.u, sol.u[obs.ix, obs.it])
    assert torch.equal(obs.x, sol.x[obs.ix]) and len(obs.ix.unique()) == len(obs.it.unique()) == 8
    f32 = md.load_pde(name, root=SHARED, dtype=torch.float32)
    assert f32.u.dtype == torch.float32
