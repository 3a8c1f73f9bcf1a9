"""ONNX model bundles (FORMAT.md): export a trained model, check a bundle, run and score it with onnxruntime.

- ``contract``: the graph table of ``contract.json`` (exact input/output names, dtypes, shapes, dynamic axes) for a
  model's dims, and ``manifest.schema.json``, the two files the server reads too;
- ``wrappers``: one thin ``nn.Module`` per graph; ``export``: ``export_run`` / ``export_random`` write a bundle;
- ``manifest``: ``write_manifest`` / ``read_manifest`` (the schema) / ``validate_bundle``;
- ``ort_model.BundleModel``: onnxruntime inference of a bundle (``decoding``: greedy / beam search in NumPy);
- ``evaluate_bundle``: the test-split metrics of a bundle, and decoding parity with the PyTorch model.
"""
