"""transformers' Auto classes, imported lazily and without scikit-learn: transformers' model classes import its
generation utilities, which load sklearn (and scipy.stats) for assisted decoding wherever it is installed,
~0.5 s of a worker's start for code an encoder never runs. transformers is told sklearn is absent before the
first such import (calibration imports sklearn itself and keeps it), so import them through here."""

from __future__ import annotations

from typing import Literal


def auto_class(name: Literal["AutoModel", "AutoTokenizer"]) -> type:
    from transformers.utils import import_utils

    import_utils._sklearn_available = False
    import transformers

    return getattr(transformers, name)
