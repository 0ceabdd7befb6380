"""The run directory: lock, fingerprint check, atomic parts."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.store import RunStore, first_difference


def batch(ids: list[str]) -> dict[str, np.ndarray]:
    return {
        "id": np.array(ids, dtype=object),
        "subject": np.array([i.split("/")[0] for i in ids], dtype=object),
        "prompt_id": np.array([i.split("/")[1] for i in ids], dtype=object),
        "seed": np.array([int(i.split("/")[2]) for i in ids]),
        "image_png": np.array([b"png"] * len(ids), dtype=object),
        "clip_t": np.linspace(0, 1, len(ids)),
    }


def test_parts_are_the_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    assert store.done_ids() == set() and store.read().empty
    store.write_batch(batch(["dog/p00/0", "dog/p00/1"]))
    store.write_batch(batch(["cat/p00/0"]))
    assert store.done_ids() == {"dog/p00/0", "dog/p00/1", "cat/p00/0"}
    assert (tmp_path / "images" / "dog" / "p00-s1.png").read_bytes() == b"png"
    assert list(store.read(["cat/p00/0", "dog/p00/0"])["image"]) == ["images/cat/p00-s0.png", "images/dog/p00-s0.png"]
    assert not list(store.parts.glob(".*")), "no temporary files are left behind"
    store.write_batch(batch(["cat/p00/0"]))
    with pytest.raises(ValueError, match=r"duplicate ids \['cat/p00/0'\]"):
        store.read()


def test_one_writer_at_a_time(tmp_path):
    store = RunStore(tmp_path)
    with (
        store.lock(),
        pytest.raises(ValueError, match="another evaluation is writing into this directory"),
        RunStore(tmp_path).lock(),
    ):
        pass
    with store.lock():  # released again
        pass


def test_a_run_is_resumed_only_with_the_same_fingerprint(tmp_path):
    store = RunStore(tmp_path)
    store.open({"generator": {"steps": 2}, "scoring": {"clip": "tiny"}}, {"config_hash": "a"})
    store.update(scorers={"clip": "described"})
    store.open({"generator": {"steps": 2}, "scoring": {"clip": "tiny"}}, {"config_hash": "b"})
    info = store.update()
    assert info["config_hash"] == "b" and info["scorers"] == {"clip": "described"}, "resuming keeps what was recorded"
    with pytest.raises(ValueError, match=r"different settings \(scoring.clip \('tiny' -> 'big'\)\)"):
        store.open({"generator": {"steps": 2}, "scoring": {"clip": "big"}}, {})


def test_first_difference_names_the_dotted_path():
    assert first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c (2 -> 3)"
    assert first_difference({"a": 1}, {"a": 1, "b": None}) is None
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b (None -> 2)"
