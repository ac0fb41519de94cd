#!/usr/bin/env python3
"""sagevid_client.py: the Python client of the sagevid server. `generate` makes one video and writes it to a
file as it streams in, with progress on stderr and the server's timings at the end (like `sagevid-client
generate`).

The gRPC stubs are generated from this checkout's proto/ with grpcio-tools on first use, into a cache folder
keyed by the proto's content ($SAGEVID_CLIENT_CACHE, default ~/.cache/sagevid-client), so they always match
the API next to them. Needs grpcio and grpcio-tools (scripts/setup.sh puts them in .venv/).
"""
import argparse
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
PROTO_FILE = "sagevid/v1/sagevid.proto"
# Command-line names of the OutputFormat values, as sagevid-client spells them.
OUTPUT_FORMATS = {
    "mp4": "OUTPUT_FORMAT_MP4_H264",
    "mp4-lossless": "OUTPUT_FORMAT_MP4_H264_LOSSLESS",
    "rgb": "OUTPUT_FORMAT_RGB_FRAMES",
}
PHASES = {1: "text-encode", 2: "denoise", 3: "decode", 4: "encode"}


class ClientError(Exception):
    """A failed run: printed as one line, exit status 1."""


def stubs_dir():
    import grpc_tools

    key = hashlib.sha256((PROTO_ROOT / PROTO_FILE).read_bytes())
    key.update(grpc_tools.__file__.encode())  # a different grpcio-tools install regenerates
    base = Path(os.environ.get("SAGEVID_CLIENT_CACHE") or Path.home() / ".cache" / "sagevid-client")
    return base / key.hexdigest()[:16]


def generate_stubs(target):
    """Runs protoc from grpcio-tools into a scratch folder, then moves it into place in one step, so a
    concurrent or interrupted run never sees half the files."""
    from grpc_tools import protoc

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".generating-"))
    try:
        status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--python_out={scratch}", f"--grpc_python_out={scratch}",
                              str(PROTO_ROOT / PROTO_FILE)])
        if status != 0:
            raise ClientError(f"protoc failed on {PROTO_ROOT / PROTO_FILE} (exit {status})")
        try:
            scratch.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_stubs():
    """Returns (sagevid_pb2, sagevid_pb2_grpc), generating them first if the cache lacks them."""
    target = stubs_dir()
    if not (target / "sagevid" / "v1" / "sagevid_pb2_grpc.py").exists():
        generate_stubs(target)
    sys.path.insert(0, str(target))
    return (importlib.import_module("sagevid.v1.sagevid_pb2"), importlib.import_module("sagevid.v1.sagevid_pb2_grpc"))


class ChunkWriter:
    """Writes chunks to OUTPUT.part, checking each starts where the last ended; renamed to OUTPUT when done."""

    def __init__(self, output):
        self.output = Path(output)
        self.partial = Path(str(output) + ".part")
        self.file = open(self.partial, "wb")
        self.bytes_written = 0
        self.saw_last = False

    def write(self, offset, data, last):
        if self.saw_last:
            raise ClientError(f"video chunk at offset {offset} after the last one")
        if offset != self.bytes_written:
            raise ClientError(f"video chunk at offset {offset}, expected {self.bytes_written} "
                              "(a chunk was lost or repeated)")
        self.file.write(data)
        self.bytes_written += len(data)
        self.saw_last = last

    def finish(self):
        if not self.saw_last:
            raise ClientError(f"the stream ended before the last video chunk ({self.bytes_written} bytes received)")
        self.file.close()
        os.replace(self.partial, self.output)

    def abandon(self):
        self.file.close()
        self.partial.unlink(missing_ok=True)


def format_duration(seconds):
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole < 3600 else f"{whole // 3600}h{whole // 60 % 60:02d}m"


class Progress:
    """Phase, bar, step i/n, elapsed and the running phase's ETA on stderr; redrawn in place on a terminal,
    one line per phase otherwise."""

    def __init__(self, out, interactive, enabled):
        self.out, self.interactive, self.enabled = out, interactive, enabled
        self.phase, self.first_step, self.first_elapsed, self.line_open = None, 0, 0.0, False

    def message(self, text):
        if self.enabled:
            self.close_line()
            print(text, file=self.out, flush=True)

    def update(self, phase, step, total, elapsed):
        if not self.enabled:
            return
        new_phase = phase != self.phase
        if new_phase:
            self.phase, self.first_step, self.first_elapsed = phase, step, elapsed
        done = step - self.first_step
        eta = format_duration(max(0.0, (elapsed - self.first_elapsed) / done * (total - step))) if done > 0 else "--"
        filled = int(24 * min(max(step / total, 0.0), 1.0)) if total > 0 else 0
        line = (f"{phase:<12} [{'#' * filled}{'-' * (24 - filled)}] {step}/{total}  "
                f"elapsed {format_duration(elapsed)}  ETA {eta}")
        if self.interactive:
            if new_phase:
                self.close_line()
            self.out.write("\r\033[K" + line)
            self.line_open = True
        elif new_phase or step == total:
            self.out.write(line + "\n")
        self.out.flush()

    def close_line(self):
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
        self.line_open = False


def build_request(args, pb2):
    return pb2.GenerateRequest(
        model=args.model, prompt=args.prompt, negative_prompt=args.negative_prompt, frames=args.frames,
        height=args.height, width=args.width, steps=args.steps, guidance_scale=args.guidance_scale,
        dynamic_cfg=args.dynamic_cfg, seed=args.seed, fps=args.fps,  # seed None: absent, so random
        output=pb2.OutputFormat.Value(OUTPUT_FORMATS[args.format]), attention_backend=args.backend,
        preview_every=args.preview_every,
        image=read_flag_file("--image", args.image) if args.image else b"")


def fill_default_model(stub, pb2, request):
    """An empty model becomes the server's model when it serves exactly one."""
    if request.model:
        return
    models = stub.ListModels(pb2.ListModelsRequest(), timeout=10).models
    if len(models) != 1:
        raise ClientError(f"--model: the server has {len(models)} models ({', '.join(m.name for m in models)}); "
                          "name one")
    request.model = models[0].name


def show_event(event, kind, progress):
    if kind == "queued":
        progress.message(f"queued: {event.queued.position} job(s) ahead")
    elif kind == "started":
        s = event.started
        progress.message(f"started: {s.frames} frames {s.width}x{s.height}, {s.steps} steps, seed {s.seed}, "
                         f"attention {s.attention_backend}")
    elif kind == "progress":
        p = event.progress
        progress.update(PHASES.get(p.phase, f"phase {p.phase}"), p.step, p.total, p.elapsed_seconds)


def print_completed(output, done):
    t = done.times
    print(f"wrote {output}: {done.bytes} bytes, {done.frames} frames, {done.mime_type}")
    print(f"seed {done.seed}, attention backend {done.attention_backend}")
    print(f"times: queued {t.queued_seconds:.3f}s, text-encode {t.text_encode_seconds:.3f}s, "
          f"denoise {t.denoise_seconds:.3f}s, decode {t.decode_seconds:.3f}s, encode {t.encode_seconds:.3f}s, "
          f"total {t.total_seconds:.3f}s")


def save_preview(folder, preview):
    """Writes a Preview event's PNG to FOLDER/preview-<step>.png (the step zero-padded: the files sort in order)."""
    path = Path(folder) / f"preview-{preview.step:05d}.png"
    path.write_bytes(preview.png)
    return path


def receive(call, writer, progress, on_preview=None):
    """Reads the event stream to its end; returns the Completed event. Ctrl-C cancels the job on the server.
    on_preview, when given, gets each Preview event (PNG bytes, step, total, width, height) as it arrives."""
    completed = None
    try:
        for event in call:
            kind = event.WhichOneof("event")
            if kind == "chunk":
                writer.write(event.chunk.offset, event.chunk.data, event.chunk.last)
            elif kind == "preview":
                if on_preview:
                    on_preview(event.preview)
            elif kind == "completed":
                completed = event.completed
            else:
                show_event(event, kind, progress)
    except (KeyboardInterrupt, ClientError):
        call.cancel()
        raise
    finally:
        progress.close_line()
    if completed is None:
        raise ClientError("Generate: the stream ended without a Completed event")
    return completed


def read_flag_file(flag, path, mode="rb"):
    try:
        with open(path, mode) as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"{flag}: cannot read {path}: {error.strerror}") from None


def bearer_token(args):
    """The token from --token-file, else $SAGEVID_TOKEN; empty: none."""
    if not args.token_file:
        return os.environ.get("SAGEVID_TOKEN", "").strip()
    token = read_flag_file("--token-file", args.token_file, "r").strip()
    if not token or "\n" in token:
        raise ClientError(f"--token-file: {args.token_file} must hold exactly one token")
    return token


def open_channel(args):
    """Plaintext, or TLS (--tls, --tls-ca, a client certificate) with the bearer token on every call."""
    import grpc

    token = bearer_token(args)
    if not (args.tls or args.tls_ca or args.tls_cert):
        if token:
            raise ClientError("a token (--token-file or $SAGEVID_TOKEN) needs TLS (--tls or --tls-ca): it must not "
                              "travel in clear text")
        return grpc.insecure_channel(args.server)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_flag_file("--tls-ca", args.tls_ca) if args.tls_ca else None,
        private_key=read_flag_file("--tls-key", args.tls_key) if args.tls_cert else None,
        certificate_chain=read_flag_file("--tls-cert", args.tls_cert) if args.tls_cert else None)
    if token:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(args.server, credentials)


def generate(args, pb2, pb2_grpc):
    import grpc

    with open_channel(args) as channel:
        stub = pb2_grpc.VideoGenerationStub(channel)
        request = build_request(args, pb2)
        try:
            fill_default_model(stub, pb2, request)
        except grpc.RpcError as error:
            raise ClientError(f"ListModels failed: {error.code().name}: {error.details()}") from None
        writer = ChunkWriter(args.output)
        progress = Progress(sys.stderr, sys.stderr.isatty(), not args.quiet)
        on_preview = None
        if args.preview_dir:
            Path(args.preview_dir).mkdir(parents=True, exist_ok=True)
            on_preview = lambda preview: save_preview(args.preview_dir, preview)  # noqa: E731
        try:
            completed = receive(stub.Generate(request, timeout=args.deadline or None), writer, progress, on_preview)
            if completed.bytes != writer.bytes_written:
                raise ClientError(f"Completed reports {completed.bytes} bytes but {writer.bytes_written} arrived")
            writer.finish()
        except grpc.RpcError as error:
            writer.abandon()
            raise ClientError(f"Generate failed: {error.code().name}: {error.details()}") from None
        except BaseException:
            writer.abandon()
            raise
    print_completed(args.output, completed)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="sagevid_client.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT (default %(default)s)")
    parser.add_argument("--deadline", type=float, default=0, help="seconds for the whole call; 0: none")
    parser.add_argument("--tls", action="store_true", help="TLS, trusting the system's CAs")
    parser.add_argument("--tls-ca", metavar="FILE", help="TLS, trusting the CA certificate(s) in FILE (PEM)")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (PEM; with --tls-key), for servers "
                        "that require one")
    parser.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key (PEM)")
    parser.add_argument("--token-file", metavar="FILE", help="bearer token for servers that require one "
                        "(default: $SAGEVID_TOKEN); needs TLS")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="make one video and write it to a file as it streams in")
    gen.add_argument("--prompt", required=True, help="what to generate")
    gen.add_argument("--output", default="sagevid.mp4", help="where the video goes (written as OUTPUT.part "
                     "until complete; default %(default)s)")
    gen.add_argument("--quiet", action="store_true", help="no progress on stderr")
    gen.add_argument("--model", default="", help="a name from ListModels (default: the server's only model)")
    gen.add_argument("--negative-prompt", default="")
    for name, meaning in [("frames", "of the form temporal_factor * k + 1"), ("height", "multiple of the model's "
                          "spatial factor"), ("width", "multiple of the model's spatial factor"),
                          ("steps", "denoising steps"), ("fps", "frame rate of the MP4")]:
        gen.add_argument(f"--{name}", type=int, default=0, help=f"{meaning}; 0: the model's default")
    gen.add_argument("--guidance-scale", type=float, default=0.0, help="0: the model's default")
    gen.add_argument("--dynamic-cfg", action="store_true", help="ramp the guidance scale over the steps")
    gen.add_argument("--seed", type=int, default=None,
                     help="the noise seed (0 is a seed too); absent: random (the seed used is reported)")
    gen.add_argument("--format", choices=list(OUTPUT_FORMATS), default="mp4")
    gen.add_argument("--backend", default="", help="attention backend for this request, if the server allows")
    gen.add_argument("--preview-every", type=int, default=0, help="a preview of the denoised estimate every N "
                     "steps; 0: none")
    gen.add_argument("--preview-dir", help="write each preview to PREVIEW_DIR/preview-<step>.png")
    gen.add_argument("--image", metavar="FILE", help="the first frame (PNG or JPEG) for image-to-video models")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.command == "generate" and args.preview_dir and not args.preview_every:
        parser.error("--preview-dir needs --preview-every")
    limits = {"preview_every": 2**31 - 1, "frames": 2**31 - 1, "height": 2**31 - 1, "width": 2**31 - 1, "steps": 2**31 - 1, "fps": 2**31 - 1,
              "seed": 2**64 - 1, "guidance_scale": 1e6, "deadline": 1e7}
    for name, limit in limits.items():
        if not 0 <= (getattr(args, name, 0) or 0) <= limit:
            parser.error(f"--{name.replace('_', '-')} must be in [0, {limit}]")
    return args


def main(argv=None):
    try:
        pb2, pb2_grpc = load_stubs()  # first, so a broken grpcio-tools install shows even on --help
        args = parse_args(argv)
        generate(args, pb2, pb2_grpc)
        return 0
    except ClientError as error:
        print(f"sagevid_client.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sagevid_client.py: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
