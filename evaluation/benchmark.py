"""The DreamBooth benchmark material and the list of images a run must produce.

Layout (google/dreambooth, as in ``../shared/dreambooth``; any folder laid out the same way works):

- ``subjects.json``: ``[{"subject", "class", "live"}]``;
- ``prompts.json``: ``{"object": [...], "live": [...]}``, templates with ``{0}`` = the subject token,
  ``{1}`` = the class word;
- ``images/<subject>/*.jpg|png``: real photos of the subject.

A *case* is one image of one method to generate and score, identified by
``method/subject/prompt_id/seed``; that id is what makes a run resumable. Without the method
(``subject/prompt_id/seed``, the ``case`` column) it pairs the images of two methods: same subject,
prompt and initial noise. The protocols share cases: the first four samples of the DreamBooth
protocol's prompts are also the first four of paper 000's fifty, so a run draws each image once.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.config.evaluation import PROTOCOLS, EvaluationConfig, Protocol, SelectionConfig
from core.paths import REPO_ROOT

DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "dreambooth"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
SIMPLE_PROMPT_ID = "simple"


@dataclass(frozen=True)
class Subject:
    name: str
    class_name: str
    live: bool
    photos: tuple[Path, ...]


@dataclass(frozen=True)
class Benchmark:
    root: Path
    subjects: dict[str, Subject]
    prompts: dict[str, tuple[str, ...]]
    """"object" / "live" -> prompt templates."""

    def templates(self, subject: Subject) -> tuple[str, ...]:
        return self.prompts["live" if subject.live else "object"]


def fill(template: str, token: str, class_name: str) -> str:
    """A prompt from a template; an empty token leaves no double space ("a dog in the snow")."""
    return " ".join(template.format(token, class_name).split())


def eval_prompt(template: str, class_name: str) -> str:
    """The prompt CLIP-T scores against: the template without the special token."""
    return fill(template, "", class_name)


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"evaluation.benchmark: {path.name} missing in {path.parent}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"evaluation.benchmark: {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _check_template(template, where: str) -> str:
    if not isinstance(template, str) or "{1}" not in template:
        raise ValueError(f"{where}: a prompt template must be a string containing {{1}} (the class), got {template!r}")
    try:
        template.format("", "")
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"{where}: {template!r} is not a valid template ({exc})") from None
    return template


def load_benchmark(root: Path | None = None) -> Benchmark:
    """Read and validate a benchmark folder; errors name the file and the entry."""
    root = Path(root or DEFAULT_ROOT).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"evaluation.benchmark: no such folder {root}")
    raw_subjects = _read_json(root / "subjects.json")
    raw_prompts = _read_json(root / "prompts.json")
    if not isinstance(raw_prompts, dict) or not all(isinstance(raw_prompts.get(k), list) for k in ("object", "live")):
        raise ValueError(f"evaluation.benchmark: {root / 'prompts.json'} must map 'object' and 'live' to lists")
    prompts = {
        kind: tuple(_check_template(t, f"prompts.json {kind}[{i}]") for i, t in enumerate(raw_prompts[kind]))
        for kind in ("object", "live")
    }
    if not isinstance(raw_subjects, list):
        raise ValueError(f"evaluation.benchmark: {root / 'subjects.json'} must be a list of subjects")
    subjects = {}
    for i, entry in enumerate(raw_subjects):
        if not isinstance(entry, dict) or not {"subject", "class", "live"} <= set(entry):
            raise ValueError(f"subjects.json[{i}]: needs 'subject', 'class' and 'live', got {entry!r}")
        folder = root / "images" / entry["subject"]
        photos = tuple(sorted(p for p in folder.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES))
        subjects[entry["subject"]] = Subject(entry["subject"], entry["class"], bool(entry["live"]), photos)
    return Benchmark(root, subjects, prompts)


def select_subjects(benchmark: Benchmark, names: list[str] | None) -> list[Subject]:
    """The requested subjects (default: every one with photos), each checked to have photos."""
    with_photos = sorted(name for name, s in benchmark.subjects.items() if s.photos)
    if names is None:
        if not with_photos:
            raise ValueError(f"evaluation.benchmark: no subject has photos under {benchmark.root / 'images'}")
        names = with_photos
    chosen = []
    for name in names:
        if name not in benchmark.subjects:
            raise ValueError(f"evaluation.selection.subjects: {name!r} is not in {benchmark.root / 'subjects.json'}")
        if not benchmark.subjects[name].photos:
            raise ValueError(
                f"evaluation.selection.subjects: {name!r} has no photos in {benchmark.root / 'images' / name} "
                f"(subjects with photos: {', '.join(with_photos) or 'none'})"
            )
        chosen.append(benchmark.subjects[name])
    return chosen


@dataclass(frozen=True)
class Case:
    """One image of one method to generate and score."""

    method: str
    subject: str
    class_name: str
    prompt_id: str
    """``p00``.. (the benchmark's prompt list, in its order) or ``simple``."""
    template: str
    eval_prompt: str
    sample: int
    seed: int

    @property
    def case(self) -> str:
        """What pairs two methods' images: the same subject, prompt and seed."""
        return f"{self.subject}/{self.prompt_id}/{self.seed}"

    @property
    def id(self) -> str:
        return f"{self.method}/{self.case}"


def samples(protocol: Protocol, selection: SelectionConfig) -> int:
    """Images per prompt of ``protocol`` in this selection: the paper's count, capped by ``samples``."""
    return min(protocol.samples, selection.samples or protocol.samples)


def prompt_list(benchmark: Benchmark, subject: Subject, protocol: Protocol, selection: SelectionConfig):
    """``(prompt_id, template)`` of every prompt ``protocol`` draws for ``subject``."""
    if protocol.prompts == "simple":
        return [(SIMPLE_PROMPT_ID, _check_template(selection.simple_prompt, "evaluation.selection.simple_prompt"))]
    return [(f"p{i:02d}", t) for i, t in enumerate(benchmark.templates(subject)[: selection.prompts])]


def plan(benchmark: Benchmark, ev: EvaluationConfig, seed: int, methods: list[str] | None = None) -> list[Case]:
    """Every case of the selection: per method (default ``ev.methods``) and subject, each prompt of the
    chosen protocols with as many samples as the protocol that wants most. Sample j of every prompt
    uses seed ``seed + j``, so methods and subjects are compared on the same initial noise."""
    cases = []
    for method in methods if methods is not None else ev.methods:
        for subject in select_subjects(benchmark, ev.selection.subjects):
            wanted: dict[str, tuple[str, int]] = {}
            for protocol in (PROTOCOLS[name] for name in ev.protocols):
                for prompt_id, template in prompt_list(benchmark, subject, protocol, ev.selection):
                    most = max(wanted.get(prompt_id, ("", 0))[1], samples(protocol, ev.selection))
                    wanted[prompt_id] = (template, most)
            for prompt_id, (template, count) in sorted(wanted.items()):
                prompt = eval_prompt(template, subject.class_name)
                cases += [
                    Case(method, subject.name, subject.class_name, prompt_id, template, prompt, j, seed + j)
                    for j in range(count)
                ]
    return cases


@dataclass(frozen=True)
class BadPhoto:
    file: str
    """``<subject>/<file name>``."""
    reason: str


def photo_problem(data: bytes) -> str | None:
    """Why an encoded photo cannot be used (fully decoded here, as a generator or scorer would), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if min(image.size) < 1:
                return f"it has no pixels ({image.size[0]}×{image.size[1]})"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        return str(exc) or type(exc).__name__
    return None


def readable_photos(subject: Subject, skip: bool) -> tuple[list[tuple[str, bytes]], list[BadPhoto]]:
    """(file name, bytes) of the subject's usable photos, and the unusable ones when ``skip``; without
    ``skip`` the first unusable photo is a one-line ``ValueError`` naming the file."""
    good, bad = [], []
    for path in subject.photos:
        data = path.read_bytes()
        problem = photo_problem(data)
        if problem is None:
            good.append((path.name, data))
        elif skip:
            bad.append(BadPhoto(f"{subject.name}/{path.name}", problem))
        else:
            raise ValueError(
                f"evaluation.benchmark: {path}: not a readable image ({problem}); replace or remove it, "
                "or pass --skip-bad-photos (evaluation.selection.skip_bad_photos) to leave it out"
            )
    return good, bad
