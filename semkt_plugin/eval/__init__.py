"""Evaluation: metrics, the demo, the verdict experiment, the gradient-balance diagnostic."""
