"""Inference over a backend: the evaluation protocol written once, run on PyTorch or on a bundle's ONNX graphs.

- ``backend``: the ``Backend`` interface (encoders, ITM, question states, a decoder cache) and the model's text
  conventions every backend shares ([ENC]/[DEC] first tokens, the VQA answer decoder's context);
- ``torch_backend.TorchBackend``: a ``BlipMED`` and its tokenizer (training-time evaluation);
- ``ort_backend.OrtBackend``: a bundle directory run by onnxruntime (FORMAT.md), the reference for the server;
- ``search``: greedy and beam search over a decoder cache, and BLIP's answer ranking;
- ``tasks``: batched retrieval scores (ITC top-k + ITM re-rank), captions and VQA answers.

Like text-embeddings-inference's router and backends: the search and task logic never knows which runtime it drives.
"""
