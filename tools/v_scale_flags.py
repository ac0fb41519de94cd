#!/usr/bin/env python3
"""How often V's sampled FP8 scale is redone on a model: sagevid's preprocessing takes V's per-channel FP8 scale from
kVScaleMargin times the absmax of every kVScaleStride-th key (kernels/include/sagevid/kernels/sage2_layout.h) and
quantizes a head a second time, with its exact absmax, where a value lies past that bound. Each redone head costs a
read and a write of its V more, so the share of heads redone on real weights says whether the margin fits them
(docs/sm90-attention.md). This runs a CogVideoX text-to-video pipeline in diffusers with a hook on every attention
layer's V projection (joint attention: V is the text and video tokens' together, as the kernels see it) and counts.

  tools/v_scale_flags.py MODEL_DIR [--prompt TEXT] [--steps N] [--frames F --height H --width W] [--device D]
  tools/v_scale_flags.py --check       the rule against the header's constants, planted outliers and a tiny
                                       random transformer's hooks (a unit test)

The share grows with the keys a head holds (more values past a fixed sample), so run at the model's own sizes.
"""
import argparse
import re
import sys
from pathlib import Path

import torch

LAYOUT_HEADER = Path(__file__).resolve().parent.parent / "kernels/include/sagevid/kernels/sage2_layout.h"
V_SCALE_STRIDE = 8  # kVScaleStride (= kKeyMeanStride)
V_SCALE_MARGIN = 16.0  # kVScaleMargin
SKIPPED = 77  # ctest's SKIP_RETURN_CODE for this test


def flagged_heads(v):
    """[B, H, N, D] -> [B, H] bools: the heads whose sampled scale the preprocessing redoes (a value past the bound;
    one at the bound still fits)."""
    magnitude = v.detach().abs().float()
    bound = magnitude[:, :, ::V_SCALE_STRIDE].amax(dim=2) * V_SCALE_MARGIN
    return (magnitude.amax(dim=2) > bound).any(dim=-1)


class FlagCounter:
    """Counts, per transformer block, the heads of its attention calls and those flagged."""

    def __init__(self, transformer):
        self.heads = [0] * len(transformer.transformer_blocks)
        self.flagged = [0] * len(transformer.transformer_blocks)
        for index, block in enumerate(transformer.transformer_blocks):
            block.attn1.to_v.register_forward_hook(self._hook(index, block.attn1.heads))

    def _hook(self, index, heads):
        def count(_module, _inputs, output):  # [B, N, heads * D] -> [B, heads, N, D], as diffusers' processor
            flagged = flagged_heads(output.unflatten(-1, (heads, -1)).transpose(1, 2))
            self.heads[index] += flagged.numel()
            self.flagged[index] += int(flagged.sum())

        return count

    def report(self):
        print("| block | heads | flagged | share |\n|---|---|---|---|")
        for index, (heads, flagged) in enumerate(zip(self.heads, self.flagged)):
            print(f"| {index} | {heads} | {flagged} | {100 * flagged / max(heads, 1):.1f}% |")
        total, flagged = sum(self.heads), sum(self.flagged)
        print(f"| all | {total} | {flagged} | {100 * flagged / max(total, 1):.1f}% |")


def run_model(args):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.bfloat16).to(args.device)
    counter = FlagCounter(pipe.transformer)
    sizes = {k: v for k, v in dict(num_frames=args.frames, height=args.height, width=args.width).items() if v}
    with torch.no_grad():
        pipe(prompt=args.prompt, num_inference_steps=args.steps, output_type="latent", **sizes)
    print(f"{args.model}: V's sampled FP8 scale (every {V_SCALE_STRIDE}th key's absmax times {V_SCALE_MARGIN:g}), "
          f"{args.steps} steps\n")
    counter.report()


def check():
    header = LAYOUT_HEADER.read_text()
    stride = int(re.search(r"kKeyMeanStride = (\d+);", header).group(1))
    margin = float(re.search(r"kVScaleMargin = ([\d.]+)f;", header).group(1))
    assert "kVScaleStride = kKeyMeanStride;" in header and (stride, margin) == (V_SCALE_STRIDE, V_SCALE_MARGIN), \
        (stride, margin)

    generator = torch.Generator().manual_seed(0)
    v = torch.randn(2, 4, 4096, 64, generator=generator)
    assert not flagged_heads(v).any(), "Gaussian V: no head past sixteen times its sample's absmax"
    bound = v[1, 2, ::V_SCALE_STRIDE, 5].abs().max() * V_SCALE_MARGIN
    v[1, 2, 3, 5] = bound  # at an unsampled key, at the bound: still fits
    assert not flagged_heads(v).any()
    v[1, 2, 3, 5] = -bound * 1.25
    want = torch.zeros(2, 4, dtype=torch.bool)
    want[1, 2] = True
    assert torch.equal(flagged_heads(v), want), flagged_heads(v)

    # The hooks on a tiny random transformer: every block counted once a forward, by head, a planted outlier in
    # block 1's V (token 5, head 1) flagged, and the counts those of V as the blocks computed it. The GPU host's
    # python has no diffusers (scripts/setup.sh puts it in .venv): there the test reports itself skipped.
    try:
        from diffusers import CogVideoXTransformer3DModel
    except ImportError:
        print("skipped: no diffusers in this python (scripts/setup.sh installs it in .venv); the rule itself passed")
        sys.exit(SKIPPED)

    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, time_embed_dim=24,
                                        text_embed_dim=40, max_text_seq_length=8, num_layers=2, in_channels=4,
                                        out_channels=4, sample_height=8, sample_width=12, sample_frames=13,
                                        use_rotary_positional_embeddings=False).eval()
    seen = []

    def plant(module, _inputs, output):
        if module is model.transformer_blocks[1].attn1.to_v:
            output = output.clone()
            output[:, 5, 16 + 3] = 1e4  # head 1, channel 3
        seen.append(output.unflatten(-1, (2, -1)).transpose(1, 2))
        return output

    for block in model.transformer_blocks:  # registered first: the counter sees what it returns
        block.attn1.to_v.register_forward_hook(plant)
    counter = FlagCounter(model)
    latents, text = torch.randn(2, 3, 4, 6, 4), torch.randn(2, 8, 40)
    with torch.no_grad():
        model(latents, text, torch.tensor([999, 421]), return_dict=False)
    assert counter.heads == [4, 4], counter.heads
    assert counter.flagged == [int(flagged_heads(v).sum()) for v in seen], (counter.flagged, seen)
    assert flagged_heads(seen[1])[:, 1].all(), "the planted outlier's head"
    print(f"ok: the rule at stride {V_SCALE_STRIDE} and margin {V_SCALE_MARGIN:g}, and the hooks "
          f"({counter.flagged} of {counter.heads} heads flagged on the tiny model)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a CogVideoX text-to-video folder in the diffusers layout")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--prompt", default="A panda playing a guitar in a bamboo forest, cinematic light")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.check:
        check()
    elif args.model:
        run_model(args)
    else:
        parser.error("a model folder, or --check")


if __name__ == "__main__":
    main()
