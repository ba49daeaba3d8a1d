"""vsr core: contracts and shared machinery for latent-diffusion video super-resolution methods."""

__version__ = "0.1.0"
