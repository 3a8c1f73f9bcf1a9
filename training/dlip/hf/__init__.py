"""Hugging Face checkpoints as DLIP teachers."""

from .blip import HFTeacher, is_hf_blip_dir, load_hf_blip

__all__ = ["HFTeacher", "is_hf_blip_dir", "load_hf_blip"]
