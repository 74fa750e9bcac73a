"""Every field a user can write in a config (YAML ``args:``, a BlenderConfig, backend options) says
what it is: ``blender-serve validate`` and the JSON schema show these descriptions."""

from __future__ import annotations

from pydantic import BaseModel

from blender_serve import config as core_config
from blender_serve.generators import GENERATORS
from blender_serve.types import SamplingParams
from deployments import config as app_config


def _config_models() -> list[type[BaseModel]]:
    models = [getattr(mod, name) for mod in (core_config, app_config) for name in mod.__all__]
    models = [m for m in models if isinstance(m, type) and issubclass(m, BaseModel)]
    return models + [SamplingParams] + [cls.Options for cls in GENERATORS.values()]


def test_every_config_field_has_a_description():
    missing = [f"{model.__name__}.{name}" for model in _config_models()
               for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_the_check_covers_every_config_model():
    names = {m.__name__ for m in _config_models()}
    assert {"BlenderConfig", "GeneratorConfig", "RankerConfig", "FuserConfig", "BlendOptions", "AppArgs",
            "DeploymentOptions", "Limits", "RankerBatching", "SamplingParams", "ScriptedOptions",
            "TransformersOptions", "VLLMOptions", "OpenAIOptions"} <= names
