"""Shared test settings: offline hubs, a bounded hypothesis profile."""

import os

from hypothesis import HealthCheck, settings


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

settings.register_profile("trl-mig", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("trl-mig")
from serving import served_tiny_model, served_tiny_model_server  # noqa: E402, F401
