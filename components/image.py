"""The one container image every component runs in.

Components are declared with the settings' default image; `mlstack compile` writes the image
named by `pipeline.base_image` in the loaded settings into the compiled pipeline.
"""

from mlstack.config import PipelineSettings

BASE_IMAGE: str = PipelineSettings.model_fields["base_image"].default
