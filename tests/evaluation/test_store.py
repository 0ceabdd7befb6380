"""The run directory: lock, fingerprint check, atomic parts."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.store import RunStore, first_difference


def batch(ids: list[str]) -> dict[str, np.ndarray]:
    parts = [i.split("/") for i in ids]
    return {
        "id": np.array(ids, dtype=object),
        "method": np.array([p[0] for p in parts], dtype=object),
        "subject": np.array([p[1] for p in parts], dtype=object),
        "prompt_id": np.array([p[2] for p in parts], dtype=object),
        "seed": np.array([int(p[3]) for p in parts]),
        "image_png": np.array([b"png"] * len(ids), dtype=object),
        "clip_t": np.linspace(0, 1, len(ids)),
    }


def test_parts_are_the_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    assert store.done_ids() == set() and store.read().empty
    store.write_batch(batch(["jedi/dog/p00/0", "jedi/dog/p00/1"]))
    store.write_batch(batch(["jedi/cat/p00/0", "base/cat/p00/0"]))
    assert store.done_ids() == {"jedi/dog/p00/0", "jedi/dog/p00/1", "jedi/cat/p00/0", "base/cat/p00/0"}
    assert (tmp_path / "images" / "jedi" / "dog" / "p00-s1.png").read_bytes() == b"png"
    assert list(store.read(["base/cat/p00/0", "jedi/dog/p00/0"])["image"]) == [
        "images/base/cat/p00-s0.png",
        "images/jedi/dog/p00-s0.png",
    ]
    assert not list(store.parts.glob(".*")), "no temporary files are left behind"
    store.write_batch(batch(["jedi/cat/p00/0"]))
    with pytest.raises(ValueError, match=r"duplicate ids \['jedi/cat/p00/0'\]"):
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
    jedi = {"generators": {"jedi": {"steps": 2}}, "scoring": {"clip": "tiny"}}
    store.open(jedi, {"config_hash": "a"})
    store.update(scorers={"clip": "described"})
    store.open(jedi, {"config_hash": "b"})
    info = store.update()
    assert info["config_hash"] == "b" and info["scorers"] == {"clip": "described"}, "resuming keeps what was recorded"
    with pytest.raises(ValueError, match=r"different settings \(scoring.clip \('tiny' -> 'big'\)\)"):
        store.open({**jedi, "scoring": {"clip": "big"}}, {})
    with pytest.raises(ValueError, match=r"different settings \(generators.jedi.steps \(2 -> 3\)\)"):
        store.open({**jedi, "generators": {"jedi": {"steps": 3}}}, {})
    store.open({**jedi, "generators": {"base": {"steps": 2}}}, {})  # another method joins the run
    assert set(store.update()["fingerprint"]["generators"]) == {"jedi", "base"}


def test_fine_tuning_outcomes_are_recorded_per_method_and_subject(tmp_path):
    store = RunStore(tmp_path)
    assert store.finetuning() == {}
    store.record_finetuning([{"method": "ti", "subject": "dog", "status": "failed"}])
    rows = store.record_finetuning(
        [{"method": "ti", "subject": "dog", "status": "done"}, {"method": "ti", "subject": "cat", "status": "done"}]
    )
    assert {k: v["status"] for k, v in rows.items()} == {("ti", "dog"): "done", ("ti", "cat"): "done"}
    assert RunStore(tmp_path).finetuning() == rows


def test_first_difference_names_the_dotted_path():
    assert first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c (2 -> 3)"
    assert first_difference({"a": 1}, {"a": 1, "b": None}) is None
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b (None -> 2)"
