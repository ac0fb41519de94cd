#!/usr/bin/env python3
"""Tests of sagevid_client.py: its stubs generate from proto/, --help works, every request field has a flag,
and `generate` against an in-process stand-in for the server writes the streamed bytes, checks offsets and
reports gRPC errors by status name. (Against the real server: the service's test suite.)"""
import atexit
import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "sagevid_client.py"
CACHE = tempfile.mkdtemp(prefix="sagevid-client-test-")
os.environ["SAGEVID_CLIENT_CACHE"] = CACHE  # fresh, so the tests build the stubs from this checkout's proto/
atexit.register(shutil.rmtree, CACHE, True)
sys.path.insert(0, str(HERE))
import sagevid_client  # noqa: E402


def run_client(*args, cache=CACHE):
    return subprocess.run([sys.executable, str(CLIENT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SAGEVID_CLIENT_CACHE": cache})


class StubsAndHelp(unittest.TestCase):
    def test_help_generates_the_stubs(self):
        cache = tempfile.mkdtemp(prefix="sagevid-client-test-")
        self.addCleanup(shutil.rmtree, cache, True)
        result = run_client("--help", cache=cache)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("generate", result.stdout)
        generated = list(Path(cache).rglob("*.py"))
        self.assertEqual(sorted(p.name for p in generated), ["sagevid_pb2.py", "sagevid_pb2_grpc.py"])

    def test_every_request_field_has_a_flag(self):
        pb2, _ = sagevid_client.load_stubs()
        result = run_client("generate", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        renamed = {"output": "format", "attention_backend": "backend"}
        for field in pb2.GenerateRequest.DESCRIPTOR.fields:
            flag = "--" + renamed.get(field.name, field.name).replace("_", "-")
            self.assertIn(flag, result.stdout, f"no flag for GenerateRequest.{field.name}")
        for name in sagevid_client.OUTPUT_FORMATS.values():
            pb2.OutputFormat.Value(name)  # raises if the proto renamed it

    def test_bad_flag_value_is_a_usage_error(self):
        result = run_client("generate", "--prompt", "x", "--frames", "-3")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--frames must be in", result.stderr)


class FakeServer:
    """Serves VideoGeneration from this process: streams `payload` in random-sized chunks with progress
    events, or misbehaves as told, and records the request it got."""

    def __init__(self, payload, lose_a_chunk=False, abort_with=None, tls=None):
        import grpc

        pb2, pb2_grpc = sagevid_client.load_stubs()
        self.pb2, self.payload, self.lose_a_chunk, self.abort_with = pb2, payload, lose_a_chunk, abort_with
        self.requests = []
        self.authorization = None  # the last Generate call's authorization header
        fake = self

        class Servicer(pb2_grpc.VideoGenerationServicer):
            def ListModels(self, request, context):
                return pb2.ListModelsResponse(models=[pb2.ModelInfo(name="tiny")])

            def Generate(self, request, context):
                fake.requests.append(request)
                fake.authorization = dict(context.invocation_metadata()).get("authorization")
                if fake.abort_with:
                    context.abort(*fake.abort_with)
                yield from fake.events(request)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb2_grpc.add_VideoGenerationServicer_to_server(Servicer(), self.server)
        if tls:  # (key PEM, certificate PEM)
            port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls]))
        else:
            port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.server.start()

    def events(self, request):
        pb2 = self.pb2
        yield pb2.GenerateEvent(queued=pb2.Queued(position=0))
        yield pb2.GenerateEvent(started=pb2.Started(seed=7, steps=request.steps, frames=9, height=32, width=48))
        for step in range(1, request.steps + 1):
            yield pb2.GenerateEvent(progress=pb2.Progress(phase=pb2.PHASE_DENOISE, step=step, total=request.steps,
                                                          elapsed_seconds=0.1 * step))
            if request.preview_every and step % request.preview_every == 0:
                yield pb2.GenerateEvent(preview=pb2.Preview(png=f"png of step {step}".encode(), step=step,
                                                            total=request.steps, width=2, height=1))
        offset, chunks = 0, []
        while offset < len(self.payload):
            size = random.randint(1, 4096)
            chunks.append((offset, self.payload[offset:offset + size]))
            offset += size
        if self.lose_a_chunk:
            del chunks[len(chunks) // 2]
        for i, (offset, data) in enumerate(chunks):
            yield pb2.GenerateEvent(chunk=pb2.VideoChunk(data=data, offset=offset, last=i == len(chunks) - 1))
        yield pb2.GenerateEvent(completed=pb2.Completed(
            times=pb2.PhaseTimes(denoise_seconds=1.25, total_seconds=2.5), attention_backend="math", seed=7,
            frames=9, bytes=len(self.payload), mime_type="video/mp4"))

    def stop(self):
        self.server.stop(None)


def generate_in_process(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = sagevid_client.main(list(args))
    return status, out.getvalue(), err.getvalue()


class GenerateAgainstFakeServer(unittest.TestCase):
    def setUp(self):
        self.payload = random.randbytes(random.randint(20_000, 60_000))
        folder = tempfile.mkdtemp(prefix="sagevid-client-test-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.output = Path(folder) / "video.mp4"

    def test_writes_the_streamed_bytes_and_prints_timings(self):
        server = FakeServer(self.payload)
        steps = random.randint(2, 6)
        try:
            status, out, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                   "--steps", str(steps), "--seed", "42", "--format", "mp4-lossless",
                                                   "--backend", "flash", "--dynamic-cfg", "--output", str(self.output))
        finally:
            server.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(self.output.read_bytes(), self.payload)
        self.assertFalse(Path(str(self.output) + ".part").exists())
        request = server.requests[0]
        self.assertEqual((request.model, request.prompt, request.steps, request.seed, request.attention_backend),
                         ("tiny", "a cat", steps, 42, "flash"))
        self.assertTrue(request.dynamic_cfg)
        self.assertEqual(request.output, server.pb2.OUTPUT_FORMAT_MP4_H264_LOSSLESS)
        self.assertIn(f"{len(self.payload)} bytes, 9 frames", out)
        self.assertIn("denoise 1.250s", out)
        self.assertIn(f"denoise      [{'#' * 24}] {steps}/{steps}", err)

    def test_previews_go_to_the_preview_folder(self):
        server = FakeServer(self.payload)
        previews = self.output.parent / "previews"
        try:
            status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                 "--steps", "5", "--preview-every", "2", "--preview-dir",
                                                 str(previews), "--quiet", "--output", str(self.output))
        finally:
            server.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(p.name for p in previews.iterdir()), ["preview-00002.png", "preview-00004.png"])
        self.assertEqual((previews / "preview-00004.png").read_bytes(), b"png of step 4")
        self.assertEqual(run_client("generate", "--prompt", "x", "--preview-dir", str(previews)).returncode, 2)

    def test_seed_zero_is_sent_and_no_seed_is_absent(self):
        server = FakeServer(self.payload)
        try:
            for seed_flags in (["--seed", "0"], []):
                status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                     *seed_flags, "--quiet", "--output", str(self.output))
                self.assertEqual(status, 0, err)
        finally:
            server.stop()
        with_zero, without = server.requests
        self.assertTrue(with_zero.HasField("seed"))
        self.assertEqual(with_zero.seed, 0)
        self.assertFalse(without.HasField("seed"))

    def test_the_image_file_is_sent_as_it_is_and_a_missing_one_is_an_error(self):
        image = self.output.parent / "first.png"
        image.write_bytes(random.randbytes(random.randint(1, 5000)))
        server = FakeServer(self.payload)
        try:
            status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                 "--image", str(image), "--quiet", "--output", str(self.output))
            self.assertEqual(status, 0, err)
            status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                 "--image", str(image) + ".absent", "--output", str(self.output))
        finally:
            server.stop()
        self.assertEqual(server.requests[0].image, image.read_bytes())
        self.assertEqual(len(server.requests), 1)
        self.assertEqual(status, 1)
        self.assertIn("--image: cannot read", err)

    def test_a_lost_chunk_fails_and_leaves_no_file(self):
        server = FakeServer(self.payload, lose_a_chunk=True)
        try:
            status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                 "--steps", "2", "--quiet", "--output", str(self.output))
        finally:
            server.stop()
        self.assertEqual(status, 1)
        self.assertIn("a chunk was lost or repeated", err)
        self.assertEqual(list(self.output.parent.iterdir()), [])

    def test_rpc_errors_name_the_status_code(self):
        import grpc

        server = FakeServer(self.payload, abort_with=(grpc.StatusCode.INVALID_ARGUMENT, "steps: must be in [1, 200]"))
        try:
            status, _, err = generate_in_process("--server", server.address, "generate", "--prompt", "a cat",
                                                 "--output", str(self.output))
        finally:
            server.stop()
        self.assertEqual(status, 1)
        self.assertIn("Generate failed: INVALID_ARGUMENT: steps: must be in [1, 200]", err)
        self.assertEqual(list(self.output.parent.iterdir()), [])


def make_test_pki(folder):
    """A throwaway CA and a server certificate for 127.0.0.1 it signed, plus an unrelated CA (openssl CLI)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *new_key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN=test-{ca}")
    Path(folder, "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", *new_key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=server")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "server.pem", "-extfile", "server.ext")


class GenerateOverTls(unittest.TestCase):
    def setUp(self):
        self.folder = Path(tempfile.mkdtemp(prefix="sagevid-client-tls-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        make_test_pki(self.folder)
        self.token = f"tok-{random.getrandbits(64):x}"
        (self.folder / "token").write_text(f"  {self.token}\n")
        self.payload = random.randbytes(random.randint(2_000, 6_000))
        tls = ((self.folder / "server.key").read_bytes(), (self.folder / "server.pem").read_bytes())
        self.server = FakeServer(self.payload, tls=tls)
        self.addCleanup(self.server.stop)
        self.output = self.folder / "video.mp4"

    def generate(self, *flags):
        return generate_in_process("--server", self.server.address, *flags, "generate", "--prompt", "a cat",
                                   "--steps", "2", "--quiet", "--output", str(self.output))

    def test_trusting_the_ca_with_a_token_file_sends_the_token(self):
        status, _, err = self.generate("--tls-ca", str(self.folder / "ca.pem"), "--token-file",
                                       str(self.folder / "token"))
        self.assertEqual(status, 0, err)
        self.assertEqual(self.output.read_bytes(), self.payload)
        self.assertEqual(self.server.authorization, f"Bearer {self.token}")

    def test_the_token_can_come_from_the_environment(self):
        os.environ["SAGEVID_TOKEN"] = self.token
        self.addCleanup(os.environ.pop, "SAGEVID_TOKEN")
        status, _, err = self.generate("--tls-ca", str(self.folder / "ca.pem"))
        self.assertEqual(status, 0, err)
        self.assertEqual(self.server.authorization, f"Bearer {self.token}")

    def test_an_untrusted_server_or_a_token_in_clear_text_fails(self):
        status, _, err = self.generate("--tls-ca", str(self.folder / "other-ca.pem"))
        self.assertEqual(status, 1)
        self.assertIn("UNAVAILABLE", err)
        status, _, err = self.generate("--token-file", str(self.folder / "token"))
        self.assertEqual(status, 1)
        self.assertIn("needs TLS", err)
        self.assertEqual(self.server.requests, [])


if __name__ == "__main__":
    unittest.main()
