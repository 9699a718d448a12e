"""Bad inputs and injected faults (issue 13), as plain functions ``case(tmp: Path) -> None``.

``BAD_INPUTS``: each feeds one bad value or file and passes only if it is refused with the
expected metagrad error whose message names the value or file and the fix (or, for numbers given
as numpy / 0-dim tensor scalars, if they are accepted and give the same result as the Python
number). ``FAULTS``: each injects one fault (kill -9, truncated / garbage / empty / crafted
files, concurrent writers, a trickling or dying server, SIGTERM, a full disk) and passes only if
nothing is lost: the run resumes bit-identically or the error names the file, and no partial
file is left. ``tests/test_faults.py`` runs them under pytest; ``scripts/probe_faults.py``
counts them. The numbers sit in a case's id: ``<issue item>-<what>``.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

import metagrad as mg
import metagrad.data as md
from metagrad import results
from metagrad.cli import main as cli_main
from metagrad.errors import CorruptFileError
from metagrad.estimators import _checks
from metagrad.loops import OuterConfig, outer_loop
from metagrad.tasks import families

HERE = Path(__file__).resolve().parent
BAD_INPUTS: list = []
FAULTS: list = []


def bad_input(fn):
    BAD_INPUTS.append(fn)
    return fn


def fault(fn):
    FAULTS.append(fn)
    return fn


def refused(exc_type, pattern: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` must raise ``exc_type`` whose message matches ``pattern``."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        assert re.search(pattern, str(exc), re.S), f"message {str(exc)!r} does not match {pattern!r}"
        return exc
    raise AssertionError(f"accepted a bad input: {fn.__name__ if hasattr(fn, '__name__') else fn}")


def accepted(condition: bool, what: str) -> None:
    """A value that must be accepted (e.g. ``np.float32(0.5)`` as gamma) gave the right result."""
    assert condition, f"{what} was not accepted correctly"


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def quad(T=5):
    return families.quadratic(P=8, N=4, T=T)


def _eq_trees(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a) and set(a) == set(b)


# ============================================================ 1: stale checkpoints
@fault
def f1_changed_config_starts_fresh(tmp):
    """A checkpoint of another configuration is replaced with a warning, not a dead end."""
    problem, alpha = quad()
    ck = tmp / "run.pt"
    outer_loop(lambda s: problem, alpha, OuterConfig("rmd", steps=3, checkpoint_every=1), checkpoint=ck,
               progress=False)
    cfg = OuterConfig("rmd", steps=3, lr=0.02, checkpoint_every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = outer_loop(lambda s: problem, alpha, cfg, checkpoint=ck, progress=False)
    assert any("another configuration" in str(w.message) and str(ck) in str(w.message) for w in caught)
    fresh = outer_loop(lambda s: problem, alpha, cfg, progress=False)
    assert _eq_trees(got.alpha, fresh.alpha)
    assert torch.load(ck, weights_only=True)["step"] == 3  # now this configuration's


@fault
def f1_checkpoint_removed_once_result_saved_kept_on_failure(tmp):
    problem, alpha = quad()
    cfg = OuterConfig("rmd", steps=4, checkpoint_every=1)
    ck, out = tmp / "ck" / "run.pt", tmp / "res" / "run.json"
    calls = {"n": 0}

    def flaky(step):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return problem

    def compute(at):
        h = outer_loop(at, alpha, cfg, checkpoint=ck, progress=False)
        return {"alpha": h.alpha["a"].tolist()}
    try:
        results.cached(out, {"x": 1}, lambda: compute(flaky))
    except KeyboardInterrupt:
        pass
    assert ck.exists() and not out.exists()  # the failure kept the checkpoint
    payload = results.cached(out, {"x": 1}, lambda: compute(flaky))
    assert calls["n"] == 5  # resumed: only steps 3 and 4 ran again
    assert not ck.exists() and not list(ck.parent.iterdir())  # removed once the result is saved
    fresh = outer_loop(lambda s: problem, alpha, cfg, progress=False).alpha["a"].tolist()
    assert payload["result"]["alpha"] == fresh


# ============================================================ 2: code execution from a checkpoint
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


@fault
def f2_crafted_checkpoint_is_not_executed(tmp):
    problem, alpha = quad()
    cfg = OuterConfig("rmd", steps=2)
    marker = tmp / "pwned"
    writers = (lambda p: torch.save({"key": "x", "alpha": _Evil(marker)}, p),
               lambda p: p.write_bytes(__import__("pickle").dumps(_Evil(marker))))
    for i, writer in enumerate(writers):
        ck = tmp / f"evil{i}.pt"
        writer(ck)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the legacy pickle's protocol
            refused(CorruptFileError, rf"checkpoint {re.escape(str(ck))} holds objects other than "
                                      r"tensors.*not loaded.*delete it and rerun", outer_loop,
                    lambda s: problem, alpha, cfg, checkpoint=ck, progress=False)
        assert not marker.exists(), "a crafted checkpoint ran code"


# ============================================================ 3: silently wrong int gradient
@bad_input
def b3_integer_alpha_black_box(tmp):
    bb = mg.BlackBoxProblem(solve=lambda a: {"w": a["x"] * 2.0},
                            outer_loss=lambda w, a, d: ((w["w"] - 1) ** 2).sum())
    refused(mg.ConfigError, r"alpha\['x'\] is torch\.int64.*floating-point|floating-point.*alpha\['x'\] "
                            r"is torch\.int64", mg.hypergrad, bb, {"x": torch.tensor([1, 2, 3])},
            "fg2u-zo", seed=0)


@bad_input
def b3_float_alpha_black_box_is_right(tmp):
    bb = mg.BlackBoxProblem(solve=lambda a: {"w": a["x"] * 2.0},
                            outer_loss=lambda w, a, d: ((w["w"] - 1) ** 2).sum())
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    g = mg.hypergrad(bb, {"x": x}, "fg2u-zo", directions=torch.eye(3, dtype=torch.float64) * 3 ** .5,
                     scheme="central", mu=1e-5).grad["x"]
    accepted(g.dtype == torch.float64 and torch.allclose(g, 4 * (2 * x - 1), rtol=1e-6),
             "a float64 alpha in fg2u-zo")


# ============================================================ 4: corrupt result / checkpoint files
def _corruptions(good: bytes):
    return {"truncated": good[:len(good) // 2], "garbage": os.urandom(64), "empty": b"",
            "nul-bytes": b"\0" * 100}


@fault
def f4_corrupt_result_files_name_the_file(tmp):
    path = tmp / "r.json"
    results.save_result(path, {"a": 1}, {"x": 1.5})
    good = path.read_bytes()
    for kind, data in {**_corruptions(good), "json-list": b"[1, 2]",
                       "json-not-result": b'{"a": 1}'}.items():
        path.write_bytes(data)
        refused(CorruptFileError, rf"result file {re.escape(str(path))} .*delete it and rerun",
                results.load_result, path)
        refused(CorruptFileError, re.escape(str(path)), results.cached, path, {"a": 1}, lambda: 0)
    path.unlink()  # the fix the message gives works
    assert results.cached(path, {"a": 1}, lambda: {"x": 1.5})["result"] == {"x": 1.5}


@fault
def f4_corrupt_checkpoints_name_the_file_and_rerun_after_delete(tmp):
    problem, alpha = quad()
    cfg = OuterConfig("rmd", steps=3, checkpoint_every=1)
    ck = tmp / "run.pt"
    full = outer_loop(lambda s: problem, alpha, cfg, checkpoint=ck, progress=False)
    good = ck.read_bytes()
    for kind, data in _corruptions(good).items():
        ck.write_bytes(data)
        refused(CorruptFileError, rf"checkpoint {re.escape(str(ck))} .*delete it and rerun",
                outer_loop, lambda s: problem, alpha, cfg, checkpoint=ck, progress=False)
    ck.unlink()
    again = outer_loop(lambda s: problem, alpha, cfg, checkpoint=ck, progress=False)
    assert _eq_trees(again.alpha, full.alpha)


@fault
def f4_write_failure_keeps_the_old_file(tmp):
    """A failing fsync (disk full) or an interruption before the rename leaves the old file
    whole and no temporary file behind."""
    path = tmp / "r.json"
    results.save_result(path, {"a": 1}, {"x": 1})
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")
    with patched(os, "fsync", full):
        refused(OSError, rf"could not write {re.escape(str(path))}", results.save_result, path,
                {"a": 2}, {"x": 2})

    def interrupted(a, b):
        raise KeyboardInterrupt
    with patched(os, "replace", interrupted):
        try:
            results.save_result(path, {"a": 3}, {"x": 3})
        except KeyboardInterrupt:
            pass
    assert path.read_bytes() == before and sorted(p.name for p in tmp.iterdir()) == ["r.json"]


def _writer(path: str, value: int, n: int):
    for i in range(n):
        results.atomic_write_bytes(path, json.dumps({"config": {}, "provenance": {}, "result": {
            "writer": value, "i": i, "pad": "x" * 20_000}}).encode())


@fault
def f4_two_concurrent_writers(tmp):
    """Two processes rewrite one result file while a reader loads it: every read is one
    writer's complete file, and the last one stands."""
    import multiprocessing as mp
    path = tmp / "r.json"
    _writer(str(path), 0, 1)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), v, 40)) for v in (1, 2)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs) or reads < 5:
        r = results.load_result(path)["result"]
        assert r["writer"] in (0, 1, 2) and len(r["pad"]) == 20_000
        reads += 1
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert results.load_result(path)["result"]["i"] == 39
    assert sorted(p.name for p in tmp.iterdir()) == ["r.json"]


def _write_forever(path: str):
    i = 0
    while True:
        _writer(path, 7, 1)
        i += 1


@fault
def f4_kill9_mid_write(tmp):
    """kill -9 a process that keeps rewriting a result file: the file is still one complete
    write, and the next write removes the dead writer's temporary file."""
    import multiprocessing as mp
    path = tmp / "r.json"
    _writer(str(path), 0, 1)
    child = mp.get_context("fork").Process(target=_write_forever, args=(str(path),))
    child.start()
    deadline = time.monotonic() + 60
    while results.load_result(path)["result"]["writer"] != 7:  # it has written at least once
        assert time.monotonic() < deadline and child.is_alive()
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    r = results.load_result(path)["result"]
    assert r["writer"] == 7 and len(r["pad"]) == 20_000
    (tmp / f".r.json.{child.pid}.zz.tmp").write_bytes(b'{"half": ')  # as if killed mid-write
    _writer(str(path), 8, 1)
    assert sorted(p.name for p in tmp.iterdir()) == ["r.json"]  # no temporary file left


# ============================================================ 5: data verified on read
def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def _fake_mnist(root: Path, labels=None) -> Path:
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y)))
    return folder


def _fix(dataset, root):
    return re.escape(f"metagrad fetch {dataset} --root {root} --force")


@bad_input
def b5_truncated_mnist_gz(tmp):
    folder = _fake_mnist(tmp)
    f = folder / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:500])
    refused(md.DataCorruptError, rf"{re.escape(str(f))} is corrupt: the gzip stream.*{_fix('mnist', tmp)}",
            md.load_mnist, root=tmp)


@bad_input
def b5_garbage_mnist_gz(tmp):
    folder = _fake_mnist(tmp)
    f = folder / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(b"\x1f\x8b" + os.urandom(200))
    refused(md.DataCorruptError, rf"{re.escape(str(f))} is corrupt.*{_fix('mnist', tmp)}",
            md.load_mnist, root=tmp)


@bad_input
def b5_mnist_label_out_of_range(tmp):
    labels = np.arange(20) % 10
    labels[7] = 42
    folder = _fake_mnist(tmp, labels)
    refused(md.DataCorruptError, rf"t10k-labels-idx1-ubyte\.gz is corrupt: label 42 at index 7 is "
                                 rf"outside 0\.\.9.*{_fix('mnist', tmp)}", md.load_mnist, root=tmp)
    assert md.load_mnist(root=_fake_mnist(tmp / "ok").parent)[1].max() == 9  # the clean copy loads


def _fake_omniglot(root: Path) -> Path:
    from PIL import Image
    folder = root / "omniglot"
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("L", (105, 105), 255).save(buf, format="PNG")
    png = buf.getvalue()
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        with zipfile.ZipFile(folder / name, "w") as zf:
            for c in range(2):
                for d in range(20):
                    zf.writestr(f"{name[:-4]}/Greek/character{c:02d}/{d:02d}.png", png)
    return folder


@bad_input
def b5_truncated_omniglot_zip(tmp):
    folder = _fake_omniglot(tmp)
    f = folder / "images_background_small2.zip"
    f.write_bytes(f.read_bytes()[:300])
    refused(md.DataCorruptError, rf"{re.escape(str(f))} is corrupt: BadZipFile.*{_fix('omniglot', tmp)}",
            md.load_omniglot, root=tmp, size=8)


@bad_input
def b5_omniglot_member_corrupt(tmp):
    folder = _fake_omniglot(tmp)
    f = folder / "images_background_small1.zip"
    data = bytearray(f.read_bytes())
    i = data.index(b"IDAT") + 8  # inside the first PNG's compressed pixels: CRC mismatch
    data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    refused(md.DataCorruptError, rf"{re.escape(str(f))} is corrupt.*{_fix('omniglot', tmp)}",
            md.load_omniglot, root=tmp, size=8)


@bad_input
def b5_oneshot_label_out_of_range(tmp):
    from PIL import Image
    folder = tmp / "omniglot"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("L", (105, 105), 255).save(buf, format="PNG")
    with zipfile.ZipFile(folder / "all_runs.zip", "w") as zf:
        for i in range(1, 21):
            zf.writestr(f"run01/training/class{i:02d}.png", buf.getvalue())
            zf.writestr(f"run01/test/item{i:02d}.png", buf.getvalue())
        zf.writestr("run01/class_labels.txt", "\n".join(
            f"run01/test/item{i:02d}.png run01/training/class{(42 if i == 3 else i):02d}.png"
            for i in range(1, 21)))
    refused(md.DataCorruptError, r"all_runs\.zip is corrupt: run01/class_labels\.txt line .*class 42 "
                                 rf"outside 1\.\.20.*{_fix('omniglot', tmp)}", md.load_oneshot_runs,
            root=tmp, size=8)


@bad_input
def b5_garbage_pde_file(tmp):
    (tmp / "pde").mkdir()
    f = tmp / "pde" / "burgers_shock.mat"
    f.write_bytes(os.urandom(300))
    refused(md.DataCorruptError, rf"{re.escape(str(f))} is corrupt: cannot read.*{_fix('pde', tmp)}",
            md.load_pde, "burgers", root=tmp)


# ============================================================ 6: OuterConfig
@bad_input
def b6_outer_config_values(tmp):
    cases = [(dict(checkpoint_every=0), r"checkpoint_every must be an integer >= 1, got 0"),
             (dict(checkpoint_every=2.5), r"checkpoint_every must be an integer >= 1, got 2\.5"),
             (dict(eval_every=-1), r"eval_every must be an integer >= 0, got -1"),
             (dict(lr="x"), r"outer lr must be a finite number > 0, got 'x' \(str\)"),
             (dict(lr=float("nan")), r"outer lr must be a finite number > 0, got nan"),
             (dict(lr=0), r"outer lr must be a finite number > 0, got 0"),
             (dict(lr=-1e-3), r"outer lr must be .*got -0\.001"),
             (dict(steps=-1), r"steps must be an integer >= 0, got -1"),
             (dict(steps="10"), r"steps must be an integer >= 0, got '10'"),
             (dict(seed=1.5), r"seed must be an integer, got 1\.5"),
             (dict(optimizer="rmsprop"), r"outer optimizer must be 'adam' or 'sgd', got 'rmsprop'"),
             (dict(options={"gama": 0.9}), r"method 'greedy' has no option\(s\) \['gama'\]"),
             (dict(method="nope"), r"unknown method 'nope'; available:")]
    for kw, pattern in cases:
        refused(mg.ConfigError, pattern, OuterConfig, **{"method": "greedy", **kw})
    cfg = OuterConfig("greedy", steps=np.int64(3), lr=np.float32(0.5), checkpoint_every=torch.tensor(2))
    accepted((type(cfg.steps), type(cfg.lr), cfg.checkpoint_every) == (int, float, 2),
             "numpy / tensor scalars in OuterConfig")


# ============================================================ 7: fetch
class _Handler(http.server.BaseHTTPRequestHandler):
    """``/slow/...``: 1 byte every 0.1 s of a 10 MB body; ``/drip-headers/...``: the status line
    and headers 1 byte every 0.1 s, never ending; ``/short/...``: promises 100 000 bytes, sends
    1 000 and closes; anything else: 500."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            if self.path.startswith("/slow"):
                self.send_response(200)
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                for _ in range(10_000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif self.path.startswith("/drip-headers"):  # status line and headers, 1 byte / 0.1 s
                for ch in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"z" * 10_000:
                    self.wfile.write(bytes([ch]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif self.path.startswith("/short"):
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"y" * 1000)
            else:
                self.send_error(500, "broken on purpose")
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextlib.contextmanager
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _res(url: str, name="blob.bin"):
    return md.Resource("toy", name, (url,), "sha256", "0" * 64)


@fault
def f7_trickling_server_hits_the_overall_deadline(tmp):
    with server() as url:
        start = time.monotonic()
        refused(md.DataNotFoundError, r"blob\.bin.*fetch deadline passed.*--deadline", md.download,
                _res(url + "/slow/blob.bin"), tmp, progress=False, quiet=True, timeout=5, deadline=1.5)
        took = time.monotonic() - start
    assert took < 5, f"took {took:.1f} s for a 1.5 s deadline"
    assert not list((tmp / "toy").iterdir())  # no .part left


@fault
def f7_trickled_headers_hit_the_overall_deadline(tmp):
    with server() as url:
        start = time.monotonic()
        refused(md.DataNotFoundError, r"blob\.bin.*fetch deadline passed while waiting for .* to answer",
                md.download, _res(url + "/drip-headers/blob.bin"), tmp, progress=False, quiet=True,
                timeout=5, deadline=1.5)
        took = time.monotonic() - start
    assert took < 5, f"took {took:.1f} s for a 1.5 s deadline"
    assert not list((tmp / "toy").iterdir())


@fault
def f7_connection_dropped_mid_body(tmp):
    with server() as url:
        refused(md.DataNotFoundError, r"connection closed after 1,000 of 100,000 bytes", md.download,
                _res(url + "/short/blob.bin"), tmp, progress=False, quiet=True, timeout=5)
        refused(md.DataNotFoundError, r"500", md.download, _res(url + "/err/blob.bin"), tmp,
                progress=False, quiet=True, timeout=5)
    assert not list((tmp / "toy").iterdir())


@fault
def f7_interrupt_removes_part_and_stale_parts_are_cleared(tmp):
    fetch_mod = sys.modules["metagrad.data.fetch"]
    folder = tmp / "toy"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / f".blob.bin.{dead.pid}.abcd.part"  # left by a process killed with -9
    stale.write_bytes(b"partial")

    def interrupted(url, dest, *args):
        dest.write(b"some bytes")
        raise KeyboardInterrupt
    with patched(fetch_mod, "_stream", interrupted):
        try:
            md.download(_res("http://127.0.0.1:9/blob.bin"), tmp, progress=False, quiet=True)
        except KeyboardInterrupt:
            pass
    assert not list(folder.iterdir())


def _fetch_child(root: str, mirror: str):
    """A forked child: ``metagrad fetch pde`` from ``mirror``; exits with the CLI's status."""
    sys.path.insert(0, str(HERE))
    import _fault_worker as w
    os._exit(w.fetch(root, mirror))


@fault
def f7_sigterm_during_fetch_removes_part(tmp):
    import multiprocessing as mp
    root = tmp / "data"
    with server() as url:
        child = mp.get_context("fork").Process(target=_fetch_child, args=(str(root), url + "/slow"))
        child.start()
        deadline = time.monotonic() + 120
        while not ((root / "pde").is_dir() and list((root / "pde").glob(".*.part"))):
            if time.monotonic() > deadline or not child.is_alive():
                child.kill()
                raise AssertionError(f"the fetch never started (exit {child.exitcode})")
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGTERM)
        child.join(60)
    assert child.exitcode == 130, child.exitcode  # 'interrupted', not killed by the signal
    assert not list((root / "pde").iterdir())


@bad_input
def b7_fetch_root_is_a_file(tmp):
    f = tmp / "afile"
    f.write_text("x")
    refused(mg.ConfigError, rf"data root {re.escape(str(f))} cannot be created: .* is a file, not a "
                            r"folder; pass a folder", md.fetch, "pde", f, progress=False, quiet=True)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["fetch", "pde", "--root", str(f / "sub"), "--quiet"]) == 1
    assert "is a file, not a folder" in err.getvalue() and "Traceback" not in err.getvalue()


@bad_input
def b7_fetch_bad_deadline(tmp):
    for kw in (dict(deadline=0), dict(deadline=-1), dict(timeout=float("nan"))):
        refused(mg.ConfigError, r"(deadline|timeout) must be a finite number of seconds > 0", md.fetch,
                "pde", tmp, progress=False, quiet=True, **kw)


# ============================================================ kill -9 mid-run, resume
def _outer_child(ck: str, flag: str):
    sys.path.insert(0, str(HERE))
    import _fault_worker as w
    w.run_outer(Path(ck), Path(flag))
    os._exit(0)


@fault
def f0_kill9_mid_run_then_resume_bit_identical(tmp):
    """A forked child runs the outer loop (fg2u, global-RNG batches, a checkpoint every 2 steps)
    and is killed with SIGKILL during step 6; the resumed run equals an uninterrupted one bit
    for bit (α and every record but the wall time)."""
    import multiprocessing as mp
    sys.path.insert(0, str(HERE))
    import _fault_worker as w
    ck, flag = tmp / "run.pt", tmp / "hanging"
    child = mp.get_context("fork").Process(target=_outer_child, args=(str(ck), str(flag)))
    child.start()
    deadline = time.monotonic() + 120
    while not flag.exists():
        if time.monotonic() > deadline or not child.is_alive():
            child.kill()
            raise AssertionError(f"the child never reached step {w.HANG_AT} (exit {child.exitcode})")
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert torch.load(ck, weights_only=True)["step"] == w.HANG_AT - w.HANG_AT % w.CHECKPOINT_EVERY
    resumed = w.run_outer(ck)
    full = w.run_outer(None)
    assert _eq_trees(resumed.alpha, full.alpha)
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in resumed.records]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time_s"} for r in full.records]


# ============================================================ 8: messages
@bad_input
def b8_numpy_and_tensor_scalars_as_options(tmp):
    problem, alpha = quad()
    ref = mg.hypergrad(problem, alpha, "greedy", gamma=0.5).grad["a"]
    for g in (np.float32(0.5), np.float64(0.5), torch.tensor(0.5), np.array(0.5)):
        accepted(torch.equal(mg.hypergrad(problem, alpha, "greedy", gamma=g).grad["a"], ref), f"gamma={g!r}")
    refused(mg.ConfigError, r"gamma must be in \(0, 1\], got 1\.5", mg.hypergrad, problem, alpha,
            "greedy", gamma=np.float32(1.5))
    ref = mg.hypergrad(problem, alpha, "fg2u", b=3, seed=0).grad["a"]
    accepted(torch.equal(mg.hypergrad(problem, alpha, "fg2u", b=np.int64(3), seed=np.int64(0)).grad["a"], ref),
             "b=np.int64(3), seed=np.int64(0)")
    refused(mg.ConfigError, r"b \(number of directions\) must be an integer >= 1, got 0", mg.hypergrad,
            problem, alpha, "fg2u", b=np.int64(0), seed=0)


@bad_input
def b8_horizon_as_numpy_or_tensor(tmp):
    problem, alpha = quad()
    accepted(problem.replace(T=np.int64(7)).T == 7, "T=np.int64(7)")
    accepted(type(problem.replace(T=torch.tensor(7)).T) is int, "T=torch.tensor(7)")
    for T, shown in ((np.float64(5.0), r"5\.0"), (torch.tensor(2.5), r"2\.5 \(Tensor\)"), ("5", "'5'"),
                     (np.int64(0), "0")):
        refused(mg.ConfigError, rf"T \(the horizon\) must be an integer >= 1, got {shown}.*pass e\.g\. T=10",
                problem.replace, T=T)


@bad_input
def b8_optimizer_ranges(tmp):
    cases = [(mg.SGD, dict(lr=-1), r"SGD\.lr must be a finite number > 0, got -1\.0; pass e\.g\. lr=0\.1 \(a per-parameter"),
             (mg.SGD, dict(lr=0), r"SGD\.lr must be a finite number > 0, got 0"),
             (mg.SGD, dict(lr=float("nan")), r"SGD\.lr must be a finite number > 0, got nan"),
             (mg.SGD, dict(lr=float("inf")), r"SGD\.lr must be a finite number > 0, got inf"),
             (mg.SGD, dict(lr=True), r"SGD\.lr must be a number or a callable"),
             (mg.SGD, dict(lr=torch.tensor(0.1, requires_grad=True)), r"SGD\.lr must be a number or a "
                                                                        r"callable.*to learn it, pass a callable"),
             (mg.Momentum, dict(momentum=1.5), r"Momentum\.momentum must be a number in \[0, 1\), got 1\.5"),
             (mg.Momentum, dict(momentum=1.0), r"Momentum\.momentum must be a number in \[0, 1\), got 1\.0"),
             (mg.Momentum, dict(momentum=-0.1), r"Momentum\.momentum must be a number in \[0, 1\)"),
             (mg.Adam, dict(beta1=1), r"Adam\.beta1 must be a number in \[0, 1\), got 1\.0; pass e\.g\. beta1=0\.9"),
             (mg.Adam, dict(beta2=1.0), r"Adam\.beta2 must be a number in \[0, 1\)"),
             (mg.Adam, dict(lr=float("nan")), r"Adam\.lr must be a finite number > 0, got nan"),
             (mg.Adam, dict(eps=-1e-8), r"Adam\.eps must be a finite number >= 0")]
    for cls, kw, pattern in cases:
        refused(mg.ConfigError, pattern, cls, **kw)
    accepted(mg.SGD(lr=np.float32(0.5)).lr == 0.5, "SGD(lr=np.float32(0.5))")
    accepted(mg.Momentum(momentum=torch.tensor(0.5)).momentum == 0.5, "Momentum(momentum=tensor(0.5))")
    mg.SGD(lr=lambda a: a["lr"])  # callables stay hyperparameters


@bad_input
def b8_nan_in_alpha_names_the_key(tmp):
    problem, alpha = quad()
    bad = {"a": alpha["a"].clone()}
    bad["a"][2] = float("nan")
    refused(mg.ConfigError, r"alpha\['a'\] holds 1 NaN/Inf value\(s\) \(first at flat index 2\)",
            mg.hypergrad, problem, bad, "rmd")
    def never(step):
        raise AssertionError("a step ran with a NaN alpha")
    refused(mg.ConfigError, r"alpha\['a'\] holds 1 NaN/Inf", outer_loop, never, bad, OuterConfig("rmd", steps=2),
            progress=False)
    nested = {"net": {"w": torch.tensor([1.0, float("inf")], dtype=torch.float64)}}
    bb = mg.BlackBoxProblem(solve=lambda a: a, outer_loss=lambda w, a, d: w["net"]["w"].sum())
    refused(mg.ConfigError, r"alpha\['net'\]\['w'\] holds 1 NaN/Inf", mg.hypergrad, bb, nested, "fg2u-zo",
            seed=0)


@bad_input
def b8_wrong_alpha_key_and_shape(tmp):
    problem, alpha = quad()
    refused(mg.ConfigError, r"inner_loss failed on the given alpha with KeyError: 'a'; key 'a' is not in "
                            r"alpha \(its keys are \['lam'\]\)", mg.hypergrad, problem,
            {"lam": alpha["a"]}, "rmd")
    refused(mg.ConfigError, r"inner_loss failed on the given alpha with RuntimeError: .*alpha is "
                            r"\{'a': tensor\(3,\)\}, w_0 is \{'w': tensor\(8,\)\}: check that alpha has the "
                            r"keys and shapes", mg.hypergrad, problem, {"a": alpha["a"][:3]}, "rmd")


def _wide(N=100_000):
    def inner(w, a, d):
        return 0.5 * (w["w"] ** 2).sum() - w["w"].sum() * a["a"].sum()
    problem = mg.BilevelProblem(inner, lambda w, a, d: (w["w"] ** 2).sum(),
                                init={"w": torch.zeros(10, dtype=torch.float64)}, T=2)
    return problem, {"a": torch.zeros(N, dtype=torch.float64)}


@bad_input
def b8_fg2u_directions_too_large_for_memory(tmp):
    problem, alpha = _wide()
    b = 10 ** 8  # 1e8 x 1e5 directions: ~2 PB, more than any machine has
    for method in ("fg2u", "fg2u-zo"):
        refused(mg.MemoryBudgetError, rf"{method} with b=100,000,000 would hold a 100,000,000 x 100,000 "
                                      r"direction matrix .*needing about .*free on cpu\. Pass b <= [\d,]+",
                mg.hypergrad, problem, alpha, method, b=b, seed=0)
    with patched(_checks, "available_bytes", lambda device: 10 ** 9):  # 1 GB: b <= 1e9 / 2.4e6 = 416
        exc = refused(mg.MemoryBudgetError, r"Pass b <= 41[0-9]\b", mg.hypergrad, problem, alpha,
                      "fg2u", b=1000, seed=0)
        fits = int(re.search(r"b <= ([\d,]+)", str(exc)).group(1).replace(",", ""))
        mg.hypergrad(*_wide(N=1000), "fg2u", b=fits, seed=0)  # within budget: runs


@bad_input
def b8_dict_directions_for_nested_alpha(tmp):
    def inner(w, a, d):
        return 0.5 * (w["w"] ** 2).sum() - (w["w"] * (a["layer"]["s"].sum() + a["b"])).sum()
    problem = mg.BilevelProblem(inner, lambda w, a, d: ((w["w"] - 1) ** 2).sum(),
                                init={"w": torch.zeros(3, dtype=torch.float64)}, T=3)
    alpha = {"layer": {"s": torch.ones(2, dtype=torch.float64)}, "b": torch.zeros(1, dtype=torch.float64)}
    V = torch.tensor([[1.0, -1, 1], [-1, -1, 1]], dtype=torch.float64)
    tree = {"b": V[:, 2:], "layer": {"s": V[:, :2]}}  # keys in another order: α's order is used
    flat = mg.hypergrad(problem, alpha, "fg2u", directions=V).grad
    as_tree = mg.hypergrad(problem, alpha, "fg2u", directions=tree).grad
    accepted(torch.equal(flat["layer"]["s"], as_tree["layer"]["s"]) and torch.equal(flat["b"], as_tree["b"]),
             "dict directions for a nested alpha")
    refused(mg.ConfigError, r"alpha and directions structure mismatch", mg.hypergrad, problem, alpha,
            "fg2u", directions={"b": V[:, 2:], "layer": {"t": V[:, :2]}})


@bad_input
def b8_minibatches_keep_every_example(tmp):
    data = {"x": torch.arange(10.0), "y": torch.arange(10)}
    sched = mg.minibatches(data, 4, seed=0)
    for epoch in range(3):
        seen = [sched(3 * epoch + k)["x"] for k in range(3)]
        assert [len(s) for s in seen] == [4, 4, 2]
        accepted(sorted(torch.cat(seen).tolist()) == list(range(10)), "n mod batch_size examples")
    dropped = mg.minibatches(data, 4, seed=0, drop_last=True)
    assert [len(dropped(t)["x"]) for t in range(4)] == [4, 4, 4, 4]
    for bs, shown in ((0, "0"), (11, "11"), (2.5, r"2\.5")):
        refused(mg.ConfigError, rf"batch_size must be .*got {shown}", mg.minibatches, data, bs)
    refused(mg.ConfigError, r"every tensor needs the same number of examples", mg.minibatches,
            {"x": torch.zeros(10), "y": torch.zeros(9)}, 2)
    refused(mg.ConfigError, r"minibatches: seed must be an integer, got 'x'", mg.minibatches, data, 2,
            seed="x")


@bad_input
def b5_image_size_and_result_config(tmp):
    refused(mg.ConfigError, r"load_digits: size must be an integer >= 1, got 0", md.load_digits, size=0)
    _fake_omniglot(tmp)
    refused(mg.ConfigError, r"load_omniglot: size must be an integer >= 1, got -3", md.load_omniglot,
            root=tmp, size=-3)
    refused(mg.ConfigError, rf"configuration of result {re.escape(str(tmp / 'r.json'))} must be a dict",
            results.save_result, tmp / "r.json", ["a"], {"x": 1})
