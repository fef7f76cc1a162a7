"""The early-exit encoder, its artifacts on disk, and tokenisation."""

from dimee.model.artifacts import load_model, load_tokenizer, save_model
from dimee.model.early_exit import EarlyExitEncoder, ExitResult, ModelSpec

__all__ = ["EarlyExitEncoder", "ExitResult", "ModelSpec", "load_model", "load_tokenizer", "save_model"]
