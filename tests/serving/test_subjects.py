"""The fine-tuned subject store (``core.subjects``): ids, cards, stores, and applying real adapters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import zoo
from core.subjects import (
    CARD_NAME,
    EMBEDDINGS_FILE,
    LORA_FILE,
    SubjectCard,
    SubjectNotFoundError,
    SubjectStore,
    SubjectWeights,
    apply_subject,
    read_card,
    validate_subject_id,
    write_card,
)
from tests.serving.adapters import make_lora_subject, make_ti_subject, make_unet_subject


def card(**overrides) -> SubjectCard:
    fields = dict(
        subject_id="my-dog",
        method="dreambooth",
        base_model="tiny",
        tokens=["<sks>"],
        class_word="dog",
        prompt_template="a photo of {0} {1}",
        weights=SubjectWeights(lora=LORA_FILE),
    )
    return SubjectCard(**{**fields, **overrides})


@pytest.mark.parametrize("good", ["dog", "my-dog_2", "0abc", "a" * 64])
def test_valid_subject_ids(good):
    assert validate_subject_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "../dog", "dog/..", "a/b", "Dog", ".hidden", "-dog", "a" * 65, "dog ", "d\x00g", 3]
)
def test_invalid_subject_ids_name_the_field(bad):
    with pytest.raises(ValueError, match="^subject_id: "):
        validate_subject_id(bad)


def test_card_validation_and_prompts():
    c = card(tokens=["<a>", "<b>"], prompt_template="a {0} {1} on the beach")
    assert c.instance_prompt() == "a <a> <b> dog on the beach"
    assert c.render_prompt("{0.__class__} {1}") == "{0.__class__} dog"  # never str.format on user text
    with pytest.raises(ValueError, match="weights"):
        card(weights={})
    with pytest.raises(ValueError, match="prompt_template"):
        card(prompt_template="a photo of a dog")
    with pytest.raises(ValueError, match="tokens"):
        card(tokens=["two words"])
    with pytest.raises(ValueError, match="subject_id"):
        card(subject_id="../x")
    with pytest.raises(ValueError):
        card(method="magic")
    with pytest.raises(ValueError):  # file names are fixed by the format, never paths
        SubjectWeights(lora="../../etc/passwd")
    with pytest.raises(ValueError):
        SubjectCard.model_validate({**json.loads(card().model_dump_json()), "format_version": 2})


def test_write_and_read_card(tmp_path):
    subject = tmp_path / "my-dog"
    subject.mkdir()
    with pytest.raises(ValueError, match="lacks pytorch_lora_weights.safetensors"):
        write_card(subject, card())
    (subject / LORA_FILE).write_bytes(b"")
    path = write_card(subject, card(steps=400, metrics={"clip_i": 0.8}))
    assert path.name == CARD_NAME and not list(subject.glob(".*"))
    back = read_card(subject)
    assert back == card(steps=400, metrics={"clip_i": 0.8}, created=back.created)
    with pytest.raises(ValueError, match="directory is named"):
        write_card(subject, card(subject_id="other"))
    with pytest.raises(SubjectNotFoundError, match="subject_id"):
        read_card(tmp_path / "nobody")
    renamed = tmp_path / "renamed"
    subject.rename(renamed)
    with pytest.raises(ValueError, match="does not match the directory"):
        read_card(renamed)


def _images(pipe, prompt="a photo of <sks> dog"):
    return pipe(
        prompt,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


@pytest.fixture(scope="module")
def base_pipe(zoo_home):
    pipe = zoo.load("sd", "tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("make", [make_lora_subject, make_ti_subject, make_unet_subject])
def test_applied_subject_changes_the_output_and_the_base_stays(tmp_path, base_pipe, make):
    before = _images(base_pipe)
    subject_dir = make(tmp_path, "subject", base_pipe)
    fresh = zoo.load("sd", "tiny")
    fresh.set_progress_bar_config(disable=True)
    assert np.array_equal(_images(fresh), before)  # a fresh pipeline starts as the base
    applied = apply_subject(fresh, subject_dir)
    assert applied is fresh
    assert np.abs(_images(applied) - before).max() > 1e-3
    assert np.array_equal(_images(base_pipe), before)  # the base pipeline is untouched


def test_multi_token_embeddings_are_all_loaded(tmp_path, base_pipe):
    subject_dir = make_ti_subject(tmp_path, "pair", base_pipe, tokens=("<cat1>", "<dog1>"))
    pipe = apply_subject(zoo.load("sd", "tiny"), subject_dir)
    ids = pipe.tokenizer.convert_tokens_to_ids(["<cat1>", "<dog1>"])
    assert pipe.tokenizer.unk_token_id not in ids and ids[0] != ids[1]


def test_embeddings_must_match_the_card_tokens(tmp_path, base_pipe):
    subject_dir = make_ti_subject(tmp_path, "odd", base_pipe, tokens=("<sks>",))
    data = json.loads((subject_dir / CARD_NAME).read_text())
    data["tokens"] = ["<other>"]
    (subject_dir / CARD_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="weights.embeddings"):
        apply_subject(zoo.load("sd", "tiny"), subject_dir)


def test_local_store_lists_complete_subjects_only(tmp_path, base_pipe):
    store_dir = tmp_path / "store"
    make_ti_subject(store_dir, "b-dog", base_pipe)
    make_ti_subject(store_dir, "a-dog", base_pipe)
    (store_dir / "uploading").mkdir()  # no card yet: invisible
    (store_dir / "uploading" / EMBEDDINGS_FILE).write_bytes(b"")
    (store_dir / "Not-An-Id").mkdir()
    store = SubjectStore(store_dir)
    assert store.ids() == ["a-dog", "b-dog"]
    assert store.card("a-dog").method == "ti"
    assert store.local_dir("a-dog") == store_dir / "a-dog"
    with pytest.raises(SubjectNotFoundError):
        store.card("uploading")
    with pytest.raises(ValueError, match="subject_id"):
        store.card("../store")
    assert SubjectStore(tmp_path / "absent").ids() == []


def test_remote_store_publish_and_fetch(tmp_path, base_pipe):
    local = make_lora_subject(tmp_path / "trained", "remote-dog", base_pipe)
    store = SubjectStore("mock:///subjects", cache_dir=tmp_path / "cache")
    assert not store.local
    store.publish(local)
    assert store.ids() == ["remote-dog"]
    fetched = store.local_dir("remote-dog")
    assert fetched.is_relative_to(tmp_path / "cache")
    assert read_card(fetched) == read_card(local)
    assert (fetched / LORA_FILE).read_bytes() == (local / LORA_FILE).read_bytes()
    assert store.local_dir("remote-dog") == fetched  # cached
    pipe = apply_subject(zoo.load("sd", "tiny"), fetched)
    assert np.abs(_images(pipe) - _images(base_pipe)).max() > 1e-3
