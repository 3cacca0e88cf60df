"""dtwin-agent: DTwinSeger reasoning segmentation over digital twin representations."""

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import ConfigError, DTwinError, ImageError, InputError, ProviderError
from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, Relation, TwinObject

__version__ = "0.1.0"

__all__ = [
    "RLE",
    "ConfigError",
    "DTwinError",
    "DigitalTwin",
    "ImageError",
    "ImageInfo",
    "InputError",
    "ProviderError",
    "Relation",
    "Settings",
    "TwinObject",
    "resolve_settings",
]
