"""Serving YAML in llm-serving's key layout: typed schema, loading with clear errors, rendering."""
from serving.config.errors import ConfigError
from serving.config.schema import ServingYaml, load_serving_yaml

__all__ = ["ConfigError", "ServingYaml", "load_serving_yaml"]
