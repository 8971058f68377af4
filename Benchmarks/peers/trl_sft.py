#!/usr/bin/env python3
"""Peer harness: TRL's SFTTrainer against `keel sft` on the same demonstrations, from the same
initial weights, with the same stop rule, so both cold starts are measured in one run on one
machine (docs/performance.md, "Cold start: keel sft and TRL's SFTTrainer"). NOT run by CI.

Pinned versions (PyPI), as trl_grpo.py: torch 2.15.0, transformers 5.25.0, trl 1.16.0, tokenizers 0.23.3.

  trl_sft.py prepare --out START [--seed 1]
      START/  a freshly initialised Qwen3-MoE with Keel's `moe` preset shapes (transformers' own
              initialisation, torch.manual_seed(seed)), Keel's character table as tokenizer.json
              (trl_grpo.py's), and add.jsonl: every 2-digit addition (8,100 rows).
  trl_sft.py run --start START --seed S --out RESULT.json [--lr 3e-3] [--batch 64]
      SFTTrainer on the rows `keel sft --checkpoint START --task START/add.jsonl` trains on (the
      split hash's train side; completion = the answer, TRL appends </s>, loss on the completion
      only), greedy accuracy checked every 10 steps on the 200 validation-side rows keel uses (the
      smallest split hashes; greedy decoding of at most 8 tokens, exact-match rule), stopping once
      it is >= 25%. Reports steps, training seconds (checks excluded), check seconds, seconds
      per step and peak RSS, as JSON.
  Keel's side of the same measurement:
      keel sft --checkpoint START --task START/add.jsonl --seed S --out DIR --report keel-S.json

Settings, the same for both unless said: batch 64 demonstrations, AdamW (beta 0.9 / 0.999, eps
1e-8, no weight decay), constant lr (TRL's default schedule is linear decay: set to constant, as
Keel's), gradient clipping at norm 1, no MoE load-balancing loss (keel sft has none; TRL
would add the config's 0.001 otherwise), fp32, no gradient checkpointing, no packing, torch threads 2.
The learning rate is each framework's best of {1e-3, 3e-3, 1e-2} on seed 1 (docs/performance.md).
The order of the demonstrations differs (each framework's own seeded shuffle of the same rows).
"""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trl_grpo import greedy_accuracy, load_model, split_hash, split_side, write_addition_rows, write_keel_tokenizer  # noqa: E402


def keel_sft_split(rows, validation_count=200):
    """`keel sft`'s JSONL rule (JSONLDemonstrations): train side demonstrated, validation side's
    `validation_count` smallest split hashes stop the training, held-out side never used."""
    train = [r for r in rows if split_side(r["prompt"]) == "train"]
    val = sorted((split_hash(r["prompt"]), i) for i, r in enumerate(rows) if split_side(r["prompt"]) == "validation")
    chosen = sorted(i for _, i in val[:validation_count])
    return train, [rows[i] for i in chosen]


def prepare(out, seed):
    import torch
    from transformers import Qwen3MoeForCausalLM
    from make_hf_example import keel_moe_config
    os.makedirs(out, exist_ok=True)
    vocab = write_keel_tokenizer(out)
    write_addition_rows(out)
    torch.manual_seed(seed)
    Qwen3MoeForCausalLM(keel_moe_config(vocab)).save_pretrained(out)  # Keel's `moe` preset
    print(json.dumps({"start": out, "vocab": vocab, "seed": seed}))


def run(start, seed, out, lr, batch, target, check_every, max_steps, threads):
    import torch
    torch.set_num_threads(threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(l) for l in open(os.path.join(start, "add.jsonl"))]
    train_rows, validation = keel_sft_split(rows)
    tok = AutoTokenizer.from_pretrained(start)
    tok.padding_side = "left"          # generation; SFTTrainer's collator pads training batches itself
    model = load_model(start)
    record = {"seed": seed, "lr": lr, "batch": batch, "target": target, "check_every": check_every,
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
              "train_rows": len(train_rows), "validation_rows": len(validation), "checks": [], "step_seconds": []}

    class Clock(TrainerCallback):
        def __init__(self):
            self.train_seconds, self.check_seconds, self.t0, self.reached = 0.0, 0.0, None, False

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.time()

        def on_step_end(self, args, state, control, **kw):
            dt = time.time() - self.t0
            self.train_seconds += dt
            record["step_seconds"].append(dt)
            if state.global_step % check_every == 0 or state.global_step == max_steps:
                t = time.time()
                acc = greedy_accuracy(model, tok, validation)
                self.check_seconds += time.time() - t
                record["checks"].append({"step": state.global_step, "greedy": acc})
                if acc >= target:
                    self.reached = True
                    control.should_training_stop = True

    cfg = SFTConfig(output_dir=os.path.join(os.path.dirname(os.path.abspath(out)), f"trl-sft-seed-{seed}"), seed=seed,
                    learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=max_steps,
                    per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_grad_norm=1.0,
                    weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                    completion_only_loss=True, packing=False, max_length=None, router_aux_loss_coef=0.0,
                    bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, logging_steps=1000000,
                    save_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True)
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["answer"]} for r in train_rows])
    clock = Clock()
    t0 = time.time()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok, callbacks=[clock])
    trainer.train()
    steps = record["step_seconds"]
    record.update({"steps": len(steps), "reached": clock.reached, "validation_greedy": record["checks"][-1]["greedy"] if record["checks"] else None,
                   "train_seconds": clock.train_seconds, "check_seconds": clock.check_seconds,
                   "wall_seconds_with_setup": time.time() - t0,
                   "median_step_seconds": sorted(steps)[len(steps) // 2] if steps else None,
                   "mean_step_seconds": clock.train_seconds / len(steps) if steps else None,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    json.dump(record, open(out, "w"), indent=1)
    print(json.dumps({k: record.get(k) for k in ["seed", "lr", "steps", "reached", "validation_greedy", "train_seconds",
                                                 "check_seconds", "mean_step_seconds", "peak_rss_mb"]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run")
    r.add_argument("--start", required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", required=True)
    r.add_argument("--lr", type=float, default=3e-3)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--target", type=float, default=0.25)
    r.add_argument("--check-every", type=int, default=10)
    r.add_argument("--max-steps", type=int, default=900)
    r.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.mode == "prepare":
        prepare(a.out, a.seed)
    else:
        run(a.start, a.seed, a.out, a.lr, a.batch, a.target, a.check_every, a.max_steps, a.threads)


if __name__ == "__main__":
    sys.exit(main())
