"""What a trained model is besides its weights — the JSON spec beside the safetensors — readable without
torch or transformers, so a role that needs only the spec and a few tensors (the router) starts in a
fraction of a second and stays small."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from dimee.common.choices import Pooling
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class ModelSpec(BaseModel):
    """Everything besides the weights needed to rebuild the model; stored as JSON beside the safetensors."""

    backbone_config: dict
    num_labels: int = Field(ge=2)
    label_names: list[str]
    pooling: Pooling = "mean"
    dropout: float = 0.1
    max_length: int = 64
    base_model: str = ""

    @property
    def num_layers(self) -> int:
        return int(self.backbone_config["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.backbone_config["hidden_size"])

    def hf_config(self, num_layers: int | None = None) -> PretrainedConfig:
        from transformers import AutoConfig

        values = dict(self.backbone_config)
        if num_layers is not None:
            values["num_hidden_layers"] = num_layers
        return AutoConfig.for_model(**values)


def load_spec(folder: Path) -> ModelSpec:
    path = folder / Workdir.SPEC
    if not path.exists():
        raise DimeeError(f"no trained model in {folder} (missing {Workdir.SPEC}): run `dimee train` first")
    return ModelSpec.model_validate_json(path.read_text())
