"""Annotation loaders, BLIP text normalisation and the datasets built on them, on tiny hand-made files."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from dlip.data.annotations import (
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
from dlip.data.datasets import (
    CaptionEvalDataset,
    CaptionTrainDataset,
    VQADataset,
    answer_weights,
    collate_vqa_train,
)
from dlip.data.errors import DataError
from dlip.data.transforms import ImagePreprocess

COCO_TRAIN = [
    {"caption": "A woman wearing a net on her head cutting a cake. ", "image": "val2014/a.jpg", "image_id": "coco_1"},
    {"caption": "A woman cutting a large white sheet cake.", "image": "val2014/a.jpg", "image_id": "coco_1"},
    {"caption": "A red bus parked on the street!", "image": "val2014/b.jpg", "image_id": "coco_2"},
]
COCO_TEST = [
    {"image": "val2014/a.jpg", "caption": ["A woman cutting a cake.", "Someone slices a cake"]},
    {"image": "val2014/b.jpg", "caption": ["A red bus.", "A bus on a street.", "Red bus parked."]},
]
FLICKR_TRAIN = [  # Flickr30K uses the same format; its image ids are integers
    {"image": "flickr30k-images/c.jpg", "caption": "Two dogs run.", "image_id": 7},
    {"image": "flickr30k-images/d.jpg", "caption": "A man (smiling) sits.", "image_id": 3},
    {"image": "flickr30k-images/c.jpg", "caption": "Dogs playing", "image_id": 7},
]
FLICKR_TEST = [{"image": "flickr30k-images/d.jpg", "caption": ["A man sits.", "A person on a bench."]}]
VQA_TRAIN = [
    {
        "question_id": 262148000,
        "question": "Where is he looking?",
        "answer": ["down", "down", "at table", "skateboard", "down", "table", "down", "down", "down", "down"],
        "image": "train2014/a.jpg",
        "dataset": "vqa",
    },
    {"question_id": 5, "question": "What color is the bus?", "answer": ["red"], "image": "train2014/b.jpg"},
]
VQA_TEST = [
    {"question_id": 262144000, "image": "val2014/a.jpg", "question": "Is the ball flying towards the batter?"},
    {"question_id": 262144001, "image": "val2014/b.jpg", "question": "Is there a bus?"},
]
IMAGES = ["val2014/a.jpg", "val2014/b.jpg", "flickr30k-images/c.jpg", "flickr30k-images/d.jpg",
          "train2014/a.jpg", "train2014/b.jpg"]


@pytest.fixture
def root(tmp_path):
    """Image root with tiny images of distinct colours."""
    for k, rel in enumerate(IMAGES):
        path = tmp_path / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 5), (40 * k, 10, 200)).save(path, format="PNG")  # PNG bytes under a .jpg name is fine
    return tmp_path / "images"


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# ---- pre_caption / pre_question -------------------------------------------------------------------------------


def test_pre_caption_matches_blip_by_hand():
    assert pre_caption("A woman wearing a net on her head. ") == "a woman wearing a net on her head"
    assert pre_caption("Hello!!  (World)  ~ test") == "hello world test"
    assert pre_caption("It's a dog, isn't it?") == "it's a dog, isn't it?"  # , ' ? are kept
    assert pre_caption("one two three four", max_words=2) == "one two"
    assert pre_caption("x.y") == "x y"


def test_pre_question_deletes_punctuation_without_collapsing():
    assert pre_question("Where is he looking?") == "where is he looking?"
    assert pre_question("What (color) is it.") == "what color is it"
    assert pre_question("a  b.") == "a  b"  # inner double space kept, as in BLIP
    assert pre_question("one two three", max_words=2) == "one two"


# ---- loaders -------------------------------------------------------------------------------------------------


def test_caption_files_load(tmp_path):
    pairs = load_caption_train(write(tmp_path, "coco_karpathy_train.json", COCO_TRAIN))
    assert pairs[0] == CaptionPair("val2014/a.jpg", COCO_TRAIN[0]["caption"], "coco_1")
    assert load_caption_train(write(tmp_path, "flickr30k_train.json", FLICKR_TRAIN))[1].image_id == 3
    images = load_caption_eval(write(tmp_path, "coco_karpathy_test.json", COCO_TEST))
    assert images[1] == CaptionImage("val2014/b.jpg", ("A red bus.", "A bus on a street.", "Red bus parked."))
    assert len(load_caption_eval(write(tmp_path, "flickr30k_test.json", FLICKR_TEST))) == 1


def test_vqa_files_load(tmp_path):
    items = load_vqa(write(tmp_path, "vqa_train.json", VQA_TRAIN))
    assert items[0].question_id == 262148000 and len(items[0].answers) == 10
    assert items[1] == VQAItem(5, "train2014/b.jpg", "What color is the bus?", ("red",))
    test = load_vqa(write(tmp_path, "vqa_test.json", VQA_TEST), require_answers=False)
    assert [t.answers for t in test] == [None, None]
    with pytest.raises(DataError, match=r'vqa_test\.json: entry 0: missing key "answer"'):
        load_vqa(tmp_path / "vqa_test.json")
    vg_entry = {"question_id": 1, "image": "x.jpg", "question": "q", "answer": "two"}
    vg = load_vqa(write(tmp_path, "vg_qa.json", [vg_entry]))
    assert vg[0].answers == ("two",)


@pytest.mark.parametrize(
    "name, data, loader, pattern",
    [
        ("caption_test.json", {"images": COCO_TEST}, load_caption_eval,
         r"caption_test\.json: the top level must be a list.*got dict"),
        ("caption_test.json", [COCO_TEST[0], {"image": "x.jpg", "caption": "one"}], load_caption_eval,
         r'caption_test\.json: entry 1: "caption" must be a list of strings, got str'),
        ("caption_test.json", [{"image": "x.jpg", "caption": ["ok", 3]}], load_caption_eval,
         r'caption_test\.json: entry 0: "caption" must be a list of strings, item 1 is int'),
        ("caption_train.json", [COCO_TRAIN[0], {"image": "x.jpg", "caption": "c"}], load_caption_train,
         r'caption_train\.json: entry 1: missing key "image_id"'),
        ("caption_train.json", [{"image": "x.jpg", "caption": ["a", "b"], "image_id": 1}], load_caption_train,
         r'caption_train\.json: entry 0: "caption" must be a string, got list'),
        ("caption_train.json", [{"image": 3, "caption": "c", "image_id": 1}], load_caption_train,
         r'caption_train\.json: entry 0: "image" must be a string'),
        ("caption_train.json", [], load_caption_train, r"caption_train\.json: the file holds no entries"),
        ("caption_train.json", ["x.jpg"], load_caption_train,
         r"caption_train\.json: entry 0: expected an object, got str"),
        ("vqa_train.json", [{"question_id": 1, "image": "x.jpg", "answer": ["a"]}], load_vqa,
         r'vqa_train\.json: entry 0: missing key "question"'),
        ("vqa_train.json", [{"question_id": True, "image": "x.jpg", "question": "q", "answer": ["a"]}], load_vqa,
         r'vqa_train\.json: entry 0: "question_id" must be an integer or a string, got bool'),
        ("vqa_train.json", [{"question_id": 1, "image": "x.jpg", "question": "q", "answer": []}], load_vqa,
         r'vqa_train\.json: entry 0: "answer" must be a non-empty list'),
    ],
)
def test_wrong_shapes_raise_data_error_naming_file_entry_key(tmp_path, name, data, loader, pattern):
    with pytest.raises(DataError, match=pattern):
        loader(write(tmp_path, name, data))


def test_missing_and_invalid_json_files(tmp_path):
    with pytest.raises(DataError, match=r"no such annotation file: .*nope\.json"):
        load_caption_train(tmp_path / "nope.json")
    bad = tmp_path / "broken.json"
    bad.write_text('[{"image": "a.jpg",')
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON"):
        load_caption_eval(bad)


def test_check_images_reports_first_missing(tmp_path, root):
    items = load_caption_train(write(tmp_path, "coco_karpathy_train.json", COCO_TRAIN))
    check_images(items, root)  # all present
    (root / "val2014/b.jpg").unlink()
    with pytest.raises(DataError, match=r"train\.json: entry 2: image file not found: .*val2014/b\.jpg"):
        check_images(items, root, source=tmp_path / "coco_karpathy_train.json")
    check_images(items, root, sample=1)  # checks only the first distinct image, which exists
    with pytest.raises(DataError, match=r"b\.jpg"):
        check_images(items, root, sample=2)  # first and last distinct images


# ---- datasets ------------------------------------------------------------------------------------------------


@pytest.fixture
def pre():
    return ImagePreprocess(8)


def test_caption_train_dataset_dense_image_index(tmp_path, root, pre):
    ds = CaptionTrainDataset(write(tmp_path, "flickr30k_train.json", FLICKR_TRAIN), root, pre)
    assert len(ds) == 3 and ds.num_images == 2
    image, caption, idx = ds[1]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert caption == "a man smiling sits" and idx == 1
    assert [ds[i][2] for i in range(3)] == [0, 1, 0]  # image_id 7, 3, 7 -> dense 0, 1, 0
    assert torch.equal(ds[0][0], ds[2][0])  # same image file


def test_caption_train_dataset_max_words(tmp_path, root, pre):
    ds = CaptionTrainDataset(write(tmp_path, "coco_karpathy_train.json", COCO_TRAIN), root, pre, max_words=3)
    assert ds.captions == ["a woman wearing", "a woman cutting", "a red bus"]


def test_lm_first_gives_every_caption_item_its_images_first_caption(tmp_path, root, pre):
    """data.lm_captions "first": ITC/ITM keep each item's own caption, the LM reads its image's first caption."""
    from dlip.data.batches import CaptionCollate
    from dlip.data.tokenizer import TextTokenizer, train_wordpiece

    ds = CaptionTrainDataset(write(tmp_path, "flickr30k_train.json", FLICKR_TRAIN), root, pre, lm_first=True)
    items = [ds[i] for i in range(3)]
    assert [(c, i, lm) for _, c, i, lm in items] == [
        ("two dogs run", 0, "two dogs run"), ("a man smiling sits", 1, "a man smiling sits"),
        ("dogs playing", 0, "two dogs run")]
    tok = TextTokenizer(train_wordpiece(ds.captions, vocab_size=60))
    batch = CaptionCollate(tok, 10)(items)
    assert tok.batch_decode(batch.input_ids) == ["two dogs run", "a man smiling sits", "dogs playing"]
    assert tok.batch_decode(batch.decoder_ids) == ["two dogs run", "a man smiling sits", "two dogs run"]
    assert torch.equal(batch.decoder_mask, batch.lm_mask)
    plain = CaptionCollate(tok, 10)([x[:3] for x in items])  # without: the LM reads the batch's own captions
    assert plain.lm_ids is None and plain.decoder_ids is plain.input_ids and plain.decoder_mask is plain.attention_mask


def test_caption_eval_dataset_mappings(tmp_path, root, pre):
    ds = CaptionEvalDataset(write(tmp_path, "coco_karpathy_test.json", COCO_TEST), root, pre)
    assert ds.texts == [
        "a woman cutting a cake", "someone slices a cake", "a red bus", "a bus on a street", "red bus parked"
    ]
    assert ds.img2txt == {0: [0, 1], 1: [2, 3, 4]}
    assert ds.txt2img == {0: 0, 1: 0, 2: 1, 3: 1, 4: 1}
    assert ds.image_paths[1] == str(root / "val2014/b.jpg")
    assert ds[0][1] == 0 and ds[1][1] == 1 and not torch.equal(ds[0][0], ds[1][0])


def test_datasets_fail_fast_on_wrong_image_root(tmp_path, root, pre):
    with pytest.raises(DataError, match=r"coco_karpathy_test\.json: entry 0: image file not found"):
        CaptionEvalDataset(write(tmp_path, "coco_karpathy_test.json", COCO_TEST), tmp_path / "wrong", pre)


def test_vqa_answer_weights_by_hand():
    answers, weights = answer_weights(VQA_TRAIN[0]["answer"])
    assert answers == ["down", "at table", "skateboard", "table"]
    assert weights == pytest.approx([0.7, 0.1, 0.1, 0.1])


def test_vqa_train_dataset_and_collate(tmp_path, root, pre):
    ds = VQADataset(write(tmp_path, "vqa_train.json", VQA_TRAIN), root, pre, split="train")
    image, question, answers, weights = ds[0]
    assert image.shape == (3, 8, 8) and question == "where is he looking?"
    assert answers == ["down", "at table", "skateboard", "table"] and weights == pytest.approx([0.7, 0.1, 0.1, 0.1])
    images, questions, flat, w, n = collate_vqa_train([ds[0], ds[1]])
    assert images.shape == (2, 3, 8, 8) and questions == ["where is he looking?", "what color is the bus?"]
    assert flat == ["down", "at table", "skateboard", "table", "red"]
    assert w.tolist() == pytest.approx([0.7, 0.1, 0.1, 0.1, 1.0]) and n.tolist() == [4, 1]
    assert len(ds.items[0].answers) == 10


def test_vqa_test_dataset(tmp_path, root, pre):
    path = write(tmp_path, "vqa_test.json", VQA_TEST)
    ds = VQADataset(path, root, pre, split="test")
    image, question, qid = ds[1]
    assert question == "is there a bus?" and qid == 262144001
    assert ds[0][2] == 262144000
    with pytest.raises(DataError, match=r'vqa_test\.json: entry 0: missing key "answer"'):
        VQADataset(path, root, pre, split="train")
    with pytest.raises(ValueError, match="split must be"):
        VQADataset(path, root, pre, split="val")
