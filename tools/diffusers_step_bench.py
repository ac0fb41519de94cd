#!/usr/bin/env python3
"""The PyTorch side of sagevid-bench: one denoising step of diffusers' CogVideoXTransformer3DModel at the real
2B and 5B configs (random weights), 49x480x720, CFG batch 2, bf16, with PyTorch's FlashAttention-2 and cuDNN
attention forced through sdpa_kernel, so the C++ step can be compared kernel for kernel. Same table columns
as sagevid-bench (no attention-share column: that one is measured in C++).

  PYTHONPATH=<diffusers wheel unpacked> python3 tools/diffusers_step_bench.py
"""
import statistics
import types

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
from torch.nn.attention import SDPBackend, sdpa_kernel

MODELS = {
    "CogVideoX-2B": dict(num_attention_heads=30, num_layers=30),
    "CogVideoX-5B": dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
}
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
BATCH, FRAMES, HEIGHT, WIDTH = 2, 13, 60, 90  # latent sizes of 49 x 480 x 720


def median_ms(fn, warmup=2, runs=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def rotary_tables(model):
    """The RoPE tables the pipeline passes to the model (None for sin-cos models)."""
    if not model.config.use_rotary_positional_embeddings:
        return None
    fake_pipeline = types.SimpleNamespace(transformer=model, vae_scale_factor_spatial=8)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(fake_pipeline, HEIGHT * 8, WIDTH * 8, FRAMES, "cuda")


def main():
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}; diffusers CogVideoXTransformer3DModel, one step, 49x480x720, "
          "CFG batch 2, bf16, random weights; median of 5 steps after 2 warm-ups\n")
    print("| model | backend | step ms | vs flash | peak GiB |")
    print("|---|---|---|---|---|")
    for name, config in MODELS.items():
        with torch.device("cuda"):
            model = CogVideoXTransformer3DModel(**config).to(torch.bfloat16).eval()
        c = model.config
        latents = torch.randn(BATCH, FRAMES, c.in_channels, HEIGHT, WIDTH, device="cuda", dtype=torch.bfloat16)
        text = torch.randn(BATCH, c.max_text_seq_length, c.text_embed_dim, device="cuda", dtype=torch.bfloat16)
        timestep = torch.full((BATCH,), 999, device="cuda", dtype=torch.long)
        rope = rotary_tables(model)
        flash_ms = None
        for backend, kernel in BACKENDS.items():
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode(), sdpa_kernel([kernel]):
                ms = median_ms(lambda: model(hidden_states=latents, encoder_hidden_states=text, timestep=timestep,
                                             image_rotary_emb=rope, return_dict=False))
            flash_ms = flash_ms or ms
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"| {name} | {backend} | {ms:.1f} | {flash_ms / ms:.2f}x | {peak:.1f} |", flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
