"""Writes the built-in tiny CogVideoX model: a complete diffusers-format folder (model_index.json, tokenizer/,
text_encoder/, transformer/, vae/, scheduler/) with random weights and tiny dimensions, so the whole pipeline
runs in seconds on a CPU. The README's main command and the tests use it; the pipeline parity fixture
(the frames diffusers' CogVideoXPipeline makes from it with a fixed seed) is written beside it.

    .venv/bin/python scripts/make_tiny_model.py            # -> assets/tiny-cogvideox/, tests/fixtures/pipeline/

Deterministic: the same bytes on every run with the pinned test tools (scripts/setup.sh).
"""
import io
import json
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                       CogVideoXTransformer3DModel)
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel, T5Tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets" / "tiny-cogvideox"
FIXTURE = ROOT / "tests" / "fixtures" / "pipeline"

TEXT_LENGTH = 226  # CogVideoX's; kept so the pipeline runs with its real defaults
CORPUS = [
    "a panda playing a guitar in a bamboo forest", "a red car driving along the coast at sunset",
    "an astronaut riding a horse on the moon", "waves crash on black rocks under a stormy sky",
    "a cat sleeps on a sunny windowsill while snow falls outside", "time-lapse of clouds over a mountain lake",
    "a chef slices vegetables in a busy kitchen", "children fly colourful kites on a windy beach",
]


def perturb(module: torch.nn.Module, std: float) -> None:
    """Random init leaves norms at 1/0 and many projections at zero: spread every weight a little."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


def tokenizer() -> T5Tokenizer:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4), model_writer=model, vocab_size=64, model_type="unigram", pad_id=0,
        eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1)
    folder = MODEL / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    return T5Tokenizer(vocab_file=str(folder / "spiece.model"), extra_ids=0, legacy=True,
                       model_max_length=TEXT_LENGTH)


def main() -> None:
    torch.manual_seed(0)
    tok = tokenizer()
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
        dropout_rate=0.0)).eval()
    perturb(text_encoder, 0.3)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 16, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=4, sample_height=64, sample_width=96, scaling_factor=0.7).eval()
    perturb(vae, 0.05)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=32,
        text_embed_dim=32, num_layers=2, sample_width=12, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=TEXT_LENGTH, norm_eps=1e-5).eval()
    perturb(transformer, 0.05)
    scheduler = CogVideoXDDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction",
        rescale_betas_zero_snr=True, timestep_spacing="trailing", snr_shift_scale=3.0)
    pipe = CogVideoXPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    pipe.save_pretrained(MODEL, safe_serialization=True)

    # What diffusers makes of it: the pipeline parity fixture.
    request = {"prompt": "a panda playing a guitar", "negative_prompt": "", "num_frames": 9, "height": 64,
               "width": 96, "num_inference_steps": 3, "guidance_scale": 6.0, "seed": 42}
    with torch.no_grad():
        frames = pipe(prompt=request["prompt"], negative_prompt=request["negative_prompt"],
                      num_frames=request["num_frames"], height=request["height"], width=request["width"],
                      num_inference_steps=request["num_inference_steps"], guidance_scale=request["guidance_scale"],
                      generator=torch.Generator("cpu").manual_seed(request["seed"]), output_type="np").frames[0]
    FIXTURE.mkdir(parents=True, exist_ok=True)
    rgb = torch.from_numpy(np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8))  # [T, H, W, 3]
    save_file({"frames": rgb.contiguous()}, FIXTURE / "frames.safetensors")
    (FIXTURE / "request.json").write_text(json.dumps(request, indent=1) + "\n")
    print("frames", tuple(rgb.shape), "mean", float(rgb.float().mean()))


if __name__ == "__main__":
    main()
