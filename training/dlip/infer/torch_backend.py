"""The PyTorch backend: a ``BlipMED`` and its tokenizer behind the ``Backend`` interface (training-time evaluation).

Image tokens, question states and the decoder cache stay tensors on the model's device; only ids and masks come in
and features / logits go out as NumPy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.tokenizer import TextTokenizer
from ..data.transforms import ImagePreprocess
from ..model.med import BlipMED


class TorchBackend:
    """``model`` is put in eval mode (dropout off): the backend is for inference."""

    def __init__(self, model: BlipMED, tokenizer: TextTokenizer, preprocess: ImagePreprocess | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess or ImagePreprocess(model.cfg.vision.image_size)
        self.reads_image = bool(model.cfg.vqa_decoder_reads_image)
        self.device = next(model.parameters()).device

    def _tensor(self, x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    @torch.no_grad()
    def encode_images(self, pixel_values: np.ndarray) -> tuple[Tensor, np.ndarray]:
        embeds = self.model.encode_image(self._tensor(pixel_values)).last_hidden
        return embeds, _numpy(self.model.image_feature(embeds))

    @torch.no_grad()
    def encode_texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = self.model.encode_text(self._tensor(input_ids), self._tensor(attention_mask))
        return _numpy(self.model.text_feature(out.last_hidden))

    @torch.no_grad()
    def itm_logits(self, image_embeds: Tensor, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        fused = self.model.fuse(self._tensor(input_ids), self._tensor(attention_mask), image_embeds)
        return _numpy(self.model.itm_logits(fused.last_hidden))

    @torch.no_grad()
    def question_states(self, image_embeds: Tensor, input_ids: np.ndarray, attention_mask: np.ndarray) -> Tensor:
        return self.model.fuse(self._tensor(input_ids), self._tensor(attention_mask), image_embeds).last_hidden

    def decoder(self, encoder_hidden: Tensor, encoder_mask: np.ndarray | None, cached: bool = True) -> TorchDecoder:
        mask = None if encoder_mask is None else self._tensor(encoder_mask)
        return TorchDecoder(self, encoder_hidden, mask, cached)

    def take(self, x: Tensor, rows: np.ndarray) -> Tensor:
        return x[torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(x.device)]

    def cat(self, parts: list[Tensor], axis: int) -> Tensor:
        return torch.cat(parts, dim=axis)


class TorchDecoder:
    """``BlipMED.decode`` with its ``past_key_values`` and the decoder mask kept on the device between steps."""

    def __init__(self, backend: TorchBackend, encoder_hidden: Tensor, encoder_mask: Tensor | None, cached: bool):
        self.backend, self.cached = backend, cached
        self.encoder_hidden, self.encoder_mask = encoder_hidden, encoder_mask
        self.past = None
        self.mask = torch.empty(len(encoder_hidden), 0, dtype=torch.long, device=backend.device)

    @torch.no_grad()
    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        mask = torch.cat([self.mask, self.backend._tensor(attention_mask)], dim=1)  # (B, P+T)
        out = self.backend.model.decode(self.backend._tensor(input_ids), mask, self.encoder_hidden,
                                        self.encoder_mask, past_key_values=self.past, use_cache=self.cached)
        if self.cached:
            self.past, self.mask = out.past_key_values, mask
        return _numpy(out.logits)

    def reorder(self, rows: np.ndarray) -> None:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.backend.device)
        self.past = tuple((k[index], v[index]) for k, v in self.past)
        self.mask = self.mask[index]


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()
