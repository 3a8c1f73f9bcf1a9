"""Readers and validators for the annotation files BLIP uses, plus BLIP's text normalisation.

Formats (as distributed with salesforce/BLIP; COCO-Karpathy and Flickr30K share them):

- caption train: a JSON list, one entry per caption: ``{"image": path, "caption": str, "image_id": str | int}``;
- caption val/test: a JSON list, one entry per image: ``{"image": path, "caption": [str, ...]}``;
- VQAv2: a JSON list of ``{"question_id": int | str, "image": path, "question": str, "answer": [str, ...]}``.
  Extra keys ("dataset", "question_type", ...) are allowed; a single answer string is read as a one-answer list;
  test files may have no "answer" (allowed with ``require_answers=False``).

Image paths are relative to an image root given separately. The loaders validate the shape and return small frozen
dataclasses holding the raw text; normalisation (``pre_caption`` / ``pre_question``) is applied by the datasets.
Every problem raises ``DataError`` naming the file, and the entry index and key where relevant.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .errors import DataError

# ---------------------------------------------------------------------------------------------------------------
# Text normalisation, exactly as salesforce/BLIP data/utils.py
# ---------------------------------------------------------------------------------------------------------------

_BLIP_PUNCT = re.compile(r"([.!\"()*#:;~])")
_MULTI_SPACE = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = 50) -> str:
    """BLIP's caption cleaning: lowercase; ``. ! " ( ) * # : ; ~`` become spaces; runs of whitespace become one
    space; strip; keep the first ``max_words`` space-separated words. Commas, apostrophes, '?' and '-' are kept."""
    caption = _BLIP_PUNCT.sub(" ", caption.lower())
    caption = _MULTI_SPACE.sub(" ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question cleaning: lowercase; ``. ! " ( ) * # : ; ~`` are deleted (not replaced by spaces); trailing
    spaces stripped; keep the first ``max_words`` space-separated words. Unlike ``pre_caption`` it neither
    collapses inner whitespace nor strips leading spaces (BLIP does not either)."""
    question = _BLIP_PUNCT.sub("", question.lower())
    question = question.rstrip(" ")
    words = question.split(" ")
    if len(words) > max_words:
        question = " ".join(words[:max_words])
    return question


# ---------------------------------------------------------------------------------------------------------------
# Typed entries
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionPair:
    """One training caption (caption train files hold one entry per caption)."""

    image: str  # image path relative to the image root
    caption: str  # raw caption text, as in the file
    image_id: str | int  # shared by all captions of one image


@dataclass(frozen=True)
class CaptionImage:
    """One val/test image with all its reference captions."""

    image: str  # image path relative to the image root
    captions: tuple[str, ...]  # raw reference captions, at least one


@dataclass(frozen=True)
class VQAItem:
    """One VQA question."""

    question_id: int | str
    image: str  # image path relative to the image root
    question: str  # raw question text
    answers: tuple[str, ...] | None  # annotators' answers, repeats kept (VQAv2 has 10); None if the file has none
    question_type: str | None = None  # e.g. VQAv2's "question_type" or Shapes' "color"; None if absent


# ---------------------------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------------------------


def load_caption_train(path: str | os.PathLike) -> list[CaptionPair]:
    """Reads a caption train file (one entry per caption)."""
    src, entries = _load_entries(path)
    pairs = []
    for i, entry in enumerate(entries):
        where = f"{src}: entry {i}"
        pairs.append(
            CaptionPair(
                image=_image_path(entry, where),
                caption=_get(entry, "caption", str, "a string", where),
                image_id=_get(entry, "image_id", (str, int), "a string or an integer", where),
            )
        )
    return pairs


def load_caption_eval(path: str | os.PathLike) -> list[CaptionImage]:
    """Reads a caption val/test file (one entry per image, a list of reference captions each)."""
    src, entries = _load_entries(path)
    images = []
    for i, entry in enumerate(entries):
        where = f"{src}: entry {i}"
        images.append(CaptionImage(image=_image_path(entry, where), captions=_string_list(entry, "caption", where)))
    return images


def load_vqa(path: str | os.PathLike, require_answers: bool = True) -> list[VQAItem]:
    """Reads a VQA file. With ``require_answers=False`` (test files) "answer" may be absent; it is kept if present,
    so a val file used as a test split still carries what ``vqa_acc`` needs."""
    src, entries = _load_entries(path)
    items = []
    for i, entry in enumerate(entries):
        where = f"{src}: entry {i}"
        answers = None
        if "answer" in entry or require_answers:
            if isinstance(entry.get("answer"), str):  # Visual Genome style: one answer string
                answers = (entry["answer"],)
            else:
                answers = _string_list(entry, "answer", where)
        items.append(
            VQAItem(
                question_id=_get(entry, "question_id", (int, str), "an integer or a string", where),
                image=_image_path(entry, where),
                question=_get(entry, "question", str, "a string", where),
                answers=answers,
                question_type=entry["question_type"] if isinstance(entry.get("question_type"), str) else None,
            )
        )
    return items


def check_images(
    items: Sequence[CaptionPair | CaptionImage | VQAItem],
    image_root: str | os.PathLike,
    sample: int | None = None,
    source: str | os.PathLike | None = None,
) -> None:
    """Raises ``DataError`` on the first entry whose image file does not exist under ``image_root``.

    ``sample=None`` checks every distinct image; ``sample=k`` checks k distinct images spread evenly over the list
    (first and last included), a fast guard against a wrong image root. ``source`` (the annotation file) is named
    in the message when given.
    """
    if sample is not None and sample < 0:
        raise ValueError(f"check_images: sample must be >= 0 or None, got {sample}")
    first_entry: dict[str, int] = {}  # distinct image path -> index of its first entry
    for i, item in enumerate(items):
        first_entry.setdefault(item.image, i)
    paths = list(first_entry)
    if sample is not None and sample < len(paths):
        if sample == 0:
            return
        step = (len(paths) - 1) / max(sample - 1, 1)
        paths = [paths[round(k * step)] for k in range(sample)]
    for rel in tqdm(paths, desc="checking images", unit="img", disable=len(paths) < 10_000):
        full = os.path.join(image_root, rel)
        if not os.path.isfile(full):
            where = f"{source}: entry {first_entry[rel]}: " if source is not None else f"entry {first_entry[rel]}: "
            raise DataError(f"{where}image file not found: {full}")


# ---------------------------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------------------------


def _load_entries(path: str | os.PathLike) -> tuple[str, list[dict[str, Any]]]:
    """Reads a JSON file whose top level must be a non-empty list of objects; returns (name for messages, list)."""
    src = str(path)
    if not Path(path).is_file():
        raise DataError(f"no such annotation file: {src}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f"{src}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{src}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(data, list):
        raise DataError(f"{src}: the top level must be a list of entries, got {_type_name(data)}")
    if not data:
        raise DataError(f"{src}: the file holds no entries")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DataError(f"{src}: entry {i}: expected an object, got {_type_name(entry)}")
    return src, data


def _get(entry: dict[str, Any], key: str, types: type | tuple[type, ...], expected: str, where: str) -> Any:
    if key not in entry:
        raise DataError(f'{where}: missing key "{key}"')
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, types):  # bool is an int subclass; never a valid id
        raise DataError(f'{where}: "{key}" must be {expected}, got {_type_name(value)}')
    return value


def _image_path(entry: dict[str, Any], where: str) -> str:
    image = _get(entry, "image", str, "a string (an image path)", where)
    if not image.strip():
        raise DataError(f'{where}: "image" is an empty string')
    return image


def _string_list(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _get(entry, key, list, "a list of strings", where)
    if not value:
        raise DataError(f'{where}: "{key}" must be a non-empty list of strings, got an empty list')
    for j, s in enumerate(value):
        if not isinstance(s, str):
            raise DataError(f'{where}: "{key}" must be a list of strings, item {j} is {_type_name(s)}')
    return tuple(value)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
