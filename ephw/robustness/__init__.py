"""Robustness harness: attacks, corruptions, EP gradient modes, resumable runs, checklist, reports.

>>> from ephw.robustness import ModelSpec, load_classifier, AttackSpec, run_attack
>>> ep = load_classifier(ModelSpec("EP-CNN", grad="implicit"))     # bundled digits EP-CNN
>>> out = run_attack(ep, AttackSpec("pgd", "pgd", "L2", (1.0,)), x, y, eps=1.0, seed=0)
>>> out.correct.float().mean()                                        # robust accuracy

See docs/robustness.md.
"""

from ephw.robustness.attacks import AttackOutcome, AttackSpec, run_attack
from ephw.robustness.checklist import Thresholds
from ephw.robustness.checklist import evaluate as evaluate_checklist
from ephw.robustness.config import EPS_GRIDS, RobustnessConfig, config_from_dict, load_config
from ephw.robustness.corruptions import CORRUPTIONS, corrupt_images
from ephw.robustness.gradients import GradMode, parse_grad
from ephw.robustness.models import Classifier, EPClassifier, ModelSpec, load_classifier
from ephw.robustness.report import write_report
from ephw.robustness.runner import read_rows, run_robustness

__all__ = [
    "CORRUPTIONS",
    "EPS_GRIDS",
    "AttackOutcome",
    "AttackSpec",
    "Classifier",
    "EPClassifier",
    "GradMode",
    "ModelSpec",
    "RobustnessConfig",
    "Thresholds",
    "config_from_dict",
    "corrupt_images",
    "evaluate_checklist",
    "load_classifier",
    "load_config",
    "parse_grad",
    "read_rows",
    "run_attack",
    "run_robustness",
    "write_report",
]
