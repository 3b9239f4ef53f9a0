"""Stage 1: cold-start chain-of-thought from a teacher model (`trl-mig synthesize-cot`).

`CoTSynthesizer` asks a teacher (`OpenAITeacher`: any OpenAI-compatible endpoint; `TransformersTeacher`: a local model)
up to k times per question, keeps the first right trace with its boxes in canonical form, and writes the CoT set
through `trl_mig.datasets_builders.cot`. Importing this package is cheap.
"""

from __future__ import annotations

from .._lazy import lazy_getattr


_LAZY = {
    "SynthesisConfig": "trl_mig.synthesis.config",
    "CoTSynthesizer": "trl_mig.synthesis.synthesizer",
    "TransformersTeacher": "trl_mig.synthesis.synthesizer",
    "judge_reply": "trl_mig.synthesis.synthesizer",
    "OpenAITeacher": "trl_mig.synthesis.teacher",
    "TeacherError": "trl_mig.synthesis.teacher",
    "TeacherReply": "trl_mig.synthesis.teacher",
    "canonical_reasoning": "trl_mig.synthesis.reasoning",
    "get_teacher_template": "trl_mig.synthesis.reasoning",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
