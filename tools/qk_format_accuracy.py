#!/usr/bin/env python3
"""What FP8 (E4M3) Q and K would cost in accuracy against INT8, emulated on the CPU with torch (no GPU needed).

  .venv/bin/python tools/qk_format_accuracy.py        (about a minute on 2 cores)

Same inputs as sage-accuracy (B=1, H=8, N=4096, bf16; Gaussian, and DiT-like channel outliers) and the same
reference (fp32 attention of the bf16 inputs); prints rel. L1 per variant. The emulation: K smoothed by its token
mean, Q and K quantized with one scale per block of rows (16 query rows, 8 keys: about the wgmma kernel's
per-thread groups) or per token, symmetric INT8 (amax / 127, round to nearest) or E4M3 (amax / 448); P·V either
exact or as the kernels' FP8 mode (P as E4M3 of 448·exp(s − max), V smoothed by its mean and scaled per channel
to E4M3). Its INT8 + FP8 P·V rows reproduce sage-accuracy's measured ones to within a few percent, which is
what makes the FP8 rows worth reading.
"""
import math

import torch

E4M3 = torch.float8_e4m3fn


def make_inputs(outliers, head_dim, heads=8, length=4096):
    q, k, v = (torch.randn(1, heads, length, head_dim) for _ in range(3))
    if outliers:
        k = k + torch.randn(1, heads, 1, head_dim) * 8
        q = q * (torch.randn(1, heads, 1, head_dim).abs() * 2) + torch.randn(1, heads, 1, head_dim)
        v = v * (torch.randn(1, heads, 1, head_dim).abs() * 2) + torch.randn(1, heads, 1, head_dim)
    return [t.bfloat16().float() for t in (q, k, v)]


def quantized(x, rows, fmt):
    """x [B, H, N, D] through `fmt` with one scale per `rows` consecutive tokens, back in float."""
    b, h, n, d = x.shape
    blocks = x.view(b, h, n // rows, rows, d)
    amax = blocks.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-30)
    if fmt == "int8":
        scale = amax / 127
        return (torch.round(blocks / scale).clamp(-127, 127) * scale).view_as(x)
    scale = amax / 448
    return ((blocks / scale).to(E4M3).float() * scale).view_as(x)


def sage_attention(q, k, v, fmt, q_rows, k_rows, fp8_pv, p_fp8=None):
    """p_fp8: FP8 P̃ = 448·p from y = log2(448·p) (tools/p_exponent_accuracy.py); then, as in the kernels' tensor-core
    sums, the rows are normalized by the sums of those P̃. Without it: E4M3 rounding, and the exact sums."""
    k = k - k.mean(dim=2, keepdim=True)  # smoothing K leaves the softmax as it is
    scores = quantized(q, q_rows, fmt) @ quantized(k, k_rows, fmt).transpose(-1, -2) / math.sqrt(q.shape[-1])
    if not fp8_pv:
        return torch.softmax(scores, dim=-1) @ v
    v_mean = v.mean(dim=2, keepdim=True)
    v_scale = (v - v_mean).abs().amax(dim=2, keepdim=True).clamp_min(1e-30) / 448
    v_fp8 = ((v - v_mean) / v_scale).to(E4M3).float() * v_scale
    if p_fp8 is not None:
        p = p_fp8((scores - scores.amax(-1, keepdim=True)) * math.log2(math.e) + math.log2(448))
        return (p @ v_fp8) / p.sum(-1, keepdim=True) + v_mean
    p = torch.exp(scores - scores.amax(-1, keepdim=True)) * 448
    return (p.to(E4M3).float() @ v_fp8) / p.sum(-1, keepdim=True) + v_mean


def main():
    torch.manual_seed(0)
    variants = [
        ("INT8 Q·K, FP8 P·V (the sm_90 default)", "int8", 16, 8, True),
        ("E4M3 Q·K, FP8 P·V", "fp8", 16, 8, True),
        ("E4M3 Q·K per token, FP8 P·V", "fp8", 1, 1, True),
        ("INT8 Q·K, exact P·V", "int8", 16, 8, False),
        ("E4M3 Q·K, exact P·V", "fp8", 16, 8, False),
    ]
    print("| inputs | D | variant | rel. L1 |\n|---|---|---|---|")
    for outliers in (False, True):
        for head_dim in (64, 128):
            q, k, v = make_inputs(outliers, head_dim)
            reference = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), -1) @ v
            for name, fmt, q_rows, k_rows, fp8_pv in variants:
                out = sage_attention(q, k, v, fmt, q_rows, k_rows, fp8_pv)
                rel_l1 = ((out - reference).abs().sum() / reference.abs().sum()).item()
                print(f"| {'outliers' if outliers else 'Gaussian'} | {head_dim} | {name} | {rel_l1:.4f} |")


if __name__ == "__main__":
    main()
