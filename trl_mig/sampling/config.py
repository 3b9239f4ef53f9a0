"""`RejectionSamplingConfig`: every setting of `trl-mig sample`, as one dataclass that TRL's parser reads from flags
and YAML recipes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..datasets_builders.decontaminate import decontaminate_field
from ..distributed import check_ddp_timeout, ddp_timeout_field
from ..rewards import DEFAULT_REWARD_FUNCS


BACKENDS = ("auto", "hf", "vllm")


@dataclass
class RejectionSamplingConfig:
    r"""
    Configuration of [`RejectionSampler`]: which model answers which prompts, how often, and which prompts are kept.

    The defaults follow DESIGN.md section 5: 8 samples per prompt at temperature 1.0 (the GRPO group size and sampling
    temperature of the closest published recipe, UniVG-R1, so the pass rate measures what RL will see), a sample is
    right when `strict_acc@0.5` holds, and the RL set keeps prompts with `0 < pass_rate < 1`.
    """

    # what is sampled
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The merged SFT model (local folder or Hub id) that answers the prompts."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Schema set to sample (a builder's output folder or a Hub id); `load_dataset` reads it."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split whose prompts are sampled."})
    max_prompts: int | None = field(
        default=None, metadata={"help": "Sample only the first this many prompts of the split (a quick run)."}
    )

    # where it goes
    output_dir: str = field(default="mig_rl", metadata={"help": "Where the RL set (README.md + data/) is written."})
    samples_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the raw shards go (one JSONL file per chunk, written as the run goes; a rerun resumes). "
            "Defaults to `<output_dir>-samples`."
        },
    )
    chunk_size: int = field(
        default=64,
        metadata={"help": "Prompts per shard: the unit of work, of resumption and of seeding (a chunk's samples "
                  "depend only on its prompts, the seed and the chunk index)."},
    )  # fmt: skip
    resample: bool = field(
        default=False, metadata={"help": "Discard the shards already in `samples_dir` and sample from scratch."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing RL set in `output_dir`."})
    decontaminate_against: list[str] = decontaminate_field()
    repo_id: str = field(default="<org>/mig-rl", metadata={"help": "Hub repository named in the dataset card."})

    # how answers are generated
    num_generations: int = field(default=8, metadata={"help": "Samples per prompt (N)."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per generation call (each yields `num_generations` sequences)."}
    )
    max_new_tokens: int = field(default=1024, metadata={"help": "Longest completion, in tokens."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (0: greedy, one sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    top_k: int | None = field(default=None, metadata={"help": "Top-k sampling (unset: no top-k filter)."})
    seed: int = field(default=42, metadata={"help": "Base seed; chunk k is sampled with seed + k."})
    backend: str = field(
        default="auto",
        metadata={
            "help": "`hf` (batched `generate`), `vllm`, or `auto`: vLLM when it is installed and CUDA is there."
        },
    )
    min_pixels: int | None = field(
        default=None,
        metadata={"help": "Smallest image area in pixels (the processor's `min_pixels`); unset: its own."},
    )
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Largest image area in pixels (the processor's `max_pixels`); use the GRPO run's value."},
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype (`auto`, `bfloat16`, `float16`, `float32`)."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention implementation for the HF backend (e.g. `flash_attention_2`)."}
    )
    use_cpu: bool = field(
        default=False,
        metadata={"help": "Run on CPU; several processes then form a gloo group (`accelerate launch --multi_gpu`)."},
    )
    ddp_timeout: int = ddp_timeout_field()
    vllm_gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "Share of GPU memory vLLM may take (vLLM backend)."}
    )
    vllm_max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM `max_model_len` (prompt + completion tokens); unset: the model's."}
    )

    # how answers are scored and prompts selected
    template: str = field(
        default="mig-think-v1",
        metadata={"help": "Prompt template the prompts are rendered with (`mig-think-v1`, `mig-direct-v1`)."},
    )
    frame: str | None = field(
        default=None, metadata={"help": "Frame the model answers in; defaults to the model's (`config.model_type`)."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARD_FUNCS),
        metadata={"help": "Rewards recorded per sample (names in `trl_mig.rewards.REWARD_FUNCS` or dotted paths); "
                  "the same objects RL uses."},
    )  # fmt: skip
    min_pass_rate: float = field(default=0.0, metadata={"help": "Lower edge of the pass-rate band."})
    max_pass_rate: float = field(default=1.0, metadata={"help": "Upper edge of the pass-rate band."})
    include_min: bool = field(default=False, metadata={"help": "Keep prompts whose pass rate equals the lower edge."})
    include_max: bool = field(default=False, metadata={"help": "Keep prompts whose pass rate equals the upper edge."})

    def __post_init__(self) -> None:
        if self.samples_dir is None:
            self.samples_dir = f"{self.output_dir.rstrip('/')}-samples"
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [self.reward_funcs]
        self.backend = self.backend.lower()
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("num_generations", "batch_size", "max_new_tokens", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.num_generations > 1:
            raise ValueError(
                f"temperature=0 is greedy decoding: all {self.num_generations} samples of a prompt would be the same "
                "answer and every pass rate 0 or 1; use temperature > 0 or num_generations=1"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        check_ddp_timeout(self.ddp_timeout)
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1 or unset, got {self.max_prompts}")
        self.band()  # validates the edges

    def band(self):
        """The pass-rate band (`trl_mig.datasets_builders.rl.PassRateBand`)."""
        from ..datasets_builders.rl import PassRateBand

        return PassRateBand(self.min_pass_rate, self.max_pass_rate, self.include_min, self.include_max)

    def generation_settings(self) -> dict:
        """What decides the samples besides the model and prompts (recorded in the plan; a resume must match it)."""
        return {
            "num_generations": self.num_generations,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "batch_size": self.batch_size,
        }
