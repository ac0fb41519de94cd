#!/usr/bin/env python3
"""Writes a diffusers-format CogVideoX-2B or -5B folder at the real sizes with random weights (bf16), for
measuring the pipeline where the real weights are not available (the GPU host reaches no network). Transformer,
VAE and scheduler use the model's configs (2B: 30 layers of 30 heads, sin-cos positions, DDIM, VAE scaling 1.15;
5B: 42 layers of 48 heads, RoPE, DPM, VAE scaling 0.7); the text encoder is T5 v1.1 XXL's encoder (24 layers,
d_model 4096), sharded with an index as the real checkpoint is; the tokenizer is the tiny model's (ids stay in
range).

    python3 tools/make_random_cogvideox.py OUT_DIR [--model 2b|5b] [--text-encoder-from DIR]

Needs a CUDA device (weights are drawn there). --text-encoder-from links DIR/text_encoder (the same random T5 for
both models: the 9.5 GB are written once).
"""
import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler,
                       CogVideoXTransformer3DModel)
from transformers import T5Config, T5EncoderModel

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "assets" / "tiny-cogvideox"

T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              feed_forward_proj="gated-gelu", dropout_rate=0.0)

# What differs between the published THUDM/CogVideoX-2b and -5b folders (the rest are diffusers' defaults).
MODELS = {
    "2b": dict(transformer=dict(num_attention_heads=30, num_layers=30), vae_scaling_factor=1.15258426,
               scheduler=CogVideoXDDIMScheduler, snr_shift_scale=3.0),
    "5b": dict(transformer=dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
               vae_scaling_factor=0.7, scheduler=CogVideoXDPMScheduler, snr_shift_scale=1.0),
}


def save(module, folder: Path) -> None:
    module.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")


def write_text_encoder(out: Path, share_from: Path | None) -> None:
    if share_from is None:
        with torch.device("cuda"):
            save(T5EncoderModel(T5Config(**T5_XXL)), out / "text_encoder")
        return
    link = out / "text_encoder"
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    os.symlink((share_from / "text_encoder").resolve(), link)


def write_scheduler(out: Path, model: dict) -> str:
    scheduler_class = model["scheduler"]
    config = dict(CogVideoXDDIMScheduler.load_config(TINY / "scheduler"))
    config["snr_shift_scale"] = model["snr_shift_scale"]
    scheduler_class.from_config(config).save_pretrained(out / "scheduler")
    return scheduler_class.__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", choices=sorted(MODELS), default="2b")
    parser.add_argument("--text-encoder-from", type=Path, help="a folder this script wrote, to link its T5 from")
    args = parser.parse_args()
    model, out = MODELS[args.model], args.out
    torch.manual_seed(0)
    with torch.device("cuda"):
        save(CogVideoXTransformer3DModel(**model["transformer"]), out / "transformer")
        save(AutoencoderKLCogVideoX(scaling_factor=model["vae_scaling_factor"]), out / "vae")
    write_text_encoder(out, args.text_encoder_from)
    shutil.copytree(TINY / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    scheduler_name = write_scheduler(out, model)
    index = {"_class_name": "CogVideoXPipeline", "scheduler": ["diffusers", scheduler_name]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    print(f"wrote {out} (CogVideoX-{args.model.upper()})")


if __name__ == "__main__":
    main()
