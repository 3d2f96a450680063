"""vaekit.data: real data written in real formats, loaded back, compared to the source."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from sklearn.datasets import load_digits

from vaekit.data import (
    DataError,
    Preprocessor,
    dynamic_binarize,
    load_like_run,
    load_source,
    prepare,
    split_indices,
)
from vaekit.data.config import DataConfig

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MNIST = SHARED / "mnist"
FREY = SHARED / "frey" / "frey_rawface.mat"


# --- fixtures: the sklearn digits, written out in each format ---------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Digits as uint8 pixels (1797, 8, 8) in 0..240 and int64 labels (1797,)."""
    d = load_digits()
    return (d.images.astype(np.uint8) * 15), d.target.astype(np.int64)


def as_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) -> float32 (n, 1, H, W) in [0, 1], as the loader scales them."""
    return (pixels.astype(np.float32) / np.float32(255.0))[:, None]


def write_idx(path: Path, arr: np.ndarray, *, compress: bool = True) -> None:
    """IDX file: magic 0x00 0x00 0x08 <ndim>, big-endian uint32 dims, raw uint8 data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(arr, np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# --- digits and IDX ---------------------------------------------------------------------------


def test_builtin_digits_matches_sklearn() -> None:
    ds = load_source("digits")
    d = load_digits()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.kind == "image" and ds.name == "digits" and ds.classes is None
    np.testing.assert_allclose(ds.x[:, 0], d.images / 16, atol=1e-7)
    np.testing.assert_array_equal(ds.y, d.target)
    assert ds.y.dtype == np.int64


def test_idx_folder_concatenates_train_then_t10k_with_labels(tmp_path, digits) -> None:
    pixels, labels = digits
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", pixels[:1500])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:1500])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels[1500:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[1500:])
    ds = load_source(str(tmp_path))
    assert ds.x.shape == (1797, 1, 8, 8) and ds.kind == "image"
    np.testing.assert_array_equal(ds.x, as_unit(pixels))
    np.testing.assert_array_equal(ds.y, labels)


def test_idx_raw_images_file_path_finds_its_labels(tmp_path, digits) -> None:
    pixels, labels = digits
    write_idx(tmp_path / "t10k-images-idx3-ubyte", pixels, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress=False)
    ds = load_source(str(tmp_path / "t10k-images-idx3-ubyte"))
    np.testing.assert_array_equal(ds.x, as_unit(pixels))
    np.testing.assert_array_equal(ds.y, labels)


def test_idx_labels_without_images_are_ignored(tmp_path, digits) -> None:
    pixels, labels = digits
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels[:100])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:100])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)  # no train images beside it
    ds = load_source(str(tmp_path))
    assert len(ds) == 100
    np.testing.assert_array_equal(ds.y, labels[:100])


def test_idx_label_count_mismatch(tmp_path, digits) -> None:
    pixels, labels = digits
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels[:100])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:99])
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path))
    assert "99 labels" in one_line_error(e) and "100 images" in str(e.value)


def test_idx_bad_magic_and_truncation(tmp_path, digits) -> None:
    pixels, _ = digits
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(DataError, match="not an IDX file"):
        load_source(str(bad))
    cut = tmp_path / "cut-images-idx3-ubyte"
    write_idx(cut, pixels[:10], compress=False)
    cut.write_bytes(cut.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_source(str(cut))


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST test set not present")
def test_real_mnist_test_set() -> None:
    ds = load_source(str(MNIST))
    assert ds.x.shape == (10000, 1, 28, 28) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.y.tolist()[:10] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(ds.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not FREY.is_file(), reason="shared Frey Face file not present")
def test_real_frey_faces() -> None:
    ds = load_source(str(FREY), image_shape=(28, 20))
    assert ds.x.shape == (1965, 1, 28, 20) and ds.kind == "image" and ds.y is None
    ff = scipy.io.loadmat(FREY)["ff"]
    np.testing.assert_array_equal(ds.x, as_unit(ff.T.reshape(-1, 28, 20)))
    assert load_source(str(FREY), image_shape=(1, 28, 20)).x.shape == (1965, 1, 28, 20)


# --- MATLAB -----------------------------------------------------------------------------------


def test_mat_either_orientation(tmp_path, digits) -> None:
    pixels, _ = digits
    flat = pixels.reshape(len(pixels), 64)
    scipy.io.savemat(tmp_path / "rows.mat", {"faces": flat})
    scipy.io.savemat(tmp_path / "cols.mat", {"faces": flat.T})
    for name in ("rows.mat", "cols.mat"):
        ds = load_source(str(tmp_path / name), image_shape=(8, 8))
        np.testing.assert_array_equal(ds.x, as_unit(pixels))
    with pytest.raises(DataError, match="image_shape"):
        load_source(str(tmp_path / "rows.mat"))
    with pytest.raises(DataError, match="neither axis"):
        load_source(str(tmp_path / "rows.mat"), image_shape=(7, 7))


# --- image folders ----------------------------------------------------------------------------


def test_png_class_folders(tmp_path, digits) -> None:
    pixels, labels = digits
    pick = np.arange(0, 1797, 9)  # 200 images: enough for every class, fast to write
    for i in pick:
        folder = tmp_path / f"class_{labels[i]}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels[i], mode="L").save(folder / f"{i:04d}.png")
    ds = load_source(str(tmp_path))
    order = sorted(pick, key=lambda i: (labels[i], i))  # class folders, then file names
    assert ds.classes == [f"class_{k}" for k in range(10)]
    np.testing.assert_array_equal(ds.x, as_unit(pixels[order]))
    np.testing.assert_array_equal(ds.y, labels[order])
    assert ds.x.shape[1] == 1 and ds.kind == "image"


def test_rgb_images_flat_folder(tmp_path, digits) -> None:
    pixels, _ = digits
    rgb = np.stack([pixels[:12], pixels[12:24], pixels[24:36]], axis=-1)  # (12, 8, 8, 3)
    for i, img in enumerate(rgb):
        Image.fromarray(img, mode="RGB").save(tmp_path / f"{i:02d}.png")
    ds = load_source(str(tmp_path))
    assert ds.x.shape == (12, 3, 8, 8) and ds.y is None and ds.classes is None
    np.testing.assert_array_equal(ds.x, rgb.transpose(0, 3, 1, 2) / np.float32(255))


def test_jpeg_folder(tmp_path, digits) -> None:
    pixels, _ = digits
    big = np.kron(pixels[:3], np.ones((4, 4), np.uint8))  # (3, 32, 32): smooth enough for JPEG
    for i, img in enumerate(big):
        Image.fromarray(img, mode="L").save(tmp_path / f"{i}.jpg", quality=95)
    ds = load_source(str(tmp_path))
    assert ds.x.shape == (3, 1, 32, 32)
    assert np.abs(ds.x - as_unit(big)).mean() < 0.02  # lossy, but the same pictures


def test_ragged_png_sizes_name_both_files(tmp_path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path))
    msg = one_line_error(e)
    assert "a.png" in msg and "b.png" in msg


# --- CSV --------------------------------------------------------------------------------------


def test_csv_header_with_string_labels(tmp_path) -> None:
    d = load_digits()
    x = d.data / 16
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[d.target]
    path = tmp_path / "digits.csv"
    header = ",".join([f"p{i}" for i in range(64)] + ["digit"])
    rows = [",".join([*map(repr, r.tolist()), n]) for r, n in zip(x, names, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    ds = load_source(str(path), label_column="digit")
    assert ds.kind == "tabular" and ds.x.shape == (1797, 64)
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.classes == sorted(set(names.tolist()))
    assert [ds.classes[i] for i in ds.y] == names.tolist()


def test_csv_headerless_numeric_labels_and_image_shape(tmp_path) -> None:
    d = load_digits()
    path = tmp_path / "digits.csv"
    np.savetxt(path, np.column_stack([d.target, d.data]), delimiter=",", fmt="%d")
    ds = load_source(str(path), label_column="0", image_shape=(8, 8))
    assert ds.kind == "image" and ds.x.shape == (1797, 1, 8, 8) and ds.classes is None
    np.testing.assert_array_equal(ds.x, d.images[:, None].astype(np.float32))
    np.testing.assert_array_equal(ds.y, d.target)


def test_csv_non_numeric_cell_names_row_and_column(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n4,oops,6\n")
    with pytest.raises(DataError) as e:
        load_source(str(path))
    msg = one_line_error(e)
    assert "row 3" in msg and "column 2" in msg and "'b'" in msg and "oops" in msg


def test_csv_missing_label_column(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'label'"):
        load_source(str(path), label_column="label")


def test_csv_nan_says_how_many_and_where(tmp_path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("a,b\n1,2\n3,nan\nnan,4\n")
    with pytest.raises(DataError) as e:
        load_source(str(path))
    msg = one_line_error(e)
    assert "2 NaN/inf" in msg and "row 3" in msg and "'b'" in msg


# --- NumPy ------------------------------------------------------------------------------------


def test_npz_and_npy_round_trip(tmp_path, digits) -> None:
    pixels, labels = digits
    np.savez(tmp_path / "d.npz", x=pixels, y=labels)
    ds = load_source(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.x, as_unit(pixels))
    np.testing.assert_array_equal(ds.y, labels)

    np.savez(tmp_path / "single.npz", images=pixels)
    assert load_source(str(tmp_path / "single.npz")).x.shape == (1797, 1, 8, 8)

    flat = pixels.reshape(-1, 64)
    np.save(tmp_path / "flat.npy", flat)
    for mmap in (False, True):
        ds = load_source(str(tmp_path / "flat.npy"), image_shape=(8, 8), mmap=mmap)
        np.testing.assert_array_equal(ds.x, as_unit(pixels))
        assert ds.kind == "image" and ds.y is None

    tab = load_digits().data.astype(np.float32) - 3.5  # float: left as given
    np.save(tmp_path / "tab.npy", tab)
    ds = load_source(str(tmp_path / "tab.npy"), mmap=True)
    assert ds.kind == "tabular"
    np.testing.assert_array_equal(ds.x, tab)


def _mark(path: str) -> str:
    Path(path).write_text("unpickled")
    return path


class _Payload:
    """Unpickling this writes a marker file: proves whether the loader unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return _mark, (str(self.marker),)


def test_object_npy_is_refused_without_unpickling(tmp_path) -> None:
    marker = tmp_path / "marker"
    arr = np.empty(2, dtype=object)
    arr[:] = [_Payload(marker), _Payload(marker)]
    np.save(tmp_path / "evil.npy", arr, allow_pickle=True)
    np.savez(tmp_path / "evil.npz", x=arr)
    assert not marker.exists()
    for name in ("evil.npy", "evil.npz"):
        for mmap in (False, True):
            with pytest.raises(DataError, match="never unpickles"):
                load_source(str(tmp_path / name), mmap=mmap)
    assert not marker.exists()
    pickle.loads(pickle.dumps(arr[0]))  # the payload works when unpickled, so the check is real
    assert marker.exists()


def test_inf_in_npy(tmp_path) -> None:
    x = np.ones((5, 3), np.float32)
    x[2, 1] = np.inf
    np.save(tmp_path / "inf.npy", x)
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path / "inf.npy"))
    msg = one_line_error(e)
    assert "1 NaN/inf" in msg and "example 2" in msg and "(1,)" in msg


def test_empty_sources(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        load_source(str(empty))
    np.save(tmp_path / "zero.npy", np.zeros((0, 64), np.float32))
    with pytest.raises(DataError, match="0 examples"):
        load_source(str(tmp_path / "zero.npy"))
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="0 examples"):
        load_source(str(tmp_path / "header.csv"))


def test_label_length_mismatch(tmp_path) -> None:
    np.savez(tmp_path / "m.npz", x=np.zeros((10, 4), np.float32), y=np.arange(9))
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path / "m.npz"))
    assert "9 labels but 10 examples" in one_line_error(e)


def test_missing_file_unknown_type_and_bad_image_shape(tmp_path) -> None:
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path / "nope.npz"))
    assert "no such file" in one_line_error(e) and ".csv" in str(e.value)
    (tmp_path / "notes.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=r"unknown file type '\.txt'"):
        load_source(str(tmp_path / "notes.txt"))
    np.save(tmp_path / "x.npy", np.zeros((4, 10), np.float32))
    with pytest.raises(DataError, match="holds 9 values but each example has 10"):
        load_source(str(tmp_path / "x.npy"), image_shape=(3, 3))


# --- splits and preprocessing -----------------------------------------------------------------


def test_split_indices_deterministic_disjoint_covering() -> None:
    train, val, test = split_indices(1000, 0.1, 0.2, seed=3)
    again = split_indices(1000, 0.1, 0.2, seed=3)
    for a, b in zip((train, val, test), again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    every = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(every), np.arange(1000))  # disjoint and covering
    other = split_indices(1000, 0.1, 0.2, seed=4)
    assert not np.array_equal(test, other[2])
    assert [len(s) for s in split_indices(10, 0.0, 0.01, seed=0)] == [9, 0, 1]
    with pytest.raises(DataError):
        split_indices(2, 0.5, 0.4, seed=0)


def test_preprocessor_standardize_tabular_and_json_round_trip() -> None:
    x = load_digits().data.astype(np.float32)
    x[:, 5] = 2.0  # a constant feature must not divide by zero
    pre = Preprocessor.fit(x, DataConfig(standardize=True), "tabular")
    z = pre.transform(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    varying = x.std(axis=0) > 0
    np.testing.assert_allclose(z.std(axis=0)[varying], 1, atol=1e-4)
    back = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back == pre
    np.testing.assert_allclose(back.inverse(back.transform(x)), x, atol=1e-4)
    zt = back.transform(torch.from_numpy(x))
    assert isinstance(zt, torch.Tensor)
    assert isinstance(back.inverse(zt), torch.Tensor)
    with pytest.raises(DataError):
        Preprocessor.from_dict({**pre.to_dict(), "extra": 1})


def test_preprocessor_image_global_and_static_binarize() -> None:
    x = load_source("digits").x
    pre = Preprocessor.fit(x, DataConfig(standardize=True), "image")
    assert isinstance(pre.mean, float) and isinstance(pre.std, float)
    z = pre.transform(x)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4
    binary = Preprocessor.fit(x, DataConfig(binarize="static"), "image").transform(x)
    assert set(np.unique(binary).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(binary, (x > 0.5).astype(np.float32))
    dyn = Preprocessor.fit(x, DataConfig(binarize="dynamic"), "image")
    np.testing.assert_array_equal(dyn.transform(x), x)  # the trainer draws per epoch
    with pytest.raises(DataError, match="needs data in"):
        Preprocessor.fit(x * 2, DataConfig(binarize="static"), "image")


def test_prepare_digits_defaults() -> None:
    s = prepare(DataConfig())
    sizes = (len(s.train), len(s.val), len(s.test))
    assert sum(sizes) == 1797 and len(s.test) == round(0.2 * 1797) and len(s.val) == 180
    assert s.event_shape == (1, 8, 8) and s.kind == "image" and s.name == "digits"
    for part in (s.train, s.val, s.test):
        assert part.x.dtype == torch.float32 and part.x.is_contiguous()
        assert part.y is not None and part.y.dtype == torch.int64 and len(part.y) == len(part.x)
    again = prepare(DataConfig())
    assert torch.equal(s.test.x, again.test.x) and torch.equal(s.train.y, again.train.y)


def test_prepare_fits_on_train_and_load_like_run_matches(tmp_path) -> None:
    x = load_digits().data.astype(np.float32)
    np.save(tmp_path / "tab.npy", x)
    cfg = DataConfig(source=str(tmp_path / "tab.npy"), standardize=True)
    s = prepare(cfg)
    assert s.kind == "tabular" and s.train.y is None
    np.testing.assert_allclose(s.train.x.mean(0).numpy(), 0, atol=1e-5)  # train stats only
    pre = Preprocessor.from_dict(json.loads(json.dumps(s.preprocessor.to_dict())))
    xt, yt = load_like_run(str(tmp_path / "tab.npy"), cfg, pre)
    assert yt is None and xt.shape == (1797, 64)
    np.testing.assert_allclose(xt.numpy(), s.preprocessor.transform(x), atol=1e-6)
    flat, _ = load_like_run("digits", DataConfig(), pre, event_shape=(64,))
    assert flat.shape == (1797, 64)
    with pytest.raises(DataError, match="expects"):
        load_like_run("digits", DataConfig(), pre, event_shape=(65,))


def test_load_like_run_csv_without_the_label_column(tmp_path) -> None:
    d = load_digits()
    header = ",".join([f"p{i}" for i in range(64)])
    np.savetxt(tmp_path / "train.csv", np.column_stack([d.data, d.target]), delimiter=",",
               fmt="%d", header=header + ",digit", comments="")
    np.savetxt(tmp_path / "new.csv", d.data[:5], delimiter=",", fmt="%d", header=header,
               comments="")
    cfg = DataConfig(source=str(tmp_path / "train.csv"), label_column="digit", standardize=True)
    s = prepare(cfg)
    assert s.kind == "tabular" and s.event_shape == (64,) and s.train.y is not None
    x, y = load_like_run(str(tmp_path / "new.csv"), cfg, s.preprocessor)
    assert y is None
    np.testing.assert_allclose(x.numpy(), s.preprocessor.transform(d.data[:5]), atol=1e-6)
    x, y = load_like_run(str(tmp_path / "train.csv"), cfg, s.preprocessor)
    np.testing.assert_array_equal(y.numpy(), d.target)


def test_dynamic_binarize_is_seeded() -> None:
    x = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = dynamic_binarize(x, torch.Generator().manual_seed(1))
    b = dynamic_binarize(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, dynamic_binarize(x, torch.Generator().manual_seed(2)))


def test_memory_mapped_npy_trains_to_the_same_weights_as_in_memory(tmp_path):
    """--mmap: batches read from disk give exactly the in-memory run (same rows, same order)."""
    from vaekit import VAE, ModelConfig, TrainConfig
    from vaekit.data import LazyRows
    from vaekit.train.evaluate import evaluate
    from vaekit.train.loop import fit

    path = tmp_path / "digits.npy"
    np.save(path, (load_digits().data / 16).astype(np.float32).reshape(-1, 1, 8, 8))
    in_memory = prepare(DataConfig(source=str(path)))
    mapped = prepare(DataConfig(source=str(path), mmap=True))
    assert isinstance(mapped.train.x, LazyRows) and isinstance(mapped.train.x.array, np.memmap)
    idx = torch.tensor([5, 0, 17, 3])
    assert torch.equal(mapped.train.x[idx], in_memory.train.x[idx])
    results = []
    for splits in (in_memory, mapped):
        torch.manual_seed(0)
        model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), hidden=(32,), latent_dim=2))
        fit(model, splits.train.x, splits.val.x, TrainConfig(epochs=2), progress=False)
        results.append((model.state_dict(), evaluate(model, splits.test.x, k=10)))
    (w0, e0), (w1, e1) = results
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert e0 == e1
