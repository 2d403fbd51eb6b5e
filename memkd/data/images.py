"""Real images for the memorization experiments: CIFAR-10, an offline stand-in, and the shuffles.

What is here, from small parts to the whole:
    md5sum, read_cifar10_archive     the official python-format archive, read without extracting it
    download_cifar10, load_cifar10   torchvision where importable, else a local archive, else a
                                     standard-library download into the cache (checksum verified)
    load_digits                      scikit-learn's bundled 8x8 digits: real images, no download
    load_images                      dataset="cifar10" | "digits" | "auto" (CIFAR-10, else digits)
    shuffle_labels, shuffle_pixels, permute_pixels, standardize, split_memorized

Shapes: N images, D = channels x height x width features (flattened, channel-major as in the
archive), C classes. The cache folder is `$MEMKD_DATA`, else `~/.cache/memkd`.

What is left out: augmentation, the CIFAR-10 test split in the experiments (the paper's D and its
trivial set both come from the training split), and any image model other than the MLP.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memkd.config import invalid

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATASETS = ("auto", "cifar10", "digits")


class DatasetUnavailable(FileNotFoundError):
    """The data set is neither on disk nor downloadable; the message says what to do."""


class ChecksumError(ValueError):
    """A downloaded or local archive does not have the published MD5 checksum."""


@dataclass
class ImageSet:
    """Flattened images with integer labels.

    x : uint8 or float32 array of shape (N, D), channel-major (all of channel 0, then channel 1...)
    y : int64 array of shape (N,)
    """

    x: np.ndarray
    y: np.ndarray
    name: str  # "cifar10" or "digits"
    image_shape: tuple[int, int, int]  # (channels, height, width), D = their product
    class_names: tuple[str, ...]
    source: str  # where it came from, e.g. the archive path or "torchvision"

    @property
    def classes(self) -> int:
        return len(self.class_names)


def cache_dir() -> Path:
    """`$MEMKD_DATA`, else `~/.cache/memkd` (created on demand by the loaders)."""
    return Path(os.environ.get("MEMKD_DATA") or Path.home() / ".cache" / "memkd")


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path: Path, md5: str | None, name: str = "path", owner: str = "read_cifar10_archive") -> None:
    if md5 is None:
        return
    found = md5sum(path)
    if found != md5:
        raise invalid(
            name,
            owner,
            error=ChecksumError,
            says=f"must give the official {CIFAR10_ARCHIVE}: {path} has MD5 {found}, expected {md5} (the "
            f"published checksum of {CIFAR10_ARCHIVE}). The file is damaged or not the official archive: "
            f"delete it and download it again from {CIFAR10_URL}.",
        )


def _unpickle(raw: bytes) -> dict:
    return pickle.loads(raw, encoding="bytes")


def _batches_to_set(batches: list[dict], meta: dict | None, source: str) -> ImageSet:
    x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    y = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    names = CIFAR10_CLASSES
    if meta is not None and b"label_names" in meta:
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"])
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise invalid(
            "path",
            "read_cifar10_archive",
            must="hold (N, 3072) uint8 data and N labels",
            shown=f"{source}, which holds data of shape {x.shape} and {len(y)} labels,",
        )
    return ImageSet(x, y, "cifar10", (3, 32, 32), names, source)


def read_cifar10_archive(path: str | Path, split: str = "train", md5: str | None = CIFAR10_MD5) -> ImageSet:
    """Read the official python-format archive (a .tar.gz) or its extracted folder.

    split : "train" (data_batch_1..5, 50,000 images) or "test" (test_batch, 10,000 images).
    md5 : the archive's expected checksum; None skips the check (an extracted folder has none).
    """
    if split not in ("train", "test"):
        raise invalid("split", "read_cifar10_archive", "'train' or 'test'", split)
    names = CIFAR10_TRAIN_BATCHES if split == "train" else ("test_batch",)
    path = Path(path)
    if path.is_dir():
        folder = path / CIFAR10_FOLDER if (path / CIFAR10_FOLDER).is_dir() else path
        batches = [_unpickle((folder / n).read_bytes()) for n in names]
        meta_file = folder / "batches.meta"
        meta = _unpickle(meta_file.read_bytes()) if meta_file.is_file() else None
        return _batches_to_set(batches, meta, str(folder))
    _check_md5(path, md5)
    with tarfile.open(path, "r:gz") as archive:

        def member(name: str) -> bytes | None:
            try:
                handle = archive.extractfile(f"{CIFAR10_FOLDER}/{name}")
            except KeyError:
                return None
            return handle.read() if handle is not None else None

        raw = [member(n) for n in names]
        missing = [n for n, r in zip(names, raw) if r is None]
        if missing:
            raise invalid(
                "path",
                "read_cifar10_archive",
                "the python-format CIFAR-10 archive",
                shown=f"{path}, which lacks {CIFAR10_FOLDER}/{missing[0]},",
            )
        meta_raw = member("batches.meta")
    meta = _unpickle(meta_raw) if meta_raw is not None else None
    return _batches_to_set([_unpickle(r) for r in raw], meta, str(path))


def _missing_message(folder: Path, reason: str) -> str:
    return (
        f"load_cifar10: CIFAR-10 is not in {folder} and could not be downloaded from "
        f"{CIFAR10_URL} ({reason}). Download {CIFAR10_ARCHIVE} (MD5 {CIFAR10_MD5}) on a machine "
        f"with network access and put it in {folder}, or set the MEMKD_DATA environment variable "
        f"to the folder that holds it, or pass its path as `root`; or use dataset='digits' (or "
        f"'auto') to run on scikit-learn's bundled 8x8 digits instead."
    )


def download_cifar10(
    folder: str | Path | None = None, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 30.0
) -> Path:
    """Download the archive into `folder` (default: the cache), verify its MD5, return its path."""
    folder = Path(folder) if folder is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CIFAR10_ARCHIVE
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DatasetUnavailable(_missing_message(folder, f"{type(err).__name__}: {err}")) from err
    try:
        _check_md5(partial, md5, "url", "download_cifar10")
    except ChecksumError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def _load_torchvision(root: Path, split: str, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10  # optional: present on Colab

    try:
        data = CIFAR10(str(root), train=(split == "train"), download=download)
    except (RuntimeError, OSError) as err:  # not downloaded and no network, or a bad archive
        raise DatasetUnavailable(_missing_message(root, f"torchvision: {err}")) from err
    # torchvision keeps (N, 32, 32, 3); the archive's layout is channel-major (N, 3, 32, 32)
    x = np.ascontiguousarray(np.asarray(data.data).transpose(0, 3, 1, 2)).reshape(len(data.data), -1)
    return ImageSet(
        x, np.asarray(data.targets, dtype=np.int64), "cifar10", (3, 32, 32), tuple(data.classes), "torchvision"
    )


def load_cifar10(
    root: str | Path | None = None,
    split: str = "train",
    download: bool = True,
    md5: str | None = CIFAR10_MD5,
    use_torchvision: bool | None = None,
) -> ImageSet:
    """CIFAR-10 as uint8 (N, 3072) images and int64 labels.

    root : the archive itself, or a folder holding it (or its extracted folder); default: the cache.
    use_torchvision : None uses torchvision when it is importable and no archive path was given.
    Raises DatasetUnavailable (saying where to put the archive) or ChecksumError.
    """
    if use_torchvision is None:
        use_torchvision = root is None and importlib.util.find_spec("torchvision") is not None
    folder = Path(root) if root is not None else cache_dir()
    if use_torchvision:
        return _load_torchvision(folder, split, download)
    if folder.is_file():
        return read_cifar10_archive(folder, split, md5)
    if (folder / CIFAR10_ARCHIVE).is_file():
        return read_cifar10_archive(folder / CIFAR10_ARCHIVE, split, md5)
    if (folder / CIFAR10_FOLDER).is_dir():
        return read_cifar10_archive(folder / CIFAR10_FOLDER, split, None)
    if not download:
        raise DatasetUnavailable(_missing_message(folder, "download=False"))
    return read_cifar10_archive(download_cifar10(folder, md5=md5 or CIFAR10_MD5), split, md5)


def load_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, pixel values 0..16)."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise DatasetUnavailable(
            "load_digits needs scikit-learn (pip install scikit-learn) for its bundled 8x8 digits."
        ) from err
    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.uint8)  # values 0..16
    return ImageSet(
        x,
        np.asarray(bunch.target, dtype=np.int64),
        "digits",
        (1, 8, 8),
        tuple(str(i) for i in range(10)),
        "sklearn.datasets.load_digits",
    )


def load_images(dataset: str = "auto", root: str | Path | None = None, download: bool = True) -> tuple[ImageSet, str]:
    """The training images of `dataset`, and a note ("" unless "auto" fell back to digits).

    dataset : "cifar10" (fails loudly when unavailable), "digits", or "auto" (CIFAR-10 when it can
    be had, else the digits with a note saying why).
    """
    if dataset not in DATASETS:
        raise invalid("dataset", "load_images", f"one of {DATASETS}", dataset)
    if dataset == "digits":
        return load_digits(), ""
    try:
        return load_cifar10(root, "train", download), ""
    except DatasetUnavailable as err:
        if dataset == "cifar10":
            raise
        note = (
            "CIFAR-10 could not be loaded here, so this run uses scikit-learn's 8x8 digits "
            f"instead: not run on CIFAR-10 in this build. ({str(err).split(' (')[0]}.)"
        )
        return load_digits(), note


# ---------------------------------------------------------------- shuffles and splits


def shuffle_labels(y: np.ndarray, seed: int) -> np.ndarray:
    """One random permutation of the labels: each image gets another image's label.

    The label multiset (so class balance) is kept; the link between image and label is gone.
    """
    return np.asarray(y)[np.random.default_rng(seed).permutation(len(y))]


def _pixel_view(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    channels, height, width = image_shape
    return x.reshape(len(x), channels, height * width)  # (N, channels, pixels)


def shuffle_pixels(x: np.ndarray, image_shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Each image gets its own random permutation of its pixel positions (channels move together).

    x : array of shape (N, D); returns a new array of shape (N, D). Each image keeps its multiset
    of pixels (so its colour histogram); all spatial structure shared between images is gone.
    This is the book's reading of the paper's "shuffle the pixels in the input", whose wording
    also allows one order shared by all images (`permute_pixels`) or orders per colour channel.
    """
    view = _pixel_view(np.asarray(x), image_shape)
    n, _, pixels = view.shape
    order = np.argsort(np.random.default_rng(seed).random((n, pixels)), axis=1)  # (N, pixels)
    out = np.take_along_axis(view, order[:, None, :], axis=2)
    return out.reshape(n, -1)


def permute_pixels(x: np.ndarray, image_shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """One fixed permutation of pixel positions shared by all images.

    A sanity check: an MLP has no notion of neighbouring pixels, so this changes nothing for it
    (its first layer can absorb any fixed permutation of its inputs).
    """
    view = _pixel_view(np.asarray(x), image_shape)
    order = np.random.default_rng(seed).permutation(view.shape[2])
    return view[:, :, order].reshape(len(x), -1)


def standardize(x: np.ndarray, image_shape: tuple[int, int, int], reference: np.ndarray | None = None) -> np.ndarray:
    """float32 images with zero mean and unit variance per channel (statistics of `reference`)."""
    ref = _pixel_view(np.asarray(x if reference is None else reference, dtype=np.float32), image_shape)
    mean = ref.mean(axis=(0, 2), keepdims=True)
    std = ref.std(axis=(0, 2), keepdims=True) + 1e-6
    out = (_pixel_view(np.asarray(x, dtype=np.float32), image_shape) - mean) / std
    return out.reshape(len(x), -1).astype(np.float32)


def split_memorized(
    y: np.ndarray, fraction: float = 0.8, seed: int = 0, per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the memorized set D (balanced classes) and of the trivial set (the rest).

    Each class gives the same number of images to D: `per_class` when given (a subsample, for
    CPU budgets), else `fraction` of the smallest class. The trivial set is every image not in D
    when per_class is None, else an equally subsampled remainder of (1 - fraction) / fraction x
    per_class images per class.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = per_class if per_class is not None else int(round(fraction * counts.min()))
    rest_take = None if per_class is None else int(round(per_class * (1 - fraction) / fraction))
    if take < 1 or take >= counts.min():
        name, value = ("per_class", per_class) if per_class is not None else ("fraction", fraction)
        raise invalid(
            name,
            "split_memorized",
            must=f"leave a trivial set: {take} images per class in D leaves none (the "
            f"smallest class has {counts.min()} images)",
            got=value,
        )
    memorized, trivial = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        memorized.append(idx[:take])
        rest = idx[take:]
        trivial.append(rest if rest_take is None else rest[:rest_take])
    return np.sort(np.concatenate(memorized)), np.sort(np.concatenate(trivial))
