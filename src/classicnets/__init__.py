"""Classic deep-learning architectures, trained with PyTorch Lightning and composed with Hydra."""

__version__ = "0.2.0"
