#!/usr/bin/env python3
"""Reference fixtures for Keel's Qwen3 / Qwen3-MoE model, made by Hugging Face transformers.

NOT run by CI (it needs torch + transformers). Two modes:

  make_hf_fixtures.py [--out Tests/Fixtures/hf] [--only NAME ...]
      Builds tiny random Qwen3 / Qwen3-MoE models with transformers, saves each with
      `save_pretrained` (safetensors), reloads it from disk with `from_pretrained` (so the
      expected values come from exactly what is on disk: bf16 weights, sharding, tying), and
      writes expected.json next to it:
        sequences  token ids (vocabulary 64)
        logp       [seq][t] = log p(tokens[t+1] | tokens[..t]), t = 0..T-2 (float32 forward,
                   log-softmax of the float32 logits taken in float64)
        entropy    [seq][t] entropy of the full next-token distribution at the same positions
        experts    {"<layer>": [seq][pos][slot]} experts chosen by each sparse layer's `mlp.gate`
                   at every position (torch.topk order: most probable first)
        margins    {"<layer>": [seq][pos]} p_(k) - p_(k+1) of the router softmax (sorted
                   descending); where this is tiny the choice is a near-tie and not comparable
        versions   torch / transformers / safetensors / python

  make_hf_fixtures.py --check-keel DIR [--sequences JSON|FILE] [--expect FILE] [--tol 1e-4]
      Loads a Keel-written checkpoint directory with AutoModelForCausalLM.from_pretrained,
      reports missing / unexpected / mis-shaped tensors (exit 1 if any), and prints JSON with the
      log-probs and entropies of the sequences (default: DIR/expected.json's, else built-in
      ones). With --expect FILE (a JSON with "logp", e.g. Keel's own log-probs in the format
      above) it also reports the largest |difference| and exits 1 above --tol.

Setup (CPU is enough; only PyPI is needed):
  python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch transformers safetensors
  /tmp/hfenv/bin/python scripts/make_hf_fixtures.py
"""
import argparse
import json
import math
import os
import platform
import shutil
import sys

import torch

try:
    import safetensors
    import transformers
    from safetensors import safe_open
    from transformers import (AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig,
                              Qwen3MoeForCausalLM)
except ImportError as e:  # pragma: no cover
    sys.exit(f"make_hf_fixtures.py needs transformers and safetensors: {e}")

VOCAB = 64
MAX_POS = 64
MATRIX_STD = 0.3      # far from the 0.02 default, so log-probs are far from uniform
NORM_STD = 0.2        # norm weights 1 + 0.2·N(0,1): a `1 + w` or missing-weight bug shows

# name -> (kind, config kwargs, seed, save kwargs)
FIXTURES = {
    "qwen3-gqa": dict(
        kind="dense", seed=1401,
        desc="dense, GQA 4 q heads / 2 kv heads, head_dim 16 != hidden/heads 12, untied lm_head, rope_theta 1e6",
        config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, intermediate_size=96, rope_theta=1_000_000.0, tie_word_embeddings=False)),
    "qwen3-tied": dict(
        kind="dense", seed=1402,
        desc="dense, MHA 4 heads, head_dim 8, tie_word_embeddings (no lm_head.weight on disk), rope_theta 1e4",
        config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    head_dim=8, intermediate_size=64, rope_theta=10_000.0, tie_word_embeddings=True)),
    "qwen3moe-norm": dict(
        kind="moe", seed=1403,
        desc="MoE, 8 experts top-2, norm_topk_prob true, decoder_sparse_step 1 (all layers sparse), GQA 4/2, rope_theta 1e6",
        config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, intermediate_size=64, moe_intermediate_size=16, num_experts=8,
                    num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                    rope_theta=1_000_000.0, tie_word_embeddings=False)),
    "qwen3moe-nonorm-mixed": dict(
        kind="moe", seed=1404,
        desc="MoE, 3 layers, mlp_only_layers [1] (dense layer 1 between sparse 0 and 2), 8 experts top-3, "
             "norm_topk_prob false, MHA 4 heads head_dim 8, rope_theta 1e4",
        config=dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                    head_dim=8, intermediate_size=48, moe_intermediate_size=16, num_experts=8,
                    num_experts_per_tok=3, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                    rope_theta=10_000.0, tie_word_embeddings=False)),
    "qwen3-bf16-sharded": dict(
        kind="dense", seed=1405, dtype=torch.bfloat16, max_shard_size="40KB",
        desc="dense, GQA 4/2, head_dim 16, saved in bfloat16 and sharded (index.json); expected values are the "
             "float32 forward of the bf16 weights",
        config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, intermediate_size=96, rope_theta=1_000_000.0, tie_word_embeddings=False)),
}


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def fixed_sequences(seed=7):
    """Five fixed sequences: lengths 2 (one scored position), 11, 16 (repetitive), 30 and 64 (= max)."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda n: torch.randint(0, VOCAB, (n,), generator=g).tolist()
    rep = [7, 7, 7, 7, 63, 0, 63, 0, 63, 0, 5, 9, 5, 9, 5, 9]
    return [[3, 60], rnd(11), rep, rnd(30), rnd(MAX_POS)]


def make_config(kind, kw):
    kw = dict(kw)
    theta = kw.pop("rope_theta")
    common = dict(vocab_size=VOCAB, max_position_embeddings=MAX_POS, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, use_sliding_window=False, attention_dropout=0.0)
    common.update(kw)
    # transformers >= 5 spells RoPE as rope_parameters; 4.x took rope_theta (and ignores the other)
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        common["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        common["rope_theta"] = theta
        common["rope_scaling"] = None
    if kind == "moe":
        common.setdefault("router_aux_loss_coef", 0.001)
        return Qwen3MoeConfig(**common)
    return Qwen3Config(**common)


@torch.no_grad()
def randomize(model, seed):
    """Deterministic init, independent of transformers' own init order: parameters in name order,
    matrices N(0, 0.3²), RMSNorm weights 1 + 0.2·N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("norm.weight"):
            p.copy_(1 + NORM_STD * torch.randn(p.shape, generator=g, dtype=torch.float32))
        else:
            p.copy_(MATRIX_STD * torch.randn(p.shape, generator=g, dtype=torch.float32))
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"


def load(directory, dtype=torch.float32):
    kw = dict(dtype=dtype, attn_implementation="eager", output_loading_info=True)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["experts_implementation"] = "eager"   # the plain per-expert loop
    model, info = AutoModelForCausalLM.from_pretrained(directory, **kw)
    model.eval()
    return model, info


@torch.no_grad()
def evaluate(model, sequences):
    """Per sequence: logp / entropy at t = 0..T-2, and per sparse layer the experts and router margins
    at every position (batch of one, no padding)."""
    cfg = model.config
    k = getattr(cfg, "num_experts_per_tok", 0)
    gates = {}
    for name, mod in model.named_modules():
        parts = name.split(".")
        if len(parts) == 5 and parts[:2] == ["model", "layers"] and parts[3:] == ["mlp", "gate"]:
            gates[int(parts[2])] = mod
    captured = {}

    def hook(layer):
        def f(_mod, _inp, out):
            logits = out[0] if isinstance(out, tuple) else out   # transformers 5: (logits, scores, indices)
            captured[layer] = logits.detach().float().reshape(-1, logits.shape[-1])
        return f

    handles = [m.register_forward_hook(hook(l)) for l, m in gates.items()]
    res = {"logp": [], "entropy": [], "experts": {str(l): [] for l in sorted(gates)},
           "margins": {str(l): [] for l in sorted(gates)}}
    try:
        for seq in sequences:
            captured.clear()
            ids = torch.tensor([seq], dtype=torch.long)
            extra = {"output_router_logits": True} if gates else {}
            out = model(input_ids=ids, use_cache=False, **extra)
            logits = out.logits[0].float()
            assert logits.dtype == torch.float32
            lsm = torch.log_softmax(logits.double(), dim=-1)
            tgt = torch.tensor(seq[1:], dtype=torch.long)
            res["logp"].append(lsm[:-1].gather(1, tgt[:, None])[:, 0].tolist())
            res["entropy"].append((-(lsm[:-1].exp() * lsm[:-1]).sum(-1)).tolist())
            for l in sorted(gates):
                rl = captured[l]
                assert rl.shape[0] == len(seq), (l, rl.shape)
                probs = torch.softmax(rl, dim=-1)
                top = torch.topk(probs, k, dim=-1)
                srt = torch.sort(probs.double(), dim=-1, descending=True).values
                res["experts"][str(l)].append(top.indices.tolist())
                res["margins"][str(l)].append((srt[:, k - 1] - srt[:, k]).tolist())
                # cross-check against output_router_logits (the model's own record)
                if getattr(out, "router_logits", None) is not None:
                    sparse = sorted(gates).index(l)
                    assert torch.equal(out.router_logits[sparse].float().reshape(rl.shape), rl)
    finally:
        for h in handles:
            h.remove()
    return res


def check_loading_info(info):
    bad = {key: sorted(list(info.get(key, []))) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    bad["error_msgs"] = list(info.get("error_msgs", []))
    return bad, any(bad.values())


def tensor_names(directory):
    idx = os.path.join(directory, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    names = {}
    for fn in files:
        with safe_open(os.path.join(directory, fn), "pt") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                names[k] = (sl.get_dtype(), list(sl.get_shape()), fn)
    return names


def compact_json(x, indent=0):
    """JSON with one line per token sequence (and per sequence's expert list), diff-friendly."""
    pad, inner = " " * indent, " " * (indent + 1)
    def depth(v):
        return 1 + max((depth(e) for e in v), default=0) if isinstance(v, list) else 0
    def short_rows(v):
        return depth(v) == 2 and all(len(e) <= 8 for e in v)
    if isinstance(x, dict):
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, indent + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(x, list) and x and not (depth(x) == 1 or short_rows(x)):
        return "[\n" + ",\n".join(inner + compact_json(v, indent + 1) for v in x) + "\n" + pad + "]"
    return json.dumps(x, separators=(",", ":"))


def rounded(x, nd=9):
    if isinstance(x, list):
        return [rounded(v, nd) for v in x]
    if isinstance(x, float):
        return float(f"{x:.{nd}g}")
    return x


def make_fixture(name, spec, out_root, sequences):
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    torch.manual_seed(spec["seed"])
    cfg = make_config(spec["kind"], spec["config"])
    cls = Qwen3MoeForCausalLM if spec["kind"] == "moe" else Qwen3ForCausalLM
    model = cls(cfg).float().eval()
    randomize(model, spec["seed"])
    dtype = spec.get("dtype", torch.float32)
    if dtype != torch.float32:
        model = model.to(dtype)
    save_kw = {"safe_serialization": True}
    if "max_shard_size" in spec:
        save_kw["max_shard_size"] = spec["max_shard_size"]
    try:
        model.save_pretrained(d, **save_kw)
    except TypeError:  # safe_serialization removed (always safetensors) in newer releases
        save_kw.pop("safe_serialization")
        model.save_pretrained(d, **save_kw)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)   # not part of the model; Keel neither reads nor writes it
    for fn in os.listdir(d):
        os.chmod(os.path.join(d, fn), 0o644)

    # Reload from disk, in float32 (bf16 weights upcast exactly), and compute the reference there.
    ref, info = load(d, torch.float32)
    bad, any_bad = check_loading_info(info)
    if any_bad:
        raise SystemExit(f"{name}: reloading the saved model was not clean: {bad}")
    names = tensor_names(d)
    hub = hub_tensor_shapes(json.load(open(os.path.join(d, "config.json"))))
    assert {k: v[1] for k, v in names.items()} == hub, f"{name}: saved tensors differ from the Hub layout"
    if cfg.tie_word_embeddings:
        assert "lm_head.weight" not in names, "tied model wrote lm_head.weight"
    if "max_shard_size" in spec:
        shards = sorted({v[2] for v in names.values()})
        assert len(shards) >= 2, f"{name}: expected >= 2 shards, got {shards}"
    if dtype == torch.bfloat16:
        assert all(v[0] in ("BF16", "bfloat16") for v in names.values()), "not all tensors are bf16"
    res = evaluate(ref, sequences)
    # sanity: far from uniform
    mean_ent = sum(sum(e) for e in res["entropy"]) / sum(len(e) for e in res["entropy"])
    expected = {
        "fixture": name,
        "description": spec["desc"],
        "seed": spec["seed"],
        "sequences": sequences,
        "logp": rounded(res["logp"]),
        "entropy": rounded(res["entropy"]),
        "experts": res["experts"],
        "margins": rounded(res["margins"]),
        "conventions": "logp[s][t] = log p(sequences[s][t+1] | sequences[s][..t]), t = 0..T-2; entropy at the same "
                       "positions; experts[layer][s][pos] = indices chosen by model.layers.<layer>.mlp.gate at every "
                       "position (most probable first); margins[layer][s][pos] = p_(k) - p_(k+1) of the router "
                       "softmax. float32 forward (eager attention, eager experts), batch of one.",
        "versions": versions(),
    }
    with open(os.path.join(d, "expected.json"), "w") as f:
        f.write(compact_json(expected) + "\n")
    size = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    margins = [m for l in res["margins"].values() for s in l for m in s]
    small = sum(1 for m in margins if m <= 1e-4)
    print(f"{name}: {len(names)} tensors, {size} bytes, mean entropy {mean_ent:.3f} (uniform {math.log(VOCAB):.3f})"
          + (f", {len(margins)} routings ({small} with margin <= 1e-4, min {min(margins):.2e})" if margins else ""))
    return size


def hub_tensor_shapes(cfg):
    """The tensors a Qwen3 / Qwen3-MoE checkpoint must hold, Hub names and [out, in] shapes
    (shared/qwen3-notes.md), from a raw config.json dict. Independent of transformers' in-memory
    layout (transformers >= 5 fuses MoE experts in memory and reports their keys fused)."""
    C, H, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    KV, V = cfg.get("num_key_value_heads") or H, cfg["vocab_size"]
    moe = cfg["model_type"] == "qwen3_moe"
    E = (cfg.get("num_experts") or cfg.get("num_local_experts") or 0) if moe else 0
    step, only = cfg.get("decoder_sparse_step", 1), cfg.get("mlp_only_layers") or []
    F, Fm = cfg.get("intermediate_size"), cfg.get("moe_intermediate_size")
    t = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C]}
    if not cfg.get("tie_word_embeddings", False):
        t["lm_head.weight"] = [V, C]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                  p + "self_attn.q_proj.weight": [H * D, C], p + "self_attn.k_proj.weight": [KV * D, C],
                  p + "self_attn.v_proj.weight": [KV * D, C], p + "self_attn.o_proj.weight": [C, H * D],
                  p + "self_attn.q_norm.weight": [D], p + "self_attn.k_norm.weight": [D]})
        if E > 0 and l not in only and step > 0 and (l + 1) % step == 0:
            t[p + "mlp.gate.weight"] = [E, C]
            for e in range(E):
                q = p + f"mlp.experts.{e}."
                t.update({q + "gate_proj.weight": [Fm, C], q + "up_proj.weight": [Fm, C], q + "down_proj.weight": [C, Fm]})
        else:
            t.update({p + "mlp.gate_proj.weight": [F, C], p + "mlp.up_proj.weight": [F, C], p + "mlp.down_proj.weight": [C, F]})
    return t


def check_keel(directory, seq_arg, expect, tol):
    # 1. by name, against the Hub layout (per expert), independent of transformers
    raw = json.load(open(os.path.join(directory, "config.json")))
    names = tensor_names(directory)
    want = hub_tensor_shapes(raw)
    hub = {"missing": sorted(set(want) - set(names)), "unexpected": sorted(set(names) - set(want)),
           "misshaped": sorted(f"{k}: {names[k][1]} != {want[k]}" for k in set(want) & set(names) if names[k][1] != want[k])}
    report = {"directory": directory, "model_type": raw.get("model_type"), "tensors_on_disk": len(names),
              "hub_layout": hub, "versions": versions()}
    status = 1 if any(hub.values()) else 0
    # 2. transformers' own loading report, and the log-probs
    try:
        model, info = load(directory, torch.float32)
    except Exception as e:  # transformers >= 5 raises when it cannot fuse a MoE layer's experts
        report["transformers_error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(report, indent=1))
        print(f"FAILED: {directory}: transformers cannot load it: {report['transformers_error']}", file=sys.stderr)
        return 1
    bad, any_bad = check_loading_info(info)
    report.update(bad)
    report["parameters_in_model"] = sum(1 for _ in model.named_parameters())
    if any_bad:
        status = 1
    if seq_arg:
        sequences = json.load(open(seq_arg)) if os.path.exists(seq_arg) else json.loads(seq_arg)
        if isinstance(sequences, dict):
            sequences = sequences["sequences"]
    elif os.path.exists(os.path.join(directory, "expected.json")):
        sequences = json.load(open(os.path.join(directory, "expected.json")))["sequences"]
    else:
        sequences = fixed_sequences()
    res = evaluate(model, sequences)
    report.update({"sequences": sequences, "logp": res["logp"], "entropy": res["entropy"], "experts": res["experts"]})
    if expect:
        want_logp = json.load(open(expect))["logp"]
        same_shape = [len(s) for s in want_logp] == [len(s) for s in res["logp"]]
        diff = max((abs(a - b) for ws, gs in zip(want_logp, res["logp"]) for a, b in zip(ws, gs)), default=0.0)
        report["max_abs_logp_diff"] = diff if same_shape else None
        if not same_shape or diff > tol:
            status = 1
    print(json.dumps(report, indent=1))
    problems = {k: v for k, v in {**hub, **bad}.items() if v}
    print(("OK" if status == 0 else "FAILED") + f": {directory} "
          + ("loads cleanly" if not problems else f"tensor problems {problems}")
          + (f"; max |Δlogp| = {report['max_abs_logp_diff']} (tol {tol})" if expect else ""), file=sys.stderr)
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "Tests", "Fixtures", "hf"))
    ap.add_argument("--only", nargs="*", help="fixture names to (re)make")
    ap.add_argument("--check-keel", metavar="DIR", help="load a Keel-written checkpoint with transformers")
    ap.add_argument("--sequences", help="(with --check-keel) JSON list of token lists, or a file holding one "
                                        "(or an expected.json)")
    ap.add_argument("--expect", help="(with --check-keel) JSON file with 'logp' to compare against")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)   # bit-stable float32 reductions
    if a.check_keel:
        sys.exit(check_keel(a.check_keel, a.sequences, a.expect, a.tol))
    out = os.path.normpath(a.out)
    os.makedirs(out, exist_ok=True)
    sequences = fixed_sequences()
    total = 0
    for name, spec in FIXTURES.items():
        if a.only and name not in a.only:
            continue
        total += make_fixture(name, spec, out, sequences)
    print(f"total {total} bytes; versions {versions()}")


if __name__ == "__main__":
    main()
