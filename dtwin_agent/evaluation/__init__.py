"""Evaluation: dataset loaders, gIoU / cIoU exactly as LISA computes them, the resumable runner."""
