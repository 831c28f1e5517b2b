"""LinearSR: batch image upscaling with a linear-attention diffusion SR model."""

__version__ = "0.1.0"
