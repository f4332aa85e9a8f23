"""Training: losses, curriculum, sampler, loop, checkpoints, metrics, IDF weights and distillation."""
