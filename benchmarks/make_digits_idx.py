"""Write scikit-learn's copy of the UCI handwritten digits (1,797 images, 8 x 8) in MNIST's layout
(IDX files, 28 x 28, 0-255), for a real-data run of image mode where MNIST itself cannot be fetched.

    python benchmarks/make_digits_idx.py OUT_DIR      # then: melody-lc image train --dataset mnist --data OUT_DIR

The first 1,500 images become the training split, the other 297 the test split. They are real
handwriting but much coarser than MNIST (8 x 8 upscaled): figures from them are not MNIST's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


def main() -> None:
    from sklearn.datasets import load_digits  # installed with note-seq's dependencies

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    big = np.stack(
        [
            np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((20, 20), Image.BICUBIC))
            for im in d.images
        ]
    )
    images = np.zeros((len(big), 28, 28), np.uint8)
    images[:, 4:24, 4:24] = big  # a 20 x 20 digit centred in 28 x 28, as MNIST's are
    labels = d.target.astype(np.uint8)
    for split, sl in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        (out / f"{split}-images-idx3-ubyte").write_bytes(idx(images[sl]))
        (out / f"{split}-labels-idx1-ubyte").write_bytes(idx(labels[sl]))
    print(f"wrote {len(images)} digits to {out} (train 1500, test {len(images) - 1500})")


if __name__ == "__main__":
    main()
