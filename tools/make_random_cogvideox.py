#!/usr/bin/env python3
"""Writes a diffusers-format CogVideoX-2B folder at the real sizes with random weights (bf16), for measuring
the pipeline where the real weights are not available (the GPU host reaches no network). Transformer, VAE and
scheduler use CogVideoX-2B's configs; the text encoder is T5 v1.1 XXL's encoder (24 layers, d_model 4096),
sharded with an index as the real checkpoint is; the tokenizer is the tiny model's (ids stay in range).

    python3 tools/make_random_cogvideox.py OUT_DIR      # needs a CUDA device (weights are drawn there)
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "assets" / "tiny-cogvideox"

T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              feed_forward_proj="gated-gelu", dropout_rate=0.0)


def save(module, folder: Path) -> None:
    module.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    with torch.device("cuda"):
        save(CogVideoXTransformer3DModel(num_attention_heads=30, num_layers=30), out / "transformer")
        save(AutoencoderKLCogVideoX(), out / "vae")
        save(T5EncoderModel(T5Config(**T5_XXL)), out / "text_encoder")
    shutil.copytree(TINY / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    CogVideoXDDIMScheduler.from_pretrained(TINY / "scheduler").save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXPipeline"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
