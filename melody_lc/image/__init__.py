"""Image mode: MNIST and CelebA loaders, the paper's MLP and conv VAEs, training, and attribute
constraints on the same engine as the melodies (see data.py, model.py, train.py, latent.py)."""
