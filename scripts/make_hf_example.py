#!/usr/bin/env python3
"""The worked example of docs/hf.md: "my model, my tokenizer, my data" with Hugging Face parts.

NOT run by CI (it needs torch + transformers + tokenizers from PyPI). Two modes:

  make_hf_example.py make OUT
      OUT/model      a tiny random Qwen3-MoE made by transformers (Keel's `moe` preset shapes:
                     hidden 128, 4 layers, 4 heads, 8 experts x 256 top-2, 128 positions), saved
                     with save_pretrained, and a WordLevel tokenizer.json (one token per
                     character, a "<s> $A" template, eos "</s>") saved with
                     PreTrainedTokenizerFast.save_pretrained. Its ids differ from Keel's
                     character table (digits are 8..17 here, 3..12 there; "</s>" is 2 in both).
      OUT/add.jsonl  every 2-digit addition "a+b=" -> "a+b" (a, b in 10..99): the format of Keel's
                     built-in `addition` task, 8,100 rows; Keel's split hash holds rows out.
      OUT/score.json 40 prompt+answer strings of the held-out side for the `check` mode.

  make_hf_example.py check CKPT KEEL_SCORE_JSON [--tol 1e-4]
      Loads a checkpoint Keel wrote (CKPT) with AutoModelForCausalLM.from_pretrained and its
      tokenizer with AutoTokenizer.from_pretrained, and compares with the output of
      `keel score --checkpoint CKPT --text OUT/score.json --out KEEL_SCORE_JSON`:
        - the token ids of every string (AutoTokenizer vs Keel's tokenizer.json reader): identical,
        - log p(token | prefix) at every position: max |difference| <= tol,
        - greedy continuations of the prompts (transformers' generate vs Keel's sampler at fp32),
          reported as the share that agree (near-ties may differ; not a pass/fail criterion).
      Exit 1 when the ids differ or a log-prob is off by more than tol.

Setup (CPU is enough):
  python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch transformers tokenizers safetensors
"""
import argparse
import json
import os
import platform
import sys

import torch
import transformers
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

SYMBOLS = ["<pad>", "<s>", "</s>", "[UNK]", "+", "-", "=", "#"] + list("0123456789")


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def split_hash(prompt):
    """Keel's split hash (TaskSplit.splitHash): SplitMix64's finaliser over FNV-1a of the UTF-8
    bytes, xor a constant."""
    h = 0xCBF29CE484222325
    for b in prompt.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    z = h ^ 0x6B65656C73706C74
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def split_side(prompt):
    """Keel's split (TaskSplit.split(of:)): the split hash's top four bits: 0-1 held out (2/16),
    2 validation (1/16), else train."""
    top = split_hash(prompt) >> 60
    return "eval" if top <= 1 else ("validation" if top == 2 else "train")


def keel_moe_config(vocab_size):
    """Keel's `moe` preset (ModelPreset.swift) as transformers' Qwen3MoeConfig, for this vocabulary."""
    common = dict(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, head_dim=32, intermediate_size=512, moe_intermediate_size=256,
                  num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
                  mlp_only_layers=[], max_position_embeddings=128, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, use_sliding_window=False, tie_word_embeddings=False,
                  router_aux_loss_coef=0.001, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if int(transformers.__version__.split(".")[0]) >= 5:
        common["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0}
    else:
        common["rope_theta"] = 1_000_000.0
    return Qwen3MoeConfig(**common)


def make(out):
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    vocab = {s: i for i, s in enumerate(SYMBOLS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated", invert=False)
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<pad>", "<s>", "</s>", "[UNK]"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="[UNK]")
    fast.save_pretrained(model_dir)

    torch.manual_seed(1)
    model = Qwen3MoeForCausalLM(keel_moe_config(len(SYMBOLS)))   # transformers' own initialisation
    model.save_pretrained(model_dir)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(model_dir)

    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10, 100) for b in range(10, 100)]
    with open(os.path.join(out, "add.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    held = [r for r in rows if split_side(r["prompt"]) == "eval"][:40]
    with open(os.path.join(out, "score.json"), "w") as f:
        json.dump([r["prompt"] + r["answer"] + "</s>" for r in held], f)
    sides = {s: sum(1 for r in rows if split_side(r["prompt"]) == s) for s in ("train", "validation", "eval")}
    print(json.dumps({"model": model_dir, "parameters": sum(p.numel() for p in model.parameters()),
                      "vocab": len(SYMBOLS), "rows": len(rows), "split": sides, "versions": versions()}, indent=1))


@torch.no_grad()
def check(ckpt, keel_json, tol):
    keel = json.load(open(keel_json))["results"]
    tok = AutoTokenizer.from_pretrained(ckpt)
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["experts_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(ckpt, **kw)
    model.eval()
    status, id_mismatch, worst, agree = 0, [], 0.0, 0
    for r in keel:
        ids = tok(r["text"])["input_ids"]
        if ids != r["tokens"]:
            id_mismatch.append({"text": r["text"], "autotokenizer": ids, "keel": r["tokens"]})
            continue
        x = torch.tensor([ids])
        logits = model(x).logits[0].double()
        logp = torch.log_softmax(logits, -1)[:-1].gather(1, x[0, 1:, None])[:, 0].tolist()
        worst = max([worst] + [abs(a - b) for a, b in zip(logp, r["train"]["logp"])])
        # greedy continuation of the prompt (up to and including "=") by transformers
        prompt = r["text"].split("=")[0] + "="
        p_ids = tok(prompt, return_tensors="pt")["input_ids"]
        gen = model.generate(p_ids, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        r["hf_greedy"] = tok.decode(gen[0, p_ids.shape[1]:], skip_special_tokens=True)
        agree += r["hf_greedy"] == r["text"][len(prompt):].replace("</s>", "")
    if id_mismatch or worst > tol:
        status = 1
    report = {"checkpoint": ckpt, "strings": len(keel), "id_mismatches": id_mismatch,
              "max_abs_logp_diff": worst, "tol": tol,
              "transformers_greedy_correct": agree, "versions": versions(),
              "examples": [{"text": r["text"], "tokens": r["tokens"], "hf_greedy": r.get("hf_greedy")} for r in keel[:5]]}
    print(json.dumps(report, indent=1))
    print(("OK" if status == 0 else "FAILED") + f": {len(keel)} strings, {len(id_mismatch)} with different ids, "
          f"max |Δ logp| {worst:.3g} (tol {tol}); transformers' greedy answer correct on {agree}/{len(keel)}",
          file=sys.stderr)
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    c = sub.add_parser("check")
    c.add_argument("ckpt")
    c.add_argument("keel_json")
    c.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.mode == "make":
        make(a.out)
        return 0
    return check(a.ckpt, a.keel_json, a.tol)


if __name__ == "__main__":
    sys.exit(main())
