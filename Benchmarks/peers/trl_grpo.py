#!/usr/bin/env python3
"""Peer harness: TRL's GRPOTrainer on Keel's task, from the same cold-start checkpoint, with the
same held-out problems and the same evaluation rule, so both are measured in one run on one
machine (docs/performance.md, "Keel and TRL from the same start"). NOT run by CI.

Pinned versions (PyPI): torch 2.15.0, transformers 5.25.0, trl 1.16.0, tokenizers 0.23.3.
  python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch==2.15.0 transformers==5.25.0 trl==1.16.0 tokenizers==0.23.3

  trl_grpo.py prepare --keel-checkpoint DIR --out START
      START/  the checkpoint (config.json, model.safetensors) plus a tokenizer.json that is Keel's
              character table exactly (pad 0, <s> 1, </s> 2, then Keel's 60 symbols; lower-cased;
              "<s> $A" template), so Keel (`--set model.checkpoint=START`) and transformers see
              the same ids; START/add.jsonl: every 2-digit addition (a, b in 10..99, 8,100 rows).
  trl_grpo.py run --start START --seed S --out RESULT.json [--lr 1e-4] [--max-steps 240]
      GRPO on the rows Keel trains on (its split hash: train and validation sides, and held-out
      rows beyond the 500 evaluated), evaluated every 10 steps on Keel's 500 held-out rows
      (the held-out side's smallest split hashes: Keel's JSONL rule) by greedy decoding of at
      most 8 tokens, correct = the exact-match reward (stripped text equal to the answer, or
      equal as integers). Stops once greedy accuracy is ≥ cold start + 25 points at two
      evaluations in a row. Reports steps and training seconds (evaluation excluded) to that
      target, seconds per step, final accuracy and peak RSS, as JSON.

Settings (tuned for TRL's best time on this task in an earlier session, not handicapped): fp32
(no bf16 on this CPU), no gradient checkpointing, 32 prompts x 8 generations per step
(per_device_train_batch_size 256, num_generations 8), one update per batch (num_iterations 1),
loss_type "dapo", scale_rewards "group", beta 0 (no KL), lr 1e-4 constant, Adam as TRL sets it,
max_completion_length 8, temperature 1, torch threads 2.
"""
import argparse
import json
import os
import resource
import shutil
import sys
import time

KEEL_SYMBOLS = list("0123456789+-*/=,.:;#<>()[] ?!'\"_|\n") + list("abcdefghijklmnopqrstuvwxyz")


# Keel's split hash, shared with the worked example's script
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from make_hf_example import split_hash, split_side  # noqa: E402


def keel_split(rows, eval_count=500):
    """Keel's JSONL rule (Sources/KeelTasks/Dataset.swift): held-out side = top 4 bits 0-1; of it,
    the eval_count rows with the smallest hashes are held out; every other row trains."""
    side = [split_side(r["prompt"]) == "eval" for r in rows]
    held = sorted((split_hash(r["prompt"]), i) for i, r in enumerate(rows) if side[i])
    chosen = set(i for _, i in held[:eval_count])
    return [r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen]


def correct(text, answer):
    t = text.strip()
    if t.endswith("."):
        t = t[:-1]
    if t == answer:
        return True
    try:
        return int(t) == int(answer)
    except ValueError:
        return False


def write_keel_tokenizer(out):
    """tokenizer.json (+ generation_config.json) equal to Keel's character table: pad 0, <s> 1,
    </s> 2, then Keel's 60 symbols; lower-cased; "<s> $A" template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, GenerationConfig
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for i, c in enumerate(KEEL_SYMBOLS):
        vocab[c] = i + 3
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated", invert=False)
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<pad>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>").save_pretrained(out)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(out)
    return len(vocab)


def write_addition_rows(out):
    """out/add.jsonl: every 2-digit addition (a, b in 10..99, 8,100 rows)."""
    with open(os.path.join(out, "add.jsonl"), "w") as f:
        for a in range(10, 100):
            for b in range(10, 100):
                f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n")


def prepare(keel_checkpoint, out):
    os.makedirs(out, exist_ok=True)
    for f in ["config.json", "model.safetensors"]:
        shutil.copy(os.path.join(keel_checkpoint, f), os.path.join(out, f))
    vocab = write_keel_tokenizer(out)
    write_addition_rows(out)
    print(json.dumps({"start": out, "vocab": vocab}))


def load_model(start):
    """fp32, eager attention and (transformers ≥ 5) eager experts: what runs on this CPU."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32, attn_implementation="eager",
                                                **({"experts_implementation": "eager"} if int(transformers.__version__.split(".")[0]) >= 5 else {}))


def greedy_accuracy(model, tok, rows, batch=250):
    """Greedy decoding of at most 8 tokens, correct = the exact-match reward."""
    import torch
    was = model.training
    model.eval()
    ok = 0
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            enc = tok([r["prompt"] for r in chunk], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=8, do_sample=False, eos_token_id=2, pad_token_id=0)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            ok += sum(correct(t, r["answer"]) for t, r in zip(texts, chunk))
    if was:
        model.train()
    return ok / len(rows)


def run(start, seed, out, lr, max_steps, threads):
    import torch
    torch.set_num_threads(threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(l) for l in open(os.path.join(start, "add.jsonl"))]
    train_rows, held = keel_split(rows)
    tok = AutoTokenizer.from_pretrained(start)
    tok.padding_side = "left"
    model = load_model(start)

    def evaluate():
        return greedy_accuracy(model, tok, held)

    def reward(completions, answer, **kw):
        return [1.0 if correct(c, a) else 0.0 for c, a in zip(completions, answer)]

    record = {"seed": seed, "lr": lr, "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
              "evals": [], "step_seconds": []}
    t_eval = time.time()
    cold = evaluate()
    record["evals"].append({"step": 0, "greedy": cold, "train_seconds": 0.0, "eval_seconds": time.time() - t_eval})

    class Clock(TrainerCallback):
        def __init__(self):
            self.train_seconds = 0.0
            self.t0 = None
            self.above = 0

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.time()

        def on_step_end(self, args, state, control, **kw):
            dt = time.time() - self.t0
            self.train_seconds += dt
            record["step_seconds"].append(dt)
            if state.global_step % 10 == 0:
                t = time.time()
                acc = evaluate()
                record["evals"].append({"step": state.global_step, "greedy": acc, "train_seconds": self.train_seconds, "eval_seconds": time.time() - t})
                self.above = self.above + 1 if acc >= cold + 0.25 else 0
                if self.above == 1:
                    record["target_step"], record["target_train_seconds"] = state.global_step, self.train_seconds
                if self.above == 0:
                    record.pop("target_step", None)
                    record.pop("target_train_seconds", None)
                if self.above >= 2:
                    control.should_training_stop = True

    cfg = GRPOConfig(output_dir=os.path.join(os.path.dirname(os.path.abspath(out)), f"trl-seed-{seed}"), seed=seed,
                     learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=max_steps,
                     per_device_train_batch_size=256, num_generations=8, max_completion_length=8, temperature=1.0,
                     num_iterations=1, beta=0.0, loss_type="dapo", scale_rewards="group", bf16=False, fp16=False,
                     gradient_checkpointing=False, use_cpu=True, logging_steps=1000000, save_strategy="no", report_to=[],
                     dataloader_num_workers=0, disable_tqdm=True)
    data = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in train_rows])
    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=data, processing_class=tok, callbacks=[clock])
    trainer.train()
    steps = record["step_seconds"]
    record.update({"cold_start_greedy": cold, "final_greedy": record["evals"][-1]["greedy"], "steps": len(steps),
                   "train_seconds": clock.train_seconds, "median_step_seconds": sorted(steps)[len(steps) // 2] if steps else None,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "target_held_twice": clock.above >= 2})
    json.dump(record, open(out, "w"), indent=1)
    print(json.dumps({k: record.get(k) for k in ["seed", "cold_start_greedy", "final_greedy", "target_step", "target_train_seconds",
                                                 "median_step_seconds", "peak_rss_mb", "steps"]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--keel-checkpoint", required=True)
    p.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--start", required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", required=True)
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--max-steps", type=int, default=240)
    r.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.mode == "prepare":
        prepare(a.keel_checkpoint, a.out)
    else:
        run(a.start, a.seed, a.out, a.lr, a.max_steps, a.threads)


if __name__ == "__main__":
    sys.exit(main())
