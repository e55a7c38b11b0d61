"""Glue between ultra_fer_mamba and Ultralytics."""

from .ultralytics import register, resolve_model_yaml

__all__ = ("register", "resolve_model_yaml")
