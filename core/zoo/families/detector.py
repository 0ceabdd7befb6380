"""The ``detector`` family: Grounding DINO, an open-vocabulary detector that finds "the dog" in a photo.

The data generator uses it to locate the subject named in a caption before SAM cuts it out.

One builder, ``build_model(config, text_encoder)``, turns a JSON-able config into the library's
``GroundingDINO`` module; the tiny stand-in and the production Swin-T OGC checkpoint differ only in
that config. The production values are read from the installed package's own
``groundingdino/config/GroundingDINO_SwinT_OGC.py`` (parsed as literals, never executed, never
downloaded). Weights always go through ``core.zoo.safety`` (safetensors, or a pickle restricted to
tensors) and a strict key check: groundingdino-py's own ``load_model`` uses ``torch.load`` without
``weights_only`` and ``strict=False``, which would both run arbitrary pickles and hide a wrong checkpoint.

groundingdino-py 0.4.0 needs three ``BertModel`` helpers that transformers 5 removed; see
``core.zoo.gdino_compat``. Nothing here defaults to CUDA: the library's ``predict`` does, so it is
not used; ``GroundingDetector`` runs the model itself on the device it was loaded to.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from core.zoo.family import Family

PRODUCTION = "ShilongLiu/GroundingDINO"
PRODUCTION_FILE = "groundingdino_swint_ogc.pth"
PRODUCTION_CONFIG_FILE = "GroundingDINO_SwinT_OGC.py"  # the copy shipped inside groundingdino-py
PRODUCTION_TEXT_ENCODER = "bert-base-uncased"
CONFIG_NAME = "detector_config.json"
WEIGHTS_NAME = "model.safetensors"
TEXT_ENCODER_DIR = "text_encoder"
SEED = 0
FORMAT = "s3jedi-groundingdino/1"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# The demo preprocessing of groundingdino-py (util/inference.py): shorter side 800, longer at most 1333.
PRODUCTION_INPUT = {"short_side": 800, "max_size": 1333, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
# The tiny model sees small images so a forward pass takes a fraction of a second on a CPU.
TINY_INPUT = {"short_side": 128, "max_size": 213, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}

# Keys the released checkpoints carry that the inference model does not have: the denoising-training
# label encoder, and a BERT buffer (position_ids) that newer transformers no longer save. Groundingdino-py's
# loader hides them with strict=False (GroundingDINO issue #271); we drop exactly these and stay strict.
KNOWN_EXTRA_KEYS = ("label_enc.weight", "bert.embeddings.position_ids")

# Gradient checkpointing is a training-memory trade-off; at inference it only produces warnings.
INFERENCE_OVERRIDES = {"use_checkpoint": False, "use_transformer_ckpt": False}

# Architecture of the tiny stand-in: the Swin-T OGC config with fewer/smaller layers. hidden_dim stays
# 256 because the text position embedding hard-codes 256 features (transformer.py get_sine_pos_embed).
TINY_MODEL_OVERRIDES: dict[str, Any] = {
    "backbone": "swin_custom",
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 128,
    "num_queries": 20,
}
TINY_SWIN = {
    "pretrain_img_size": 224,
    "embed_dim": 16,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": 7,
}
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
}

# Vocabulary of the tiny text encoder, written locally (no download). BERT's WordPiece needs the
# special tokens; Grounding DINO splits phrases at "." and "?" (and [CLS]/[SEP]). Letters and
# "##"-letters make every lower-case word encodable; whole words keep common captions short.
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PUNCT = list(".?,!;:'\"()-/&")
_WORDS_TEXT = """
a an the and or of in on at to with without for from by near next behind under over above below
this that these those some two three one is are be it its his her their my your our
person man woman boy girl child baby people face hand head hair eye eyes ear ears nose mouth
dog puppy cat kitten bird horse sheep cow elephant bear zebra giraffe animal pet duck rabbit
bicycle car motorcycle airplane bus train truck boat traffic light fire hydrant stop sign
parking meter bench backpack umbrella handbag tie suitcase frisbee skis snowboard sports ball
kite baseball bat glove skateboard surfboard tennis racket bottle wine glass cup fork knife
spoon bowl banana apple sandwich orange broccoli carrot hot pizza donut cake chair couch
potted plant bed dining table toilet tv laptop mouse remote keyboard cell phone microwave oven
toaster sink refrigerator book clock vase scissors teddy drier toothbrush
shoe shoes sneaker sneakers boot boots hat cap shirt jacket coat dress bag box toy toys teapot
candle can glasses sunglasses robot statue figure figurine plush stuffed monster mug jar lamp
flower flowers tree trees grass sky cloud clouds sun water sea ocean beach sand snow mountain
road street city house building wall floor door window room kitchen garden park field forest
river lake rock rocks stone wood table desk shelf bowl plate basket pillow blanket rug carpet
red green blue yellow black white brown gray grey pink purple orange gold silver colorful
small large big little tiny old new young cute happy dark bright round wooden metal plastic
left right top bottom front back side middle center background foreground
sitting standing lying running walking playing eating sleeping looking holding wearing
photo picture image painting drawing sketch render style view close up portrait
"""


def vocabulary() -> list[str]:
    """The tiny BERT vocabulary, in a fixed order (so two builds write the same vocab.txt)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    pieces = [f"##{c}" for c in letters + digits]
    vocab = _SPECIAL + _PUNCT + letters + digits + pieces
    seen = set(vocab)
    for word in _WORDS_TEXT.split():
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    return vocab


@dataclass(frozen=True)
class Detection:
    """One detected box, in pixels of the image that was passed in (x0, y0, x1, y1)."""

    box_xyxy: tuple[float, float, float, float]
    score: float
    phrase: str


def production_model_config() -> dict[str, Any]:
    """The Swin-T OGC settings, read from the groundingdino package's own config file.

    The file is a list of ``name = literal`` assignments; it is parsed with ``ast.literal_eval``
    rather than executed (the library's SLConfig would exec it), so a config can only contain data.
    """
    import groundingdino

    path = Path(groundingdino.__file__).parent / "config" / PRODUCTION_CONFIG_FILE
    values: dict[str, Any] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def production_config() -> dict[str, Any]:
    """The full config of the production model (the bundle format written next to tiny weights)."""
    return {
        "format": FORMAT,
        "model": production_model_config(),
        "swin": None,  # built by name (model.backbone) with the package's own Swin table
        "text_encoder": PRODUCTION_TEXT_ENCODER,
        "input": PRODUCTION_INPUT,
    }


def tiny_config() -> dict[str, Any]:
    model = production_model_config()
    model.update(TINY_MODEL_OVERRIDES)
    model["text_encoder_type"] = TEXT_ENCODER_DIR
    return {
        "format": FORMAT,
        "model": model,
        "swin": TINY_SWIN,
        "text_encoder": TEXT_ENCODER_DIR,
        "input": TINY_INPUT,
    }


def build_model(config: dict[str, Any], text_encoder: str) -> torch.nn.Module:
    """Build a randomly initialised ``GroundingDINO`` in eval mode from a bundle config.

    ``text_encoder`` is what the library hands to ``AutoTokenizer``/``BertModel.from_pretrained``: a
    local BERT directory or a hub id. This mirrors the library's ``build_groundingdino`` except that
    the Swin backbone may be given explicitly (``config["swin"]``), which the library cannot do.
    """
    from core.zoo import gdino_compat

    with _quiet_library_warnings():
        from groundingdino.models.GroundingDINO.backbone.backbone import Joiner
        from groundingdino.models.GroundingDINO.backbone.position_encoding import build_position_encoding
        from groundingdino.models.GroundingDINO.groundingdino import GroundingDINO
        from groundingdino.models.GroundingDINO.transformer import build_transformer

    gdino_compat.install()
    args = SimpleNamespace(**{**config["model"], **INFERENCE_OVERRIDES, "text_encoder_type": text_encoder})
    if args.hidden_dim != 256:
        raise ValueError(
            f"detector config: hidden_dim must be 256, got {args.hidden_dim} "
            "(groundingdino-py's text position embedding hard-codes 256 features)"
        )
    # groundingdino prints "final text_encoder_type: ..." on every build; keep logs clean.
    with contextlib.redirect_stdout(io.StringIO()), _quiet_library_warnings():
        swin = _build_swin(config, args)
        backbone = Joiner(swin, build_position_encoding(args))
        backbone.num_channels = swin.num_features[4 - len(args.return_interm_indices) :]
        model = GroundingDINO(
            backbone,
            build_transformer(args),
            num_queries=args.num_queries,
            aux_loss=True,
            iter_update=True,
            query_dim=4,
            num_feature_levels=args.num_feature_levels,
            nheads=args.nheads,
            dec_pred_bbox_embed_share=args.dec_pred_bbox_embed_share,
            two_stage_type=args.two_stage_type,
            two_stage_bbox_embed_share=args.two_stage_bbox_embed_share,
            two_stage_class_embed_share=args.two_stage_class_embed_share,
            num_patterns=args.num_patterns,
            dn_number=0,
            dn_box_noise_scale=args.dn_box_noise_scale,
            dn_label_noise_ratio=args.dn_label_noise_ratio,
            dn_labelbook_size=args.dn_labelbook_size,
            text_encoder_type=args.text_encoder_type,
            sub_sentence_present=args.sub_sentence_present,
            max_text_len=args.max_text_len,
        )
    return model.eval()


def _build_swin(config: dict[str, Any], args: SimpleNamespace) -> torch.nn.Module:
    """The Swin backbone: explicit sizes for the tiny model, the package's own table for a named one
    (as the library's ``build_backbone``; gradient checkpointing off, see INFERENCE_OVERRIDES)."""
    from groundingdino.models.GroundingDINO.backbone.swin_transformer import SwinTransformer, build_swin_transformer

    out_indices = tuple(args.return_interm_indices)
    if config.get("swin"):
        return SwinTransformer(out_indices=out_indices, dilation=False, use_checkpoint=False, **config["swin"])
    return build_swin_transformer(
        args.backbone,
        pretrain_img_size=int(args.backbone.split("_")[-2]),
        out_indices=out_indices,
        dilation=False,
        use_checkpoint=False,
    )


@contextlib.contextmanager
def _quiet_library_warnings() -> Iterator[None]:
    """groundingdino-py and timm use APIs that torch/timm now deprecate (``torch.cuda.amp.autocast``,
    ``meshgrid`` without ``indexing``, ``timm.models.layers``); the warnings say nothing about the
    caller's code and would repeat on every batch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*timm\.models\.layers.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.meshgrid.*", category=UserWarning)
        yield


def _write_text_encoder(out_dir: Path) -> None:
    """A random 1-layer BERT and its WordPiece tokenizer, in transformers' own format."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out_dir.mkdir()
    vocab = {token: i for i, token in enumerate(vocabulary())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=TINY_BERT["max_position_embeddings"])
    tokenizer.save_pretrained(out_dir)  # tokenizer.json + tokenizer_config.json
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")  # the classic BERT vocab file too
    config = BertConfig(vocab_size=len(vocab), type_vocab_size=2, pad_token_id=vocab["[PAD]"], **TINY_BERT)
    BertModel(config).save_pretrained(out_dir, safe_serialization=True)


def build_tiny(out_dir: Path) -> None:
    """Write the tiny Grounding DINO: config JSON, safetensors weights and a tiny BERT subdirectory."""
    from core.zoo.safety import save_state_dict

    out_dir = Path(out_dir)
    torch.manual_seed(SEED)
    _write_text_encoder(out_dir / TEXT_ENCODER_DIR)
    config = tiny_config()
    torch.manual_seed(SEED)
    model = build_model(config, str(out_dir / TEXT_ENCODER_DIR))
    save_state_dict(_unique_state_dict(model), out_dir / WEIGHTS_NAME)
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")


def _unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with shared tensors cloned apart: Grounding DINO ties its box/class heads
    across decoder layers (the same module under several names), which safetensors refuses to save
    as aliases. Loading assigns the same values to every alias, so nothing changes."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _clean_keys(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Strip a DataParallel ``module.`` prefix and drop the known training-only keys."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    return {k: v for k, v in state.items() if not (k in KNOWN_EXTRA_KEYS and k not in own)}


def _resolve(source: str) -> tuple[dict[str, Any], Path, str]:
    """(config, weights file, text encoder) for a local directory or a hub repository id.

    A directory is either a bundle (``detector_config.json`` + weights + ``text_encoder/``, as
    ``build_tiny`` writes) or holds a single released checkpoint (``groundingdino_swint_ogc.pth``),
    which gets the production Swin-T OGC config.
    """
    path = Path(source)
    if not path.is_dir():
        from huggingface_hub import hf_hub_download

        weights = Path(hf_hub_download(source, PRODUCTION_FILE))
        config = production_config()
        return config, weights, config["text_encoder"]
    config_file = path / CONFIG_NAME
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{config_file}: unknown format {config.get('format')!r}, expected {FORMAT!r}")
    else:
        config = production_config()
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        candidates = sorted(path.glob("*.pth")) + sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{path}: no {WEIGHTS_NAME} and not exactly one .pth/.safetensors checkpoint "
                f"(found {[p.name for p in candidates]}); a detector directory holds {CONFIG_NAME}, "
                f"{WEIGHTS_NAME} and {TEXT_ENCODER_DIR}/ as written by `s3jedi zoo build`"
            )
        weights = candidates[0]
    text_encoder = config["text_encoder"]
    if (path / text_encoder).is_dir():
        text_encoder = str(path / text_encoder)
    return config, weights, text_encoder


def load(source: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> GroundingDetector:
    """Load a detector bundle directory, or the Swin-T OGC checkpoint of a hub repository.

    The hub checkpoint is fetched with ``hf_hub_download`` (honours ``HF_HUB_OFFLINE`` and the cache)
    and its text encoder ``bert-base-uncased`` by transformers; both fail fast when offline and absent.
    """
    from core.zoo.safety import load_state_dict, load_strict

    config, weights, text_encoder = _resolve(source)
    state = load_state_dict(weights)  # refuse unsafe pickles before building anything
    model = build_model(config, text_encoder)
    load_strict(model, _clean_keys(state, model), f"detector {source}")
    model.to(device=device, dtype=dtype or torch.float32).eval()
    return GroundingDetector(model=model, input_cfg=dict(config["input"]), name=source, device=device)


def preprocess_caption(caption: str) -> str:
    """Grounding DINO's caption normalisation: lower case, stripped, ending in '.' (phrase separator)."""
    result = caption.lower().strip()
    return result if result.endswith(".") else result + "."


@dataclass
class GroundingDetector:
    """A Grounding DINO model in eval mode with its preprocessing and post-processing."""

    model: torch.nn.Module
    input_cfg: dict[str, Any]
    name: str
    device: str = "cpu"

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image to the normalised tensor the model expects (groundingdino's own resize: shorter
        side ``short_side``, longer side at most ``max_size``)."""
        import groundingdino.datasets.transforms as T
        import torchvision.transforms.functional as F

        image = image.convert("RGB")
        resized, _ = T.resize(image, None, self.input_cfg["short_side"], self.input_cfg["max_size"])
        return F.normalize(F.to_tensor(resized), mean=self.input_cfg["mean"], std=self.input_cfg["std"])

    def detect(self, image: Any, caption: str, box_threshold: float, text_threshold: float) -> list[Detection]:
        """Boxes whose best token score exceeds ``box_threshold``, labelled with the caption tokens
        scoring above ``text_threshold`` (groundingdino's ``predict`` semantics)."""
        return self.detect_batch([image], [caption], box_threshold, text_threshold)[0]

    def detect_batch(
        self,
        images: Sequence[Any],
        captions: Sequence[str],
        box_threshold: float,
        text_threshold: float,
    ) -> list[list[Detection]]:
        """``detect`` for several (image, caption) pairs, one forward pass per distinct caption.

        Grouping by caption works around an upstream bug (GroundingDINO issue #294): the text
        enhancer repeats its per-sample attention mask head-major (``repeat``) where
        ``nn.MultiheadAttention`` expects batch-major, so samples with *different* captions in one
        forward pass leak masks into each other. With one caption per pass every sample's mask is the
        same and the results equal one-at-a-time calls. Images of different sizes in a group are
        zero-padded and the model is told which pixels are padding, as in the library's training.
        """
        if len(images) != len(captions):
            raise ValueError(f"detect_batch: {len(images)} images but {len(captions)} captions")
        groups: dict[str, list[int]] = {}
        for index, caption in enumerate(captions):
            groups.setdefault(preprocess_caption(caption), []).append(index)
        results: list[list[Detection]] = [[] for _ in images]
        for caption, indices in groups.items():
            found = self._detect_one_caption([images[i] for i in indices], caption, box_threshold, text_threshold)
            for index, detections in zip(indices, found, strict=True):
                results[index] = detections
        return results

    @torch.inference_mode()
    def _detect_one_caption(
        self, images: list[Any], caption: str, box_threshold: float, text_threshold: float
    ) -> list[list[Detection]]:
        from groundingdino.util.misc import nested_tensor_from_tensor_list
        from groundingdino.util.utils import get_phrases_from_posmap

        dtype = next(self.model.parameters()).dtype
        tensors = [self.preprocess(im).to(self.device, dtype=dtype) for im in images]
        samples = nested_tensor_from_tensor_list(tensors)
        with _quiet_library_warnings():
            outputs = self.model(samples, captions=[caption] * len(images))
        all_logits = outputs["pred_logits"].float().sigmoid().cpu()  # (B, queries, 256 text positions)
        all_boxes = outputs["pred_boxes"].float().cpu()  # (B, queries, 4): cx, cy, w, h in [0, 1]

        tokenizer = self.model.tokenizer
        tokenized = tokenizer(caption)
        # Special tokens ([CLS], [SEP]) are never part of a phrase; upstream Grounding DINO later
        # excluded them the same way (get_phrases_from_posmap's left_idx and its sep_idx list).
        special_ids = set(tokenizer.all_special_ids)
        ids = tokenized["input_ids"][: all_logits.shape[2]]  # the model reads at most max_text_len tokens
        is_word = torch.zeros(all_logits.shape[2], dtype=torch.bool)
        is_word[: len(ids)] = torch.tensor([i not in special_ids for i in ids])

        results = []
        for image, logits, boxes in zip(images, all_logits, all_boxes, strict=True):
            width, height = image.size
            scores = logits.max(dim=1).values
            keep = scores > box_threshold
            detections = []
            for logit, score, box in zip(logits[keep], scores[keep], boxes[keep], strict=True):
                posmap = (logit > text_threshold) & is_word
                phrase = get_phrases_from_posmap(posmap, tokenized, tokenizer).replace(".", "")
                detections.append(Detection(_to_pixels(box, width, height), float(score), phrase.strip()))
            detections.sort(key=lambda d: d.score, reverse=True)
            results.append(detections)
        return results


def _to_pixels(box: torch.Tensor, width: int, height: int) -> tuple[float, float, float, float]:
    """Normalised (cx, cy, w, h) to pixel (x0, y0, x1, y1), clipped to the image: the predicted box
    may overhang the border, and every consumer (cropping, SAM prompts) wants pixels that exist."""
    cx, cy, w, h = (float(v) for v in box)
    x0, x1 = (cx - w / 2) * width, (cx + w / 2) * width
    y0, y1 = (cy - h / 2) * height, (cy + h / 2) * height
    clip = lambda v, hi: min(max(v, 0.0), float(hi))  # noqa: E731
    return (clip(x0, width), clip(y0, height), clip(x1, width), clip(y1, height))


def build_shape(device: str = "cpu", dtype: torch.dtype | None = None, variant: str | None = None) -> GroundingDetector:
    """Grounding DINO Swin-T OGC's architecture at random init, with a bert-base-uncased-shaped text
    encoder (random, written once under ``$S3JEDI_HOME/zoo/shape``; groundingdino loads its BERT by
    path). Swin cannot be built on the meta device (it calls ``.item()``), so this always allocates."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from core.paths import zoo_dir

    if device == "meta":
        raise ValueError(
            "models.detector: the Grounding DINO shape cannot be built on the meta device; use cpu or cuda"
        )
    bert_dir = zoo_dir("shape") / "detector-bert-base"
    if not (bert_dir / "config.json").is_file():
        tmp = bert_dir.with_name(bert_dir.name + ".building")
        tmp.mkdir(parents=True, exist_ok=True)
        vocab = {token: i for i, token in enumerate(vocabulary())}
        BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(tmp)
        # bert-base-uncased: https://huggingface.co/bert-base-uncased/blob/main/config.json
        BertModel(
            BertConfig(
                vocab_size=30522,
                hidden_size=768,
                num_hidden_layers=12,
                num_attention_heads=12,
                intermediate_size=3072,
                max_position_embeddings=512,
            )
        ).save_pretrained(tmp)
        tmp.rename(bert_dir)
    config = production_config()
    model = build_model(config, str(bert_dir))
    model.to(device=device, dtype=dtype or torch.float32).eval()
    return GroundingDetector(model=model, input_cfg=dict(config["input"]), name="shape", device=device)


FAMILIES: list[Family] = [
    Family(
        name="detector",
        summary="Grounding DINO open-vocabulary detector: caption to boxes (groundingdino-py)",
        library="groundingdino-py",
        production=PRODUCTION,
        build_tiny=build_tiny,
        load=load,
        build_shape=build_shape,
    )
]
