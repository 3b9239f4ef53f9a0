"""Jinja2 templates of the model, dataset and metric cards trl-mig writes.

Lives at the top of the repository and ships in the wheel as `trl_mig.hub_cards`; `TEMPLATES_DIR` is where the
templates are, installed or not.
"""

from pathlib import Path


TEMPLATES_DIR = Path(__file__).parent
