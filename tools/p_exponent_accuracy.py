#!/usr/bin/env python3
"""What P's exponential costs in accuracy in the FP8 P·V mode, emulated on the CPU with torch (no GPU needed):
the kernels' `p_exponent` choices and candidates for a cheaper exponential, before any is built.

  .venv/bin/python tools/p_exponent_accuracy.py          (a few minutes on 2 cores)
  .venv/bin/python tools/p_exponent_accuracy.py --check  (the schemes on known values: a unit test)

Inputs, reference, INT8 Q·K and FP8 V as tools/qk_format_accuracy.py (the sm_90 default's emulation); only P̃ =
448·p changes, computed from y = log2(448·p) by each scheme, and the rows are normalized by the sums of the P̃ used
(the kernels' tensor-core sums). Schemes:
  exact        E4M3 rounding of 2^y (`p_exponent: exact`, one MUFU.EX2 a score)
  linear       E4M3 bytes read off y, 8y + 56 − bias rounded: 2^f taken as 1 + f (`linear`)
  half-linear  linear for every other group of 8 keys (`half_linear`); quarter-linear: one group in four
  corrected    fp16's bits for 2^y with a linear mantissa (Schraudolph), times a quadratic in 1 + f fitted to
               2^f / (1 + f), rounded to E4M3: exact's accuracy without MUFU, but 2.75 instructions more a score
               than MUFU.EX2 (measured −10%: docs/PERFORMANCE.md, 2026-12-04)
  table-3/4/5  y rounded to 3, 4 or 5 bits of fraction, each fraction's nearest E4M3 mantissa from a table (what a
               byte permute or a few bit operations on packed codes would look up): the finer the code, the
               nearer exact (not built: docs/PERFORMANCE.md, 2026-12-04 from 18:40, counts its instructions)
"""
import argparse
import math

import torch

from qk_format_accuracy import E4M3, make_inputs, sage_attention

LINEAR_BIAS = 0.4586  # kernels/src/sm90/softmax.cuh, kLinearBias
# 2^f / (1 + f) ≈ k0 + k1 g + k2 g², g = 1 + f: least squares on [1, 2) (within 0.64%)
CORRECTION = (1.43455281, -0.66673908, 0.22575731)


def exact(y):
    return torch.exp2(y).to(E4M3).float()


def linear(y):
    byte = torch.round(8 * y + 56 - LINEAR_BIAS).clamp(0, 126)
    exponent, mantissa = torch.div(byte, 8, rounding_mode="floor"), torch.remainder(byte, 8)
    return torch.where(exponent == 0, mantissa * 2.0**-9, (1 + mantissa / 8) * torch.exp2(exponent - 7))


def corrected(y):
    bits = torch.round(1024 * (y + 15)).clamp(0, 0x7BFF).to(torch.int32)  # saturated at 0 as the kernel's FMA
    u = bits.to(torch.int16).view(torch.float16)
    g = ((bits & 0x03FF) | 0x3C00).to(torch.int16).view(torch.float16)
    k0, k1, k2 = CORRECTION
    c = (g * k2 + k1) * g + k0  # half arithmetic, as the kernel's HFMA2
    return (u * c).float().to(E4M3).float()


def table(fraction_bits):
    """E4M3 bytes from y's code with `fraction_bits` bits of fraction, whose fraction a table maps to the nearest
    E4M3 mantissa of its 2^fraction (8 may carry into the exponent)."""
    steps = 1 << fraction_bits
    mantissa = torch.tensor([round(8 * (2 ** (j / steps) - 1)) for j in range(steps)])

    def p_fp8(y):
        code = torch.round(steps * (y + 7)).clamp(min=0).to(torch.int64)  # y < -6: subnormal bytes; < -7: 0
        byte = torch.div(code, steps, rounding_mode="floor") * 8 + mantissa[code % steps]
        return byte.clamp(max=126).to(torch.uint8).view(E4M3).float()

    return p_fp8


def mixed(every, linear_groups):
    """linear for `linear_groups` of every `every` groups of 8 keys, exact for the rest."""

    def p_fp8(y):
        group = torch.arange(y.shape[-1]) // 8 % every
        return torch.where(group >= every - linear_groups, linear(y), exact(y))

    return p_fp8


def check():
    """The schemes on values whose bytes are known, and over a sweep of y, against exact rounding."""
    y = torch.tensor([0.0, 0.5, math.log2(448), -6.5, -7.5, -12.0])
    assert exact(y).tolist() == [1.0, 1.375, 448.0, 0.01171875, 0.005859375, 0.0], exact(y).tolist()
    # linear: 2^0.5 read as 1 + 0.5; 2^-6.5 as 4 · 2^-9; below 2^-7 nothing
    assert linear(y).tolist() == [1.0, 1.5, 448.0, 0.0078125, 0.0, 0.0], linear(y).tolist()
    sweep = torch.linspace(-9, math.log2(448), 200001)
    mismatch_linear = (linear(sweep) != exact(sweep)).float().mean().item()
    mismatch_corrected = (corrected(sweep) != exact(sweep)).float().mean().item()
    assert mismatch_corrected < 0.03 and mismatch_linear > 0.25, (mismatch_corrected, mismatch_linear)
    assert corrected(torch.tensor([-12.0, -30.0])).tolist() == [0.0, 0.0]
    # table: 2^0 and 2^0.5's bytes as exact rounding's; a finer code mismatches exact rounding less often
    assert table(4)(y[:2]).tolist() == [1.0, 1.375] and table(4)(torch.tensor([-30.0])).item() == 0.0
    mismatch_table = [(table(bits)(sweep) != exact(sweep)).float().mean().item() for bits in (3, 4, 5)]
    assert mismatch_table[0] > mismatch_table[1] > mismatch_table[2], mismatch_table
    print(f"ok: bytes unlike exact rounding's, linear {mismatch_linear:.3f}, corrected {mismatch_corrected:.3f}, "
          f"table-3/4/5 {' / '.join(f'{m:.3f}' for m in mismatch_table)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="the schemes on known values, then exit")
    if parser.parse_args().check:
        return check()
    torch.manual_seed(0)
    schemes = [
        ("exact", exact),
        ("quarter-linear", mixed(4, 1)),
        ("half-linear", mixed(2, 1)),
        ("linear", linear),
        ("corrected", corrected),
        ("table-3", table(3)),
        ("table-4", table(4)),
        ("table-5", table(5)),
    ]
    print("| inputs | D | P | rel. L1 |\n|---|---|---|---|")
    for outliers in (False, True):
        for head_dim in (64, 128):
            q, k, v = make_inputs(outliers, head_dim)
            reference = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), -1) @ v
            for name, p_fp8 in schemes:
                out = sage_attention(q, k, v, "int8", 16, 8, True, p_fp8)
                rel_l1 = ((out - reference).abs().sum() / reference.abs().sum()).item()
                print(f"| {'outliers' if outliers else 'Gaussian'} | {head_dim} | {name} | {rel_l1:.4f} |", flush=True)


if __name__ == "__main__":
    main()
