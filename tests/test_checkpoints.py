"""Reader checkpoint loading: FiD layout, plain HF directories, shipped/inferred configs, legacy bias."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny_t5 import ANSWERS, PASSAGES, QUESTIONS, build_tokenizer, tiny_t5
from transformers import T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.t5.modeling_t5 import T5Attention

from gumbel_rerank.reader import CheckpointError, FiDReader, FiDReaderConfig, load_t5_checkpoint
from gumbel_rerank.reader.checkpoints import (
    LEGACY_BIAS_KEY,
    infer_t5_config,
    is_fid_layout,
    remap_fid_keys,
    resolve_base_config,
    to_fid_layout,
)

# Released FiD readers keep T5's max distance of 128 and a sparse transformers-3.0.2 config.
MAX_DISTANCE = 128


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    build_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def plain_model(tok_dir):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(tok_dir)))
    return tiny_t5(vocab, seed=3, relative_attention_max_distance=MAX_DISTANCE)


def sparse_302_config(model: T5ForConditionalGeneration) -> dict:
    """config.json as transformers 3.0.2 wrote it for FiD: no feed_forward_proj, no tying flag,
    no max distance."""
    c = model.config
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "d_ff": c.d_ff, "d_kv": c.d_kv, "d_model": c.d_model, "decoder_start_token_id": 0,
        "dropout_rate": 0.1, "eos_token_id": 1, "initializer_factor": 1.0,
        "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
        "n_positions": 512, "num_heads": c.num_heads, "num_layers": c.num_layers,
        "output_past": True, "pad_token_id": 0,
        "relative_attention_num_buckets": c.relative_attention_num_buckets,
        "vocab_size": c.vocab_size,
    }  # fmt: skip


def write_fid_checkpoint(directory, model, bias: torch.Tensor | None, config: dict | None = None):
    directory.mkdir(parents=True, exist_ok=True)
    state = to_fid_layout({k: v.clone() for k, v in model.state_dict().items()})
    if bias is not None:
        state[LEGACY_BIAS_KEY] = bias
    torch.save(state, directory / "pytorch_model.bin")
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    return state


def legacy_bias_for(model, seed=0):
    torch.manual_seed(seed)
    return torch.randn(model.config.relative_attention_num_buckets, model.config.num_heads)


def test_fid_key_layout_round_trip(plain_model):
    state = plain_model.state_dict()
    fid = to_fid_layout(state)
    assert is_fid_layout(fid) and not is_fid_layout(state)
    assert "encoder.encoder.block.1.module.layer.0.SelfAttention.q.weight" in fid
    assert "encoder.encoder.final_layer_norm.weight" in fid
    assert set(remap_fid_keys(fid)) == set(state)


def test_fid_checkpoint_loads_strictly_and_matches(tmp_path, plain_model, tok_dir):
    bias = legacy_bias_for(plain_model)
    write_fid_checkpoint(tmp_path / "fid", plain_model, bias, sparse_302_config(plain_model))
    model, loaded_bias, report = load_t5_checkpoint(tmp_path / "fid")
    assert report.layout == "fid" and report.legacy_bias_present and report.config_source == "config.json"
    assert torch.equal(loaded_bias, bias)
    for key, value in plain_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("damage", ["missing", "unexpected"])
def test_fid_checkpoint_with_bad_keys_is_refused(tmp_path, plain_model, damage):
    state = to_fid_layout(dict(plain_model.state_dict()))
    if damage == "missing":
        del state["encoder.encoder.block.0.module.layer.0.SelfAttention.k.weight"]
    else:
        state["encoder.encoder.block.0.module.extra.weight"] = torch.zeros(2)
    (tmp_path / "bad").mkdir()
    torch.save(state, tmp_path / "bad" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=damage) as err:
        load_t5_checkpoint(tmp_path / "bad")
    assert "SelfAttention.k.weight" in str(err.value) or "extra.weight" in str(err.value)
    assert str(tmp_path / "bad") in str(err.value)


def test_plain_from_pretrained_leaves_fid_encoder_random_and_ours_does_not(tmp_path, plain_model):
    """The trap the loader exists for: transformers 5.x loads a FiD directory "successfully"
    with a random encoder. Our loader remaps it; the HF result is detectably different."""
    write_fid_checkpoint(tmp_path / "fid", plain_model, None, sparse_302_config(plain_model))
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    hf, info = T5ForConditionalGeneration.from_pretrained(str(tmp_path / "fid"), output_loading_info=True)
    assert any(k.startswith("encoder.block.") for k in info["missing_keys"])
    assert not torch.equal(hf.state_dict()[key], plain_model.state_dict()[key])
    ours, _, _ = load_t5_checkpoint(tmp_path / "fid")
    assert torch.equal(ours.state_dict()[key], plain_model.state_dict()[key])


def test_hf_directory_safetensors_and_sharded(tmp_path, plain_model):
    plain_model.save_pretrained(tmp_path / "hf")
    model, bias, report = load_t5_checkpoint(tmp_path / "hf")
    assert report.layout == "hf" and bias is None and report.weight_files == ["model.safetensors"]
    plain_model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    sharded, _, report = load_t5_checkpoint(tmp_path / "sharded")
    assert len(report.weight_files) > 1
    for key, value in plain_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
        assert torch.equal(sharded.state_dict()[key], value)


def test_config_inferred_from_shapes_and_base_config(tmp_path, plain_model):
    write_fid_checkpoint(tmp_path / "noconf", plain_model, None)
    model, _, report = load_t5_checkpoint(tmp_path / "noconf")
    assert report.config_source == "inferred-from-shapes"
    for field in ("d_model", "d_ff", "d_kv", "num_heads", "num_layers", "vocab_size"):
        assert getattr(model.config, field) == getattr(plain_model.config, field)
    # an explicit base config that does not fit the weights is refused, naming the field
    with pytest.raises(CheckpointError, match=r"configuration \(base-config:t5-base\) says \w+="):
        load_t5_checkpoint(tmp_path / "noconf", base_config="t5-base")
    (tmp_path / "conf.json").write_text(json.dumps(sparse_302_config(plain_model)))
    _, _, report = load_t5_checkpoint(tmp_path / "noconf", base_config=str(tmp_path / "conf.json"))
    assert report.config_source.startswith("base-config:")
    with pytest.raises(CheckpointError, match="neither a shipped"):
        load_t5_checkpoint(tmp_path / "noconf", base_config="t5-huge")


@pytest.mark.parametrize("name", ["t5-base", "t5-large"])
def test_shipped_base_configs_match_real_shapes(name):
    config_dict, source = resolve_base_config(name)
    assert source == f"base-config:{name}"
    config = T5Config(**{k: v for k, v in config_dict.items() if k != "architectures"})
    with torch.device("meta"):  # the real model's shapes without allocating it
        model = T5ForConditionalGeneration(config)
    inferred = infer_t5_config(model.state_dict())
    for field, value in inferred.items():
        if field not in ("model_type", "tie_word_embeddings"):
            assert config_dict[field] == value, field
    expected = {"t5-base": (768, 3072, 12, 12), "t5-large": (1024, 4096, 16, 24)}[name]
    assert (config.d_model, config.d_ff, config.num_heads, config.num_layers) == expected


def test_weights_are_loaded_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil").mkdir()
    torch.save({"shared.weight": Payload()}, tmp_path / "evil" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot read weights safely"):
        load_t5_checkpoint(tmp_path / "evil")


def test_untied_lm_head_keeps_its_own_weights(tmp_path, tok_dir):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(tok_dir)))
    model = tiny_t5(vocab, seed=5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])
    (tmp_path / "untied").mkdir()
    torch.save(state, tmp_path / "untied" / "pytorch_model.bin")
    loaded, _, report = load_t5_checkpoint(tmp_path / "untied")
    assert torch.equal(loaded.lm_head.weight, state["lm_head.weight"])
    assert torch.equal(loaded.shared.weight, state["shared.weight"])
    assert report.scale_decoder_outputs is False


# The legacy cross-attention bias ------------------------------------------------------------
def reference_302_model(plain, bias):
    """transformers' own T5Attention with a relative bias in decoder block 0's cross-attention:
    the 3.0.2 architecture FiD trained (the bias is shared with later layers by T5Stack)."""
    ref = copy.deepcopy(plain)
    old = ref.decoder.block[0].layer[1].EncDecAttention
    new = T5Attention(ref.decoder.config, has_relative_attention_bias=True, layer_idx=0, is_causal=False)
    new.load_state_dict({**old.state_dict(), "relative_attention_bias.weight": bias})
    ref.decoder.block[0].layer[1].EncDecAttention = new
    ref.set_attn_implementation("eager")
    assert new.config._attn_implementation == "eager"
    return ref.eval()


def reference_outputs(ref, reader, steps=6):
    tokens = reader.tokenize_passages(QUESTIONS, PASSAGES)
    states = reader.encode(tokens)
    enc = BaseModelOutput(last_hidden_state=states.hidden)
    mask2d = states.token_mask.reshape(len(QUESTIONS), -1).long()
    labels = reader.tokenize_targets(ANSWERS)
    # use_cache=False: with a cache, T5Attention takes past_seen_tokens for the cross-attention
    # bias from the self-attention cache, which already holds the current tokens.
    logits = ref(
        encoder_outputs=enc, attention_mask=mask2d, decoder_input_ids=ref._shift_right(labels), use_cache=False
    ).logits
    ids = torch.zeros(len(QUESTIONS), 1, dtype=torch.long)
    for _ in range(steps):  # greedy without a cache: every step recomputes every position
        step = ref(encoder_outputs=enc, attention_mask=mask2d, decoder_input_ids=ids, use_cache=False)
        ids = torch.cat([ids, step.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return states, labels, logits, ids[:, 1:]


def test_legacy_bias_reproduces_original_fid_exactly(tmp_path, plain_model, tok_dir):
    bias = legacy_bias_for(plain_model, seed=1) * 3  # large enough to change greedy outputs
    write_fid_checkpoint(tmp_path / "fid", plain_model, bias, sparse_302_config(plain_model))
    reader = FiDReader.from_pretrained(tmp_path / "fid", tokenizer=tok_dir, config=FiDReaderConfig(text_maxlength=16))
    assert reader.use_legacy_bias and reader.load_report.legacy_bias_used
    states, labels, ref_logits, ref_ids = reference_outputs(reference_302_model(plain_model, bias), reader)
    ours = reader.token_logprobs(states, labels)
    expected = ref_logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    torch.testing.assert_close(ours, expected * (labels != -100), atol=1e-5, rtol=1e-5)
    greedy = reader.generate_ids(states, max_new_tokens=6)
    width = greedy.shape[1]
    live = ref_ids[:, :width]
    # compare up to each row's first EOS (after it ours pads, the reference keeps going)
    for row in range(len(QUESTIONS)):
        end = (greedy[row] == 1).nonzero()
        stop = int(end[0]) + 1 if len(end) else width
        assert torch.equal(greedy[row, :stop], live[row, :stop])

    off = FiDReader.from_pretrained(
        tmp_path / "fid", tokenizer=tok_dir, config=FiDReaderConfig(text_maxlength=16, legacy_bias=False)
    )
    assert not off.use_legacy_bias and off.load_report.legacy_bias_used is False
    assert not torch.allclose(off.token_logprobs(states, labels), ours, atol=1e-3)


def test_zero_legacy_bias_matches_the_plain_model(tmp_path, plain_model, tok_dir):
    bias = torch.zeros(plain_model.config.relative_attention_num_buckets, plain_model.config.num_heads)
    write_fid_checkpoint(tmp_path / "fid0", plain_model, bias, sparse_302_config(plain_model))
    cfg = FiDReaderConfig(text_maxlength=16)
    with_bias = FiDReader.from_pretrained(tmp_path / "fid0", tokenizer=tok_dir, config=cfg)
    plain = FiDReader(copy.deepcopy(plain_model), with_bias.tokenizer, cfg)
    states = plain.encode(plain.tokenize_passages(QUESTIONS, PASSAGES))
    torch.testing.assert_close(with_bias.encode(with_bias.tokenize_passages(QUESTIONS, PASSAGES)).hidden, states.hidden)
    labels = plain.tokenize_targets(ANSWERS)
    torch.testing.assert_close(with_bias.token_logprobs(states, labels), plain.token_logprobs(states, labels))
    assert torch.equal(with_bias.generate_ids(states, max_new_tokens=6), plain.generate_ids(states, max_new_tokens=6))


def test_missing_tokenizer_is_a_clear_error(tmp_path, plain_model):
    write_fid_checkpoint(tmp_path / "fid", plain_model, None, sparse_302_config(plain_model))
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        FiDReader.from_pretrained(tmp_path / "fid")


def test_a_tokenizer_larger_than_the_readers_vocabulary_is_refused_at_load(tok_dir, tmp_path):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(tok_dir)))
    tiny_t5(vocab - 5, seed=0).save_pretrained(tmp_path / "small")  # another model's table
    with pytest.raises(CheckpointError, match=f"tokenizer has {vocab} tokens but the reader .* embeds only {vocab - 5}"):
        FiDReader.from_pretrained(tmp_path / "small", tokenizer=tok_dir)
    tiny_t5(vocab, seed=0).save_pretrained(tmp_path / "same")
    FiDReader.from_pretrained(tmp_path / "same", tokenizer=tok_dir)  # a matching pair loads


def test_with_the_legacy_bias_a_zero_one_mask_equals_selecting_the_kept_passages(tmp_path, plain_model, tok_dir):
    """The legacy bias depends on where a passage's tokens sit. Training masks passages in their
    incoming slots and evaluation selects the top k: the selected passages keep their slots, so
    both read the same thing (before, select() repacked them and the losses differed)."""
    bias = legacy_bias_for(plain_model, seed=2) * 3
    write_fid_checkpoint(tmp_path / "fid", plain_model, bias, sparse_302_config(plain_model))
    # short passages and a long answer: the bias reaches keys of the first two slots
    reader = FiDReader.from_pretrained(tmp_path / "fid", tokenizer=tok_dir, config=FiDReaderConfig(text_maxlength=6))
    assert reader.use_legacy_bias
    states = reader.encode(reader.tokenize_passages(QUESTIONS, PASSAGES))
    labels = reader.tokenize_targets([f"{a} {a} {a}" for a in ANSWERS])
    n = states.n_passages
    for chosen in ([[2, 1]] * 3, [[1, 2]] * 3, [[0, 2]] * 3, [[2, 0]] * 3, [[1, -1]] * 3):
        doc_idx = torch.tensor(chosen)
        log_mask = torch.full((len(QUESTIONS), n), -1e4)
        for row, picks in enumerate(chosen):
            for i in picks:
                if i >= 0:
                    log_mask[row, i] = 0.0
        masked = reader.lm_loss(states, labels, log_mask)
        selected = states.select(doc_idx)
        read = reader.lm_loss(selected, labels, torch.zeros(len(QUESTIONS), doc_idx.shape[1]))
        torch.testing.assert_close(read, masked, atol=1e-6, rtol=1e-6)
        # generation from the selection reads the same passages at the same positions
        assert torch.equal(reader.generate_ids(states, doc_idx, 4), reader.generate_ids(selected, None, 4))
    # the slots matter: the same passages repacked into slots 0, 1 read differently
    repacked = states.select(torch.tensor([[2, 1]] * 3))
    repacked.slots = None
    kept = torch.full((len(QUESTIONS), n), -1e4)
    kept[:, 1:] = 0.0
    assert not torch.allclose(reader.lm_loss(repacked, labels, torch.zeros(3, 2)), reader.lm_loss(states, labels, kept), atol=1e-5)
