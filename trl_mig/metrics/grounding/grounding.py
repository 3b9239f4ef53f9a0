"""`evaluate` module for multi-image grounding: Acc@t, strict accuracy, mIoU and answer-health rates.

A thin wrapper: the maths lives in `trl_mig.metrics.core` (plain functions, also usable without `evaluate`).
Load it offline by path with `trl_mig.metrics.load("grounding")`.
"""

import datasets
import evaluate

from trl_mig.metrics.core import compute_grounding_metrics


_DESCRIPTION = """
Scores box answers of multimodal LLMs against canonical gold boxes (xyxy in [0, 1] of the original image) across
several images. Raw answers are parsed by trl-mig (JSON bbox_2d, box tokens, tuples, bare lists) and converted from
their declared frame; parsed predictions carry canonical boxes already.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]` or `list[dict]`): raw model outputs, or parsed predictions
        `{"boxes": [[x1, y1, x2, y2], ...], "image": int}` (canonical boxes, 0-based image, -1 = not named).
    references (`list[list[list[float]]]`): per row, canonical gold boxes; the first is scored; `[]` = no target.
    target_images (`list[int]`, *optional*): per row, 0-based target image, -1 = unknown.
    image_sizes (`list[list[list[int]]]`, *optional*): per row, original (width, height) of each image.
    tasks (`list[str]`, *optional*): per row task, for per-task results and the MIG-Bench average.
    frame (`str`, *optional*, defaults to `"qwen2_5_vl"`): frame of raw answers.
    resized_sizes, min_pixels, max_pixels, factor, require_think, ids: see `trl_mig.metrics.compute_grounding_metrics`.
Returns:
    `dict` with `overall` (acc@0.3, acc@0.5, acc@0.7, strict_acc@0.5, miou, parse_fail_rate, wrong_image_rate,
    format_rate), `flags`, and with `tasks`: per-task values and `mig_bench_avg_acc@0.5`.
Examples:
    >>> import trl_mig.metrics
    >>> metric = trl_mig.metrics.load("grounding")
    >>> out = metric.compute(predictions=['{"image": 1, "bbox_2d": [0, 0, 500, 500]}'],
    ...                      references=[[[0.0, 0.0, 0.5, 0.5]]], target_images=[0], frame="qwen2_vl")
    >>> out["overall"]["acc@0.5"]
    1.0
"""

_CITATION = """
@article{mig-r1-2025,
  title={Improving the Reasoning of Multi-Image Grounding in MLLMs via Reinforcement Learning},
  journal={arXiv preprint arXiv:2507.00748},
  year={2025}
}
"""

_BOXES = datasets.List(datasets.List(datasets.Value("float64")))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Grounding(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": _BOXES}),
                datasets.Features(
                    {
                        "predictions": {"boxes": _BOXES, "image": datasets.Value("int32")},
                        "references": _BOXES,
                    }
                ),
            ],
            reference_urls=["https://huggingface.co/papers/2507.00748"],
        )

    def _compute(
        self,
        predictions,
        references,
        target_images=None,
        image_sizes=None,
        tasks=None,
        frame="qwen2_5_vl",
        resized_sizes=None,
        min_pixels=3136,
        max_pixels=1003520,
        factor=28,
        require_think=True,
        ids=None,
    ):
        return compute_grounding_metrics(
            predictions,
            references,
            target_images=target_images,
            image_sizes=image_sizes,
            tasks=tasks,
            frame=frame,
            resized_sizes=resized_sizes,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            factor=factor,
            require_think=require_think,
            ids=ids,
        )
