"""Backbones (two-tower retrieval, DCNv2 ranking) with one scoring function and the S-LLMR objective.

:func:`build_model` rebuilds a model from its configuration and a prepared folder alone, which is how
training creates it and how evaluation and export restore it from a run folder.
"""

from __future__ import annotations

import dataclasses

from tfrs_selreg import regularizer as regularizer_lib
from tfrs_selreg.data import input_fn, schema
from tfrs_selreg.data.prepared import PreparedData
from tfrs_selreg.models.base import LOSS_KEYS, REC_LOSS, TOTAL_LOSS, RecommenderModel
from tfrs_selreg.models.catalog import ItemCatalog
from tfrs_selreg.models.config import BACKBONES, DCNConfig, ModelConfig, TwoTowerConfig
from tfrs_selreg.models.dcn import DCNModel
from tfrs_selreg.models.two_tower import TwoTowerModel
from tfrs_selreg.tasks import SelectiveLLMRegularization

__all__ = [
    "BACKBONES",
    "LOSS_KEYS",
    "REC_LOSS",
    "TOTAL_LOSS",
    "DCNConfig",
    "DCNModel",
    "ItemCatalog",
    "ModelConfig",
    "RecommenderModel",
    "TwoTowerConfig",
    "TwoTowerModel",
    "build_model",
]

_CLASSES = {"two_tower": TwoTowerModel, "dcn": DCNModel}


def build_model(config: ModelConfig, data: PreparedData,
                regularizer_config: regularizer_lib.RegularizerConfig | None = None) -> RecommenderModel:
    """The backbone of ``config`` for the prepared folder ``data``, with every variable created.

    ``regularizer_config`` defaults to gate ``none`` (the plain backbone). Call inside the
    distribution strategy's scope when training with one.
    """
    catalog = ItemCatalog.from_prepared(data, max_title_tokens=config.max_title_tokens,
                                        max_categories=config.max_categories,
                                        text_vocabulary_size=config.text_vocabulary_size)
    thresholds = data.stats().thresholds
    options = (regularizer_config or regularizer_lib.RegularizerConfig(gate="none")).for_backbone(config.backbone)
    regularizer = SelectiveLLMRegularization(
        catalog.item_ids, catalog.popularity[1:], catalog.long_tail[1:],
        cold_start_max_history=thresholds.cold_start_max_history, name="selective_regularizer",
        **dataclasses.asdict(options))
    model = _CLASSES[config.backbone](config, catalog, data.user_vocabulary(), regularizer,
                                      name=config.backbone)
    spec = schema.Schema.load(data.directory)
    model.build_variables(input_fn.placeholder_batch(spec, [f.role for f in spec.features]))
    return model
