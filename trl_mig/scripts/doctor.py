"""`trl-mig doctor --model DIR --data DIR`: boxes as the processor sees them, pixel limits, token budgets, bad rows.

Run it before any GPU hour: it draws a few rows' gold boxes on the resized images in the model's frame, checks that
the processor, the run record and the evaluation flags agree on the pixel limits, counts prompt tokens against the
budgets, and lists rows whose boxes or image placeholders are wrong (`trl_mig.doctor`). Writes `doctor.json` and PNG
panels to `--output-dir`; exits with status 1 when a finding has severity `error`.
"""

from __future__ import annotations

from typing import Any

from ..doctor import DoctorArguments


COMMAND = "doctor"
HELP = "check a model and a dataset before training: boxes as the processor sees them, pixel limits, token budgets"


def dataclasses() -> tuple[type, ...]:
    return (DoctorArguments,)


def main(args: DoctorArguments) -> dict[str, Any]:
    """Run the doctor, print the findings; `SystemExit(1)` on errors so scripts and CI stop before training."""
    from ..doctor import print_findings, run_doctor

    report = run_doctor(args)
    print_findings(report)
    summary = report.to_dict()
    if report.errors:
        raise SystemExit(1)
    return summary
