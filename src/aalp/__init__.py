"""Adaptive Adversarial Logits Pairing (AALP), reproduced as a pipeline."""
__version__ = "0.1.0"
