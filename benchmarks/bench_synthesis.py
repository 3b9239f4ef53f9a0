"""CoT synthesis throughput against a real OpenAI-compatible server on loopback: questions per second with 1, 4 and
16 requests in flight, and the ratio to one in flight.

The server is `transformers serve` with the tiny offline Qwen2.5-VL (the test suite's `tests/serving.py` starts it),
two CPU cores shared by server and client. Every question is asked once (`num_tries=1`, 16 new tokens, greedy), so
the figure is the synthesizer's request path: prompt rendering, PNG/base64 encoding, HTTP, judging, shard writing.
Rounds are interleaved (1, 4, 16, 1, 4, 16, ...) and the best round per setting is reported.

Run alone: `python benchmarks/bench_synthesis.py [--questions 48 --rounds 2]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

IN_FLIGHT = (1, 4, 16)


def run(questions: int = 48, rounds: int = 2) -> dict[str, Any]:
    from serving import ServedModel

    from trl_mig.datasets_builders import synthetic
    from trl_mig.datasets_builders.cot import EmptyCoTSetError
    from trl_mig.synthesis import CoTSynthesizer, SynthesisConfig
    from trl_mig.testing import save_tiny_model

    root = Path(tempfile.mkdtemp(prefix="bench-synthesis-"))
    checkpoint = save_tiny_model(root / "tiny", "qwen2_5_vl", size="tiny", seed=0)
    data = root / "questions"
    synthetic.build(synthetic.BuildArguments(output_dir=str(data), num_train=questions, num_test=0, seed=0))
    best: dict[int, float] = {}
    with ServedModel(checkpoint, log_path=root / "server.log") as server:
        for r in range(rounds):
            for n in IN_FLIGHT:
                config = SynthesisConfig(
                    dataset_name=str(data), base_url=server.base_url, teacher_model=server.model, api_key_env=None,
                    num_tries=1, max_tokens=16, max_in_flight=n, chunk_size=questions,
                    output_dir=str(root / f"cot-{n}-{r}"),
                )  # fmt: skip
                start = time.perf_counter()
                try:
                    CoTSynthesizer(config).run()
                except EmptyCoTSetError:
                    pass  # a random teacher is never right; every question was still asked and judged
                rate = questions / (time.perf_counter() - start)
                best[n] = max(best.get(n, 0.0), rate)
    return {
        "questions": questions,
        "rounds": rounds,
        "questions_per_second": {str(n): round(best[n], 2) for n in IN_FLIGHT},
        "ratio_to_one_in_flight": {str(n): round(best[n] / best[1], 2) for n in IN_FLIGHT},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    cli = parser.parse_args()
    import json

    print(json.dumps(run(cli.questions, cli.rounds), indent=2))
