"""`SynthesisConfig`: every setting of `trl-mig synthesize-cot`, one dataclass for TRL's parser and YAML recipes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..datasets_builders.decontaminate import decontaminate_field
from ..distributed import check_ddp_timeout, ddp_timeout_field


BACKENDS = ("openai", "transformers")


@dataclass
class SynthesisConfig:
    """Which teacher answers which questions, how often, and which traces are kept (DESIGN.md section 5, stage 1)."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Schema set whose questions the teacher answers (builder folder or Hub id)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to synthesize for."})
    max_rows: int | None = field(default=None, metadata={"help": "Only the first this many rows (a quick run)."})

    backend: str = field(
        default="openai",
        metadata={"help": "`openai`: any OpenAI-compatible chat endpoint (vLLM, `transformers serve`, a hosted API); "
                  "`transformers`: a local model."},
    )  # fmt: skip
    base_url: str = field(
        default="http://127.0.0.1:8000/v1", metadata={"help": "Endpoint root, up to and including `/v1`."}
    )
    teacher_model: str | None = field(
        default=None, metadata={"help": "Model name sent to the endpoint, or the local model (folder or Hub id)."}
    )
    api_key_env: str | None = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key (its value is never printed or written)."},
    )
    teacher_template: str = field(default="teacher-cot-v1", metadata={"help": "Teacher prompt template."})
    teacher_frame: str = field(
        default="qwen2_5_vl",
        metadata={"help": "Frame the teacher is told to answer in (`qwen2_5_vl`, `qwen2_vl`, `qwen3_vl`, `pixel`, "
                  "`normalized`); its boxes are converted to canonical form."},
    )  # fmt: skip
    num_tries: int = field(default=4, metadata={"help": "Tries per question (k); stops at the first right answer."})
    iou_threshold: float = field(
        default=0.5, metadata={"help": "A trace is kept when IoU >= this, in the right image where it is known."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Teacher sampling temperature."})
    max_tokens: int = field(default=1024, metadata={"help": "Longest teacher reply, in tokens."})
    max_in_flight: int = field(default=8, metadata={"help": "Requests in flight at once (bounded concurrency)."})
    timeout: float = field(default=120.0, metadata={"help": "Per-request timeout, seconds."})
    max_retries: int = field(
        default=5, metadata={"help": "Retries per request on timeouts, refused connections, 429 and 5xx (backoff)."}
    )
    seed: int = field(
        default=0, metadata={"help": "Base seed sent with each request (try t of row i: seed + 1000 i + t)."}
    )
    ddp_timeout: int = ddp_timeout_field()

    output_dir: str = field(default="mig_cot", metadata={"help": "Where the CoT set (README.md + data/) goes."})
    shards_dir: str | None = field(
        default=None, metadata={"help": "Raw shards (resumable); defaults to `<output_dir>-shards`."}
    )
    chunk_size: int = field(default=32, metadata={"help": "Rows per shard (the unit of resumption)."})
    restart: bool = field(default=False, metadata={"help": "Discard the shards in `shards_dir` and start again."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing CoT set in `output_dir`."})
    decontaminate_against: list[str] = decontaminate_field()
    repo_id: str = field(default="<org>/mig-cot", metadata={"help": "Hub repository named in the dataset card."})

    def __post_init__(self) -> None:
        if self.shards_dir is None:
            self.shards_dir = f"{self.output_dir.rstrip('/')}-shards"
        self.backend = self.backend.lower()
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("num_tries", "max_in_flight", "chunk_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        check_ddp_timeout(self.ddp_timeout)

    def settings(self) -> dict:
        """What decides the traces besides the data (recorded in the plan; a resume must match it)."""
        return {
            "backend": self.backend,
            "teacher_model": self.teacher_model,
            "teacher_template": self.teacher_template,
            "teacher_frame": self.teacher_frame,
            "num_tries": self.num_tries,
            "iou_threshold": self.iou_threshold,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
        }
