"""A Hugging Face BLIP checkpoint served as it is: ``export.export_hf`` writes a bundle of the checkpoint's own
tasks, checked by ``parity.check_parity`` against transformers' own model before it is moved into place.

Kept apart from ``dlip.hf`` (which distillation imports to load teachers) because it sits downstream of both the
exporter (``dlip.export``) and onnxruntime inference (``dlip.infer``)."""
