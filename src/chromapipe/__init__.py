"""chromapipe: train, compare and use GAN image colorizers (PalGAN, ChromaGAN, pix2pix) as one DVC pipeline."""

__version__ = "0.1.0"
