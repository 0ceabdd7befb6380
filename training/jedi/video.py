"""Video clips as same-subject sets: frames at random distinct times, the clip's caption for each (paper §4).

A clip's frames usually show the same subject, which is why the paper trains on WebVid frame sets
beside S³. A ``video`` source lists clips — a folder of video files (``NAME.txt`` beside a clip is
its caption, else the source's ``caption`` template with the file name) or a Parquet file with
``path`` and ``caption`` columns (relative paths are relative to the Parquet file) — and each clip
becomes a set of ``frames`` frames decoded with PyAV at distinct times drawn from the clip's own key,
so a clip gives the same frames on every worker and every epoch; each micro-batch then draws its set
of 2–4 from them. A clip too short for ``frames`` distinct frames, or one that does not decode, is
marked unusable with its reason (``too-short`` / ``corrupt``), which the training loop counts in the
run's metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}


class ClipError(ValueError):
    """A clip that cannot give its frames; ``str`` is ``"<reason>: <detail>"``."""


def _caption_for(clip: Path, template: str) -> str:
    txt = clip.with_suffix(".txt")
    return txt.read_text().strip() if txt.is_file() else template.format(name=clip.stem.replace("_", " "))


def video_clips(path: Path, template: str) -> list[dict]:
    """One row per clip: ``set_id``, ``video`` (a local path) and ``caption``."""
    if path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["path", "caption"]).to_pylist()
        rows = [
            {"set_id": f"video:{r['path']}", "video": str(path.parent / r["path"]), "caption": str(r["caption"])}
            for r in table
        ]
    elif path.is_dir():
        clips = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        rows = [
            {"set_id": f"video:{c.relative_to(path)}", "video": str(c), "caption": _caption_for(c, template)}
            for c in clips
        ]
    else:
        raise ValueError(f"data.sources: video source {path} is neither a folder of clips nor a .parquet list")
    if not rows:
        raise ValueError(f"data.sources: video source {path} lists no clips ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return rows


def sample_frames(path: str, frames: int, rng: np.random.Generator) -> list[Image.Image]:
    """``frames`` RGB frames of the clip at distinct times, in time order.

    Times are drawn among the clip's frame slots (duration × frame rate), so no two can decode to the
    same frame; each is reached by seeking to the keyframe before it and decoding forward."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ClipError("corrupt: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration
                else (container.duration or 0) / av.time_base
            )
            slots = stream.frames or round(duration * rate)
            if rate <= 0 or slots < frames:
                raise ClipError(f"too-short: {slots} frames, {frames} needed")
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            times = start + np.sort(rng.choice(slots, size=frames, replace=False)) / rate
            out, seen = [], set()
            for t in times:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
                frame = next(
                    (f for f in container.decode(stream) if f.time is not None and f.time >= t - 0.5 / rate), None
                )
                if frame is None or frame.pts in seen:
                    raise ClipError(f"too-short: only {len(seen)} distinct frames decode, {frames} needed")
                seen.add(frame.pts)
                out.append(frame.to_image().convert("RGB"))
            return out
    except ClipError:
        raise
    except Exception as exc:  # a clip FFmpeg cannot read: its reason travels with the set
        raise ClipError(f"corrupt: {type(exc).__name__}: {exc}") from exc
