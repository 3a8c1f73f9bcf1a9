"""Torch datasets over the BLIP annotation formats (no torchvision); images are read lazily, one per item.

Each dataset checks a few of its images at construction (``verify_images``), so a wrong image root fails at once
with a ``DataError`` naming the missing file instead of minutes into training.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .annotations import (
    CaptionImage,
    CaptionPair,
    VQAItem,
    check_images,
    load_caption_eval,
    load_caption_train,
    load_vqa,
    pre_caption,
    pre_question,
)
from .transforms import ImagePreprocess


class _CaptionDataset(Dataset):
    """Caption annotations read by ``load`` (a file of BLIP's format), over images under ``image_root``; a sample of
    ``verify_images`` of the images is checked at load, so a wrong root fails here rather than mid-epoch.
    Subclasses index the records in ``_index`` (captions normalised with ``pre_caption`` to ``max_words``)."""

    def __init__(
        self,
        ann_path: str | os.PathLike,
        image_root: str | os.PathLike,
        preprocess: ImagePreprocess,
        max_words: int = 30,
        verify_images: int = 8,
    ):
        records = self.load(ann_path)
        check_images(records, image_root, sample=verify_images, source=ann_path)
        self.image_root = image_root
        self.preprocess = preprocess
        self._index(records, max_words)

    load: Callable[[str | os.PathLike], list]  # the subclass's annotation reader

    def _index(self, records: list, max_words: int) -> None:
        raise NotImplementedError


class CaptionTrainDataset(_CaptionDataset):
    """One item per caption: ``(image (3, S, S), caption, image_index)``, and with ``lm_first`` a fourth element,
    the first caption of the item's image in the annotation file (what the LM objective learns then).

    ``image_index`` is a dense id 0..num_images-1 per distinct ``image_id`` (in order of first appearance), like
    BLIP's ``idx``: ITC treats captions that share it as positives of each other.
    """

    load = staticmethod(load_caption_train)

    def __init__(self, *args, lm_first: bool = False, **kwargs):
        self.lm_first = lm_first
        super().__init__(*args, **kwargs)

    def _index(self, records: list[CaptionPair], max_words: int) -> None:
        self.pairs = records
        self.captions = [pre_caption(p.caption, max_words) for p in self.pairs]
        dense: dict[str | int, int] = {}
        self.image_index = [dense.setdefault(p.image_id, len(dense)) for p in self.pairs]
        self.num_images = len(dense)
        self.first_caption: dict[int, str] = {}
        for i, caption in zip(self.image_index, self.captions):
            self.first_caption.setdefault(i, caption)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, str, int] | tuple[Tensor, str, int, str]:
        image = self.preprocess(os.path.join(self.image_root, self.pairs[index].image))
        i = self.image_index[index]
        if self.lm_first:
            return image, self.captions[index], i, self.first_caption[i]
        return image, self.captions[index], i


class CaptionEvalDataset(_CaptionDataset):
    """One item per image: ``(image (3, S, S), image_index)``; the texts are attributes, as in BLIP's
    ``re_eval_dataset``:

    - ``texts``: every reference caption, normalised with ``pre_caption``, image by image;
    - ``image_paths``: path of each image (joined with the image root);
    - ``img2txt[i]``: indices into ``texts`` of image i's captions; ``txt2img[t]``: the image of text t;
    - ``images``: the raw annotations (raw captions, e.g. as captioning references).
    """

    load = staticmethod(load_caption_eval)

    def _index(self, records: list[CaptionImage], max_words: int) -> None:
        self.images = records
        self.image_paths = [os.path.join(self.image_root, im.image) for im in self.images]
        self.texts: list[str] = []
        self.img2txt: dict[int, list[int]] = {}
        self.txt2img: dict[int, int] = {}
        for i, im in enumerate(self.images):
            self.img2txt[i] = []
            for caption in im.captions:
                self.img2txt[i].append(len(self.texts))
                self.txt2img[len(self.texts)] = i
                self.texts.append(pre_caption(caption, max_words))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.preprocess(self.image_paths[index]), index


class VQADataset(Dataset):
    """VQA questions. ``split="train"``: ``(image, question, answers, weights)`` where answers are the distinct
    answers in order of first appearance and weights[k] = count(answers[k]) / number of answers (BLIP's weighting; a
    one-string answer gets weight 1.0, where BLIP gives its Visual Genome answers 0.2).
    ``split="test"``: ``(image, question, question_id)``; answers may be absent from the file.
    ``items`` keeps every raw annotation (e.g. all ten answers for ``vqa_acc``)."""

    def __init__(
        self,
        ann_path: str | os.PathLike,
        image_root: str | os.PathLike,
        preprocess: ImagePreprocess,
        split: str = "train",
        max_words: int = 30,
        verify_images: int = 8,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"VQADataset: split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.items: list[VQAItem] = load_vqa(ann_path, require_answers=split == "train")
        check_images(self.items, image_root, sample=verify_images, source=ann_path)
        self.image_root = image_root
        self.preprocess = preprocess
        self.questions = [pre_question(item.question, max_words) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, str, list[str], list[float]] | tuple[Tensor, str, int | str]:
        item = self.items[index]
        image = self.preprocess(os.path.join(self.image_root, item.image))
        if self.split == "test":
            return image, self.questions[index], item.question_id
        answers, weights = answer_weights(item.answers)
        return image, self.questions[index], answers, weights


def answer_weights(answers: tuple[str, ...] | list[str]) -> tuple[list[str], list[float]]:
    """Distinct answers (first-appearance order) and their share of all answers, as in BLIP's vqa_dataset."""
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return list(counts), [c / len(answers) for c in counts.values()]


# ---------------------------------------------------------------------------------------------------------------
# Collate functions (for torch DataLoader)
# ---------------------------------------------------------------------------------------------------------------


def collate_vqa_train(
    batch: list[tuple[Tensor, str, list[str], list[float]]],
) -> tuple[Tensor, list[str], list[str], Tensor, Tensor]:
    """Like BLIP's vqa_collate_fn: answers of all questions flattened into one list.

    -> images (B, 3, S, S), questions [B], answers [A] (A = sum of n), weights FloatTensor (A,), n LongTensor (B,)
    where n[b] answers belong to question b (``torch.repeat_interleave(x, n, dim=0)`` lines question rows up with
    answer rows).
    """
    images, questions, answers, weights, n = [], [], [], [], []
    for image, question, ans, w in batch:
        images.append(image)
        questions.append(question)
        answers += ans
        weights += w
        n.append(len(ans))
    return torch.stack(images), questions, answers, torch.tensor(weights, dtype=torch.float32), torch.tensor(n)
