"""Hydra discovers plugins only inside the `hydra_plugins` namespace package; this one is mnist-study's Sweeper."""
