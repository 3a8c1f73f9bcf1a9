"""Hugging Face BLIP checkpoints as DLIP teachers (``blip``) and random-weight stand-ins (``stand_in``); served as
they are by ``dlip.hf_bundle``."""

from .blip import HFTeacher, is_hf_blip_dir, load_hf_blip

__all__ = ["HFTeacher", "is_hf_blip_dir", "load_hf_blip"]
