#!/usr/bin/env python3
"""Instructions per attention score in an attention kernel's main loop, by class, read from its SASS: the
static stand-in for speed on a GPU we cannot run (docs/PERFORMANCE.md, "RTX 4090 (sm_89): SASS per score").

  tools/sass_per_score.py KERNEL.cubin --function REGEX --scores N [--loop I] [--label NAME] [--verbose]
  tools/sass_per_score.py KERNEL.sass ...          SASS text from cuobjdump --dump-sass or nvdisasm
  tools/sass_per_score.py KERNEL.cubin --list      the kernels in the file
  tools/sass_per_score.py KERNEL.cubin --function REGEX --scores N --order   the path's opcodes in order

Method. The main loop is the innermost natural loop (a back edge goes to a block that dominates its source;
a barrier wait's out-of-line retry that branches back up into the body makes none) that holds tensor-core
instructions, the one with the most of them, or with --loop I the I-th in address order (the wgmma kernel
has two: uniform tiles, then edge tiles). One steady-state iteration is one path through it from its header
to its back edge: the path that issues the next tile's asynchronous copies (LDGSTS) wherever a branch guards
them, and otherwise the shortest one, since the longer branches of an attention loop are the rare ones (edge
tiles, masks, ΔS or bias, periodic flushes; the wgmma kernel's TMA refill, which one thread issues, is left
out too, as three warps of four run). --verbose prints the blocks left out, with their source lines when the
SASS has them (nvdisasm -g of a -lineinfo build), so the choice can be checked. Per score = thread
instructions / scores = warp instructions x 32 / (scores one warp computes per iteration: --scores, e.g. 32
query rows x 64 keys = 2048; 16 x 128 for the wgmma kernel). A cubin is disassembled with nvdisasm
(--nvdisasm, $NVDISASM, the one in the triton package of .venv, or PATH).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys

# Columns, in order: (name, test on the full opcode with modifiers).
CLASSES = [
    ("MMA", lambda op: re.match(r"(IMMA|HMMA|QMMA|DMMA|BMMA|[HIQ]GMMA)\b", op)),
    ("I2F/F2I", lambda op: re.match(r"(I2F|F2I|I2FP|F2IP|I2I|F2F|FRND)\b", op)),
    ("FFMA/FMUL", lambda op: re.match(r"(FFMA|FMUL)(32I)?\b", op)),
    ("FADD", lambda op: re.match(r"FADD(32I)?\b", op)),
    ("FMNMX", lambda op: re.match(r"FMNMX\b", op)),
    ("MUFU.EX2", lambda op: op.startswith("MUFU.EX2")),
    ("F2FP", lambda op: re.match(r"F2FP\b", op)),
    ("SHFL", lambda op: re.match(r"SHFL\b", op)),
    ("loads/stores", lambda op: re.match(r"(LD|ST)(S|SM|G|L|C|GSTS)?\b|ATOMS?\b|RED\b|LDGDEPBAR\b", op)),
]
TENSOR = CLASSES[0][1]


def classify(op):
    for name, test in CLASSES:
        if test(op):
            return name
    return "other"


class Instruction:
    def __init__(self, address, text, line):
        self.address, self.text, self.line = address, text, line
        body = re.sub(r"^@!?U?P[T0-9]+\s+", "", text)
        self.predicated = body != text
        # "@!PT" never executes (ptxas pads with such loads after cp.async): it issues, like a NOP.
        self.opcode = "NOP" if text.startswith("@!PT") else body.split()[0]
        self.target = None  # branch target: an address (cuobjdump) or a label (nvdisasm)
        target = re.search(r"`\((\.L_x_\d+)\)|\b(0x[0-9a-f]+)\s*$", body)
        if self.opcode.startswith("BRA") and target:
            self.target = target.group(1) or int(target.group(2), 16)


def parse(text):
    """{function name: ([Instruction], {label: address})} from cuobjdump or nvdisasm output."""
    functions, current, line = {}, None, None
    pending_labels = []
    for raw in text.splitlines():
        name = re.match(r"\s*Function : (\S+)", raw) or re.match(r"\s*\.section\s+\.text\.([^,\s]+)", raw)
        if name:
            current = functions.setdefault(name.group(1), ([], {}))
            line, pending_labels = None, []
            continue
        if current is None:
            continue
        source = re.search(r'File "([^"]+)", line (\d+)', raw)
        if source:
            line = f"{os.path.basename(source.group(1))}:{source.group(2)}"
            continue
        label = re.match(r"(\.L_x_\d+):", raw)
        if label:
            pending_labels.append(label.group(1))
            continue
        instruction = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+([^;]+);", raw)
        if instruction:
            inst = Instruction(int(instruction.group(1), 16), instruction.group(2).strip(), line)
            current[0].append(inst)
            for pending in pending_labels:
                current[1][pending] = inst.address
            pending_labels = []
    return functions


class Block:
    def __init__(self, instructions):
        self.instructions = instructions
        self.start = instructions[0].address
        self.successors = []

    def count(self, test):
        return sum(1 for i in self.instructions if test(i.opcode))


def blocks_of(instructions, labels):
    target_of = lambda inst: labels.get(inst.target, inst.target)
    leaders = {instructions[0].address}
    for i, inst in enumerate(instructions):
        if inst.target is not None:
            leaders.add(target_of(inst))
        if (inst.target is not None or inst.opcode.startswith(("EXIT", "RET"))) and i + 1 < len(instructions):
            leaders.add(instructions[i + 1].address)
    blocks, current = [], []
    for inst in instructions:
        if inst.address in leaders and current:
            blocks.append(Block(current))
            current = []
        current.append(inst)
    blocks.append(Block(current))
    by_start = {b.start: b for b in blocks}
    for index, block in enumerate(blocks):
        last = block.instructions[-1]
        falls_through = last.predicated or not (last.target is not None or last.opcode.startswith(("EXIT", "RET")))
        if last.target is not None and target_of(last) in by_start:
            block.successors.append(by_start[target_of(last)])
        if falls_through and index + 1 < len(blocks):
            block.successors.append(blocks[index + 1])
    return blocks


def dominators(blocks):
    """Each block reachable from the first -> the set of blocks that dominate it (itself included)."""
    predecessors = collections.defaultdict(list)
    for block in blocks:
        for successor in block.successors:
            predecessors[successor].append(block)
    reachable, stack = set(), [blocks[0]]
    while stack:
        block = stack.pop()
        if block not in reachable:
            reachable.add(block)
            stack.extend(block.successors)
    dom = {block: set(reachable) for block in reachable}
    dom[blocks[0]] = {blocks[0]}
    changed = True
    while changed:
        changed = False
        for block in blocks[1:]:
            if block not in reachable:
                continue
            incoming = [dom[p] for p in predecessors[block] if p in reachable]
            new = set.intersection(*incoming) | {block} if incoming else {block}
            if new != dom[block]:
                dom[block], changed = new, True
    return dom, predecessors


def tensor_loops(blocks):
    """(header, body blocks, latches) of each innermost natural loop holding tensor-core instructions, in address
    order. A back edge goes to a block that dominates its source: a branch back up the address space that is not
    one (a barrier wait's out-of-line retry returning into the loop) makes no loop."""
    dom, predecessors = dominators(blocks)
    loops = collections.defaultdict(set)  # header -> latches
    for block in dom:
        for successor in block.successors:
            if successor in dom[block]:
                loops[successor].add(block)
    found = []
    for header, latches in loops.items():
        body, stack = {header}, list(latches)
        while stack:
            block = stack.pop()
            if block not in body:
                body.add(block)
                stack.extend(predecessors[block])
        if any(b.count(TENSOR) for b in body):
            found.append((header, body, latches))
    innermost = [(header, body, latches) for header, body, latches in found
                 if not any(other is not header and other in body for other, _, _ in found)]
    if not innermost:
        sys.exit("sass_per_score: no loop with tensor-core instructions in this function")
    return sorted(innermost, key=lambda loop: loop[0].start)


def main_loop(blocks, index):
    """The loop --loop names, else the innermost one with the most tensor-core instructions (the first of equals)."""
    loops = tensor_loops(blocks)
    if index is not None:
        if not 0 <= index < len(loops):
            sys.exit(f"sass_per_score: --loop {index}, but the function has {len(loops)} tensor-core loops")
        return loops[index]
    return max(loops, key=lambda loop: (sum(b.count(TENSOR) for b in loop[1]), -loop[0].start))


def steady_state_path(header, body, latches):
    """The iteration that takes every block issuing async copies it can and is otherwise shortest: the best
    path over the loop body without its back edges (a DAG in address order)."""
    copies = lambda b: 1 if b.count(lambda op: op.startswith("LDGSTS")) else 0
    score = lambda b: (copies(b), -len(b.instructions))
    best = {header: (score(header), [header])}
    for block in sorted(body, key=lambda b: b.start):
        if block not in best:
            continue
        (copied, shortness), path = best[block]
        for successor in block.successors:
            if successor in body and successor.start > block.start:
                gain = score(successor)
                candidate = ((copied + gain[0], shortness + gain[1]), path + [successor])
                if successor not in best or candidate[0] > best[successor][0]:
                    best[successor] = candidate
    ends = [best[latch] for latch in latches if latch in best]
    if not ends:
        sys.exit("sass_per_score: no forward path from the loop header to its back edge")
    return max(ends, key=lambda end: end[0])[1]


def source_lines(blocks):
    lines = sorted({i.line for b in blocks for i in b.instructions if i.line},
                   key=lambda l: (l.split(":")[0], int(l.split(":")[1])))
    return ", ".join(lines) if lines else "no line info"


def default_nvdisasm():
    if os.environ.get("NVDISASM"):
        return os.environ["NVDISASM"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = glob.glob(os.path.join(root, ".venv/lib/python3*/site-packages/triton/backends/nvidia/bin/nvdisasm"))
    return found[0] if found else shutil.which("nvdisasm")


def disassemble(path, nvdisasm):
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return open(path, encoding="utf-8", errors="replace").read()
    if not nvdisasm:
        sys.exit("sass_per_score: no nvdisasm (give --nvdisasm or $NVDISASM)")
    result = subprocess.run([nvdisasm, "-c", "-g", path], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sass_per_score: {nvdisasm} failed: {result.stderr.strip()}")
    return result.stdout


def demangle(names):
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return dict(zip(names, names))
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else dict(zip(names, names))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a cubin, or SASS text from cuobjdump --dump-sass / nvdisasm")
    parser.add_argument("--function", help="regular expression matching one kernel (demangled or mangled name)")
    parser.add_argument("--scores", type=int, help="scores one warp computes per loop iteration (rows x keys)")
    parser.add_argument("--loop", type=int, help="which innermost tensor-core loop, in address order (default: "
                        "the one with the most tensor-core instructions)")
    parser.add_argument("--label", help="the row's name in the table (default: the kernel's name)")
    parser.add_argument("--list", action="store_true", help="list the kernels and exit")
    parser.add_argument("--header", action="store_true", help="print the table header first")
    parser.add_argument("--verbose", action="store_true", help="opcodes per class, blocks left out of the path")
    parser.add_argument("--order", action="store_true", help="print the path's opcodes in issue order, one a line, "
                        "instead of the table: diff two builds' to see ptxas reorder a loop whose counts are the same")
    parser.add_argument("--nvdisasm", default=default_nvdisasm())
    args = parser.parse_args()

    functions = parse(disassemble(args.input, args.nvdisasm))
    names = demangle(list(functions))
    if args.list:
        for mangled in functions:
            print(names[mangled])
        return
    if not args.function or not args.scores:
        parser.error("--function and --scores are needed (or --list)")
    matches = [m for m in functions if re.search(args.function, names[m]) or re.search(args.function, m)]
    if len(matches) != 1:
        sys.exit(f"sass_per_score: --function matches {len(matches)} kernels:\n  " +
                 "\n  ".join(names[m] for m in matches))
    instructions, labels = functions[matches[0]]
    header, body, latches = main_loop(blocks_of(instructions, labels), args.loop)
    path = steady_state_path(header, body, latches)
    ops = [i.opcode for b in path for i in b.instructions]
    if args.order:
        print("\n".join(ops))
        return
    counts = collections.Counter(classify(op) for op in ops)
    columns = [name for name, _ in CLASSES] + ["other"]
    per_score = lambda n: n * 32 / args.scores
    if args.header:
        print("| kernel | scores/iter | warp instr/iter | per score | " + " | ".join(columns) + " |")
        print("|---" * (4 + len(columns)) + "|")
    print(f"| {args.label or names[matches[0]]} | {args.scores} | {len(ops)} | {per_score(len(ops)):.2f} | " +
          " | ".join(f"{per_score(counts[c]):.2f}" for c in columns) + " |")
    if args.verbose:
        for column in columns:
            opcodes = collections.Counter(op for op in ops if classify(op) == column)
            print(f"  {column}: " + ", ".join(f"{op} {n}" for op, n in opcodes.most_common()))
        left_out = [b for b in body if b not in path]
        print(f"  path: {len(path)} of {len(body)} blocks; left out {sum(len(b.instructions) for b in left_out)} "
              f"instructions in {len(left_out)} blocks, from {source_lines(left_out)}")


if __name__ == "__main__":
    main()
