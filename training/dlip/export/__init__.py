"""ONNX model bundles (FORMAT.md): export a trained model and check a bundle.

- ``contract``: the graph table of ``contract.json`` (exact input/output names, dtypes, shapes, dynamic axes) for a
  model's dims, and ``manifest.schema.json``, the two files the server reads too;
- ``wrappers``: one thin ``nn.Module`` per graph; ``export``: ``export_run`` / ``export_random`` / ``export_bundle``
  write a bundle; ``precision``: ONNX external data for large graphs, float16 variants;
- ``manifest``: ``write_manifest`` / ``read_manifest`` (the schema) / ``validate_bundle``.

Running and scoring a bundle live downstream of this package: ``dlip.infer.ort_backend`` (onnxruntime inference
behind the evaluation protocol's ``Backend``) and ``dlip.eval.bundle`` (test-split metrics, decoding parity with the
PyTorch model); so does ``dlip.hf_bundle.export`` (a Hugging Face BLIP checkpoint as it is, checked against transformers
by ``dlip.hf_bundle.parity``), which runs the bundle it writes.
"""
