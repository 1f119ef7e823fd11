"""Loading T5 / FiD reader checkpoints offline, strictly, without executing code.

Three kinds of directory load through the same path:
- released FiD checkpoints (``config.json`` from transformers 3.0.2 + ``pytorch_model.bin`` with
  FiD's encoder wrapper in the key names, and the legacy cross-attention bias);
- plain Hugging Face T5 directories (safetensors or bin, single or sharded);
- weights that must be paired with the original t5-base / t5-large configuration (shipped in
  this package), or whose configuration is inferred from tensor shapes.

Transformers 5.x ``from_pretrained`` on a FiD directory loads the decoder, leaves the whole
encoder randomly initialised and only prints a report; here every key must be accounted for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from transformers import T5Config, T5ForConditionalGeneration

LEGACY_BIAS_KEY = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
# Copies of shared.weight that a checkpoint may or may not store (tied in T5 v1.0).
TIED_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
SINGLE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
BASE_CONFIG_DIR = Path(__file__).parent / "configs"
# Fields that tensor shapes determine; a configuration that disagrees with the weights on any
# of them is refused rather than loaded with silently reshaped or random layers.
SHAPE_FIELDS = (
    "vocab_size",
    "d_model",
    "d_ff",
    "d_kv",
    "num_heads",
    "num_layers",
    "num_decoder_layers",
    "relative_attention_num_buckets",
    "feed_forward_proj",
)


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded exactly; the message names the file."""


@dataclass
class LoadReport:
    """What was loaded and how; written into run folders so results can be traced."""

    path: str
    weight_files: list[str]
    layout: str  # "fid" or "hf"
    config_source: str  # "base-config:<name>", "config.json", or "inferred-from-shapes"
    legacy_bias_present: bool
    legacy_bias_used: bool = False
    scale_decoder_outputs: bool = True
    filled_tied_aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as a JSON-able dict (what run folders record)."""
        return asdict(self)


def find_weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint directory, following a shard index if there is one."""
    for name in INDEX_FILES:
        index = directory / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointError(f"{index}: not a valid shard index ({err})") from err
            return [directory / shard for shard in sorted(set(weight_map.values()))]
    for name in SINGLE_WEIGHT_FILES:
        if (directory / name).is_file():
            return [directory / name]
    raise CheckpointError(
        f"{directory}: no weights found (looked for {', '.join(SINGLE_WEIGHT_FILES + INDEX_FILES)})"
    )


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    """Read weights with safetensors or ``torch.load(weights_only=True)``: never runs code."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file}: weight shard listed in the index is missing")
        try:
            if file.suffix == ".safetensors":
                part = load_safetensors(str(file))
            else:
                part = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt or unsafe pickles surface here with their file
            raise CheckpointError(f"{file}: cannot read weights safely ({err})") from err
        if not isinstance(part, dict):
            raise CheckpointError(f"{file}: expected a state dict, found {type(part).__name__}")
        state.update(part)
    return state


def is_fid_layout(keys: Iterable[str]) -> bool:
    """FiD wraps the T5 encoder: its keys start with ``encoder.encoder.``."""
    return any(key.startswith("encoder.encoder.") for key in keys)


_FID_BLOCK = re.compile(r"^encoder\.encoder\.block\.(\d+)\.module\.(.*)$")
_HF_BLOCK = re.compile(r"^encoder\.block\.(\d+)\.(.*)$")


def remap_fid_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FiD key layout -> plain T5 key layout (decoder and shared names are already plain)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _FID_BLOCK.match(key)
        if match:
            new = f"encoder.block.{match.group(1)}.{match.group(2)}"
        elif key.startswith("encoder.encoder."):
            new = "encoder." + key[len("encoder.encoder.") :]
        else:
            new = key
        if new in out:
            raise CheckpointError(f"two FiD keys map to {new}")
        out[new] = value
    return out


def to_fid_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain T5 key layout -> FiD's (the inverse of :func:`remap_fid_keys`).

    Used to export a reader trained here for the original FiD code, and in tests.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _HF_BLOCK.match(key)
        if match:
            out[f"encoder.encoder.block.{match.group(1)}.module.{match.group(2)}"] = value
        elif key.startswith("encoder."):
            out["encoder.encoder." + key[len("encoder.") :]] = value
        else:
            out[key] = value
    return out


def _count_blocks(keys: Iterable[str], prefix: str) -> int:
    """Number of ``{prefix}.block.<i>.`` layers among ``keys`` (highest index + 1; 0 if none)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.block\.(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _same_tensor(maybe: torch.Tensor | None, other: torch.Tensor) -> bool:
    """True when ``maybe`` is absent, shares ``other``'s storage (tied), or equals it."""
    if maybe is None or (maybe.data_ptr() == other.data_ptr() and maybe.shape == other.shape):
        return True
    return not maybe.is_meta and torch.equal(maybe, other)


def infer_t5_config(state: dict[str, torch.Tensor]) -> dict:
    """T5 configuration fields read off plain-layout tensor shapes.

    ``relative_attention_max_distance`` cannot be seen in shapes; 128 is every released T5's.
    """
    try:
        vocab, d_model = state["shared.weight"].shape
        bias = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        q_proj = state["encoder.block.0.layer.0.SelfAttention.q.weight"]
    except KeyError as err:
        raise CheckpointError(f"cannot infer a T5 configuration: no tensor {err}") from err
    buckets, heads = bias.shape
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in state
    wi = state[
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
        if gated
        else "encoder.block.0.layer.1.DenseReluDense.wi.weight"
    ]
    tied = _same_tensor(state.get("lm_head.weight"), state["shared.weight"])
    return {
        "model_type": "t5",
        "vocab_size": int(vocab),
        "d_model": int(d_model),
        "d_ff": int(wi.shape[0]),
        "d_kv": int(q_proj.shape[0]) // int(heads),
        "num_heads": int(heads),
        "num_layers": _count_blocks(state, "encoder"),
        "num_decoder_layers": _count_blocks(state, "decoder"),
        "relative_attention_num_buckets": int(buckets),
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        "tie_word_embeddings": bool(tied),
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def resolve_base_config(spec: str) -> tuple[dict, str]:
    """``t5-base`` / ``t5-large`` (shipped) or a path to a config.json or a folder holding one."""
    name = spec.removeprefix("google-t5/")
    shipped = BASE_CONFIG_DIR / f"{name}.json"
    if shipped.is_file():
        return json.loads(shipped.read_text()), f"base-config:{name}"
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        known = sorted(p.stem for p in BASE_CONFIG_DIR.glob("*.json"))
        raise CheckpointError(
            f"--base-config {spec!r}: neither a shipped configuration ({', '.join(known)}) "
            "nor a config.json file"
        )
    return _read_json(path), f"base-config:{path}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from err


def _check_config_matches(config: T5Config, inferred: dict, source: str, where: Path) -> None:
    for name in SHAPE_FIELDS:
        have, want = getattr(config, name), inferred[name]
        if have != want:
            raise CheckpointError(
                f"{where}: configuration ({source}) says {name}={have!r} but the weights have "
                f"{name}={want!r}; pass the matching --base-config (t5-base or t5-large) or a "
                "config.json that fits these weights"
            )


def _checkpoint_config(
    directory: Path, base_config: str | None, inferred: dict
) -> tuple[T5Config, str]:
    """The T5 configuration to build, and where it came from; checked against ``inferred``.

    Precedence: ``base_config``, then the directory's ``config.json``, then the shapes.
    """
    if base_config is not None:
        config_dict, source = resolve_base_config(base_config)
    elif (directory / "config.json").is_file():
        config_dict, source = _read_json(directory / "config.json"), "config.json"
    else:
        config_dict, source = inferred, "inferred-from-shapes"
    config_dict = {
        k: v for k, v in config_dict.items() if k not in ("architectures", "_name_or_path")
    }
    # Sparse 3.0.2 configs lack these; the modern defaults are the ones FiD trained with, but
    # tying must follow the weights (v1.1-style checkpoints have a separate lm_head).
    config_dict.setdefault("tie_word_embeddings", inferred["tie_word_embeddings"])
    config_dict.setdefault("decoder_start_token_id", 0)
    config = T5Config(**config_dict)
    _check_config_matches(config, inferred, source, directory)
    return config, source


def _fill_tied_weights(
    model: T5ForConditionalGeneration, state: dict[str, torch.Tensor]
) -> list[str]:
    """Add the tied copies of ``shared.weight`` a checkpoint left out (in place); their names.

    A checkpoint with its own ``lm_head`` gets its own parameter in ``model`` instead.
    """
    filled = []
    for alias in TIED_ALIASES:
        if alias not in state and "shared.weight" in state:
            state[alias] = state["shared.weight"]
            filled.append(alias)
    lm_head = state.get("lm_head.weight")
    if lm_head is None:
        state["lm_head.weight"] = state["shared.weight"]
        filled.append("lm_head.weight")
    elif not _same_tensor(lm_head, state["shared.weight"]):
        # Transformers 5.x ties lm_head to the input embedding for every T5; a checkpoint
        # with its own lm_head needs its own parameter or one would overwrite the other.
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(lm_head))
    return filled


def _load_exactly(
    model: T5ForConditionalGeneration,
    state: dict[str, torch.Tensor],
    directory: Path,
    what: str,
) -> None:
    """``load_state_dict(strict=True)``, refusing any missing or unexpected key by name first.

    ``what`` ("fid layout, config from ...") describes the checkpoint in the error message.
    """
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match a T5 model ({what}); "
            f"missing {len(missing)}: {missing[:8]}; unexpected {len(unexpected)}: {unexpected[:8]}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{directory}: {err}") from err


def load_t5_checkpoint(
    path: str | Path,
    base_config: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[T5ForConditionalGeneration, torch.Tensor | None, LoadReport]:
    """Load a FiD or plain T5 checkpoint directory strictly.

    Args:
        path: checkpoint directory.
        base_config: ``t5-base``, ``t5-large`` or a config path; wins over the directory's
            config.json. Without either, the configuration is inferred from tensor shapes.
        dtype: parameter dtype after loading.

    Returns:
        (model in eval mode with eager attention, legacy cross-attention bias weight of shape
        (buckets, heads) or None, LoadReport).

    Raises:
        CheckpointError: missing or unexpected keys, shape/config disagreement, unreadable files.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: reader checkpoint directory not found")
    files = find_weight_files(directory)
    state = read_state_dict(files)
    layout = "fid" if is_fid_layout(state) else "hf"
    if layout == "fid":
        state = remap_fid_keys(state)
    legacy_bias = state.pop(LEGACY_BIAS_KEY, None)
    config, source = _checkpoint_config(directory, base_config, infer_t5_config(state))

    model = T5ForConditionalGeneration(config)
    model.set_attn_implementation("eager")
    filled = _fill_tied_weights(model, state)
    _load_exactly(model, state, directory, f"{layout} layout, config from {source}")
    model.to(dtype)
    model.eval()
    model.requires_grad_(False)
    report = LoadReport(
        path=str(directory),
        weight_files=[f.name for f in files],
        layout=layout,
        config_source=source,
        legacy_bias_present=legacy_bias is not None,
        scale_decoder_outputs=bool(config.scale_decoder_outputs),
        filled_tied_aliases=filled,
    )
    return model, legacy_bias, report
