"""Packaged model YAMLs (installed as ultra_fer_mamba.model_yamls)."""
