"""V-GAN retinal-vessel segmentation in plain PyTorch (no Ray, Optuna or MLflow here)."""

__version__ = "0.1.0"
