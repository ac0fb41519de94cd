#!/usr/bin/env python3
"""The HTTP video API of `sagevid serve` with a real HTTP client (requests) against the tiny model on the CPU:
the whole cycle (create, poll, download, delete), the content streamed while it is made, previews, multipart forms,
the errors (bad JSON, unknown field, wrong type, unknown model, image, oversized body, unknown id), cancel,
a full queue, the metrics the HTTP requests share with gRPC, SIGTERM with a job running, HTTPS with tokens, and
retention expiry.

The binary is $SAGEVID_BINARY (ctest sets it), else build/server/sagevid of this checkout."""
import base64
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from test_sagevid_client import make_test_pki  # noqa: E402  (the Python client's throwaway CA and certificate)

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("SAGEVID_BINARY", str(ROOT / "build" / "server" / "sagevid"))
TINY = ROOT / "configs" / "tiny.json"
TINY_I2V = ROOT / "configs" / "tiny-i2v.json"  # two tiny image-to-video models and the tiny text-to-video one
BODY_LIMIT = 65536  # server.http.max_body_bytes of the test servers: oversized bodies stay cheap to send


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`sagevid serve` of the tiny config with the HTTP API (and /metrics) on free ports; videos in a folder of
    its own."""

    def __init__(self, *overrides, tls_folder=None, token=None, config=TINY):
        """With tls_folder (make_test_pki's files) the API is HTTPS; with a token, both endpoints want it."""
        self.storage = tempfile.mkdtemp(prefix="sagevid-http-test-")
        self.session = requests.Session()
        self.session.trust_env = False  # $REQUESTS_CA_BUNDLE would override verify; no proxy for 127.0.0.1
        scheme = "https" if tls_folder else "http"
        if tls_folder:
            self.session.verify = str(Path(tls_folder, "ca.pem"))
            overrides += (f"server.tls.cert_file={tls_folder}/server.pem", f"server.tls.key_file={tls_folder}/server.key")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
            Path(self.storage, "tokens").write_text(token + "\n")
            overrides += (f"server.auth.token_file={self.storage}/tokens",)
        self.http_port, self.metrics_port = free_port(), free_port()
        settings = [f'server.address="127.0.0.1:{free_port()}"', f'server.http.address="127.0.0.1:{self.http_port}"',
                    f'server.metrics_address="127.0.0.1:{self.metrics_port}"', f"server.http.storage_dir={self.storage}",
                    f"server.http.max_body_bytes={BODY_LIMIT}", "log_level=warn",
                    "models.0.max_latent_token_steps=720000", *overrides]  # the work cap lets slow() through
        command = [BINARY, "serve", "--config", str(config)]
        for setting in settings:
            command += ["--set", setting]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # its build report
        self.url = f"{scheme}://127.0.0.1:{self.http_port}"
        self.metrics_url = f"{scheme}://127.0.0.1:{self.metrics_port}/metrics"
        end = time.monotonic() + 60
        while time.monotonic() < end and self.process.poll() is None:
            try:
                if self.session.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("sagevid serve did not come up")

    def stop(self):
        """SIGTERM, as an operator stops it; its exit status."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.kill()
            shutil.rmtree(self.storage, True)

    def create(self, **fields):
        return self.session.post(self.url + "/v1/videos", json=fields, timeout=10)

    def video(self, video_id):
        return self.session.get(f"{self.url}/v1/videos/{video_id}", timeout=10)

    def wait(self, video_id, until=("completed", "failed"), timeout=60):
        """Polls the video until its status is one of `until`; returns every state seen."""
        seen = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            reply = self.video(video_id)
            assert reply.status_code == 200, reply.text
            seen.append(reply.json())
            if seen[-1]["status"] in until:
                return seen
            time.sleep(0.02)
        raise AssertionError(f"video {video_id} still {seen[-1]['status']} after {timeout} s")

    def requests_with_outcome(self, outcome):
        metrics = self.session.get(self.metrics_url, timeout=5).text
        series = f'sagevid_requests_total{{outcome="{outcome}"}} '
        return next((int(line[len(series):]) for line in metrics.splitlines() if line.startswith(series)), 0)

    def stored_files(self):
        return sorted(p.name for p in Path(self.storage).rglob("*.mp4"))


def png_size(png):
    """(width, height) of an RGB PNG, after checking its signature, every chunk's CRC, the zlib stream (its
    checksum too) and that the rows add up."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, body = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        assert struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)  # 8-bit RGB
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


def small(**fields):
    """A quick request for the tiny model: 9 frames of 96 x 64, a few steps."""
    return {"model": "tiny", "prompt": random.choice(["a red fox", "snow at dawn", "a city"]), "size": "96x64",
            "seconds": "1", "steps": 3, **fields}


def slow(**fields):
    """A request that keeps the worker busy for many seconds: the largest size, 1000 steps."""
    return small(size="192x192", frames=17, steps=1000, seconds=None, **fields)


class HttpApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("server.queue_size=1")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assert_error(self, reply, status, param=None, contains=""):
        self.assertEqual(reply.status_code, status, reply.text)
        self.assertTrue(reply.headers["Content-Type"].startswith("application/json"))
        error = reply.json()["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(error["type"], "server_error" if status >= 500 else "invalid_request_error")
        self.assertEqual(error["param"], param)
        self.assertIn(contains, error["message"])
        return error

    def test_whole_cycle(self):
        ok_before = self.server.requests_with_outcome("ok")
        seed = random.randrange(2**40)
        reply = self.server.create(**small(seed=seed, steps=4, negative_prompt="blurry", guidance_scale=5.5))
        self.assertEqual(reply.status_code, 200, reply.text)
        created = reply.json()
        self.assertEqual(created["object"], "video")
        self.assertTrue(created["id"].startswith("video_"))
        self.assertEqual((created["model"], created["size"], created["seconds"]), ("tiny", "96x64", "1"))
        self.assertIn(created["status"], ("queued", "in_progress"))

        states = self.server.wait(created["id"])
        done = states[-1]
        self.assertEqual(done["status"], "completed", done)
        progress = [state["progress"] for state in states]
        self.assertEqual(progress, sorted(progress))  # by denoising step, never backwards
        self.assertTrue(all(p < 100 for p, s in zip(progress, states) if s["status"] != "completed"))
        self.assertEqual(done["progress"], 100)
        self.assertEqual(done["seed"], seed)
        self.assertIsNone(done["error"])
        self.assertGreaterEqual(done["completed_at"], done["created_at"])
        self.assertEqual(done["expires_at"] - done["completed_at"], 3600)  # retention_seconds' default

        content = self.server.session.get(f"{self.server.url}/v1/videos/{created['id']}/content", timeout=10)
        self.assertEqual(content.status_code, 200)
        self.assertEqual(content.headers["Content-Type"], "video/mp4")
        self.assertEqual(int(content.headers["Content-Length"]), len(content.content))
        self.assertEqual(content.content[4:8], b"ftyp")
        self.assertEqual(self.server.requests_with_outcome("ok"), ok_before + 1)  # the gRPC path's metrics

        # The same seed makes the same video (the CPU path is deterministic).
        again = self.server.create(**small(seed=seed, steps=4, negative_prompt="blurry", guidance_scale=5.5,
                                           prompt=created["prompt"])).json()
        self.assertEqual(self.server.wait(again["id"])[-1]["status"], "completed")
        self.assertEqual(self.server.session.get(f"{self.server.url}/v1/videos/{again['id']}/content").content, content.content)

        deleted = self.server.session.delete(f"{self.server.url}/v1/videos/{created['id']}", timeout=10)
        self.assertEqual(deleted.json(), {"id": created["id"], "object": "video.deleted", "deleted": True})
        self.assert_error(self.server.video(created["id"]), 404, "video_id")
        self.assertEqual(self.server.stored_files(), [again["id"] + ".mp4"])
        self.server.session.delete(f"{self.server.url}/v1/videos/{again['id']}", timeout=10)

    def test_content_streams_while_the_video_is_made(self):
        created = self.server.create(**small(steps=40, seconds="2")).json()
        with self.server.session.get(f"{self.server.url}/v1/videos/{created['id']}/content", stream=True, timeout=60) as live:
            self.assertEqual(live.status_code, 200)
            self.assertEqual(live.headers.get("Transfer-Encoding"), "chunked")
            streamed = b"".join(live.iter_content(None))
        self.assertEqual(self.server.video(created["id"]).json()["status"], "completed")
        whole = self.server.session.get(f"{self.server.url}/v1/videos/{created['id']}/content", timeout=10).content
        self.assertEqual(streamed, whole)
        self.server.session.delete(f"{self.server.url}/v1/videos/{created['id']}", timeout=10)

    def test_previews(self):
        plain = self.server.create(**small()).json()
        # server.queue_size=1: the second request finds the queue free only once the worker has taken the first.
        self.server.wait(plain["id"], until=("in_progress", "completed"))
        created = self.server.create(**small(size="192x128", steps=2, preview_every=1)).json()
        done = self.server.wait(created["id"])[-1]
        self.assertEqual((done["status"], done["preview_step"]), ("completed", 2))
        preview = self.server.session.get(f"{self.server.url}/v1/videos/{created['id']}/preview", timeout=10)
        self.assertEqual(preview.status_code, 200)
        self.assertEqual(preview.headers["Content-Type"], "image/png")
        self.assertEqual(png_size(preview.content), (192, 128))  # over 64 KiB of rows: two stored blocks
        self.assertIsNone(self.server.wait(plain["id"])[-1]["preview_step"])
        missing = self.server.session.get(f"{self.server.url}/v1/videos/{plain['id']}/preview", timeout=10)
        self.assertEqual(self.assert_error(missing, 404, "video_id", "no preview")["code"], "no_preview")
        for video in (plain, created):
            self.server.session.delete(f"{self.server.url}/v1/videos/{video['id']}", timeout=10)

    def test_multipart_form(self):
        fields = {"model": "tiny", "prompt": "a cat", "size": "96x64", "frames": "9", "steps": "2", "seed": "0"}
        reply = self.server.session.post(self.server.url + "/v1/videos", files={k: (None, v) for k, v in fields.items()})
        self.assertEqual(reply.status_code, 200, reply.text)
        done = self.server.wait(reply.json()["id"])[-1]
        self.assertEqual((done["status"], done["seed"]), ("completed", 0))
        steps = self.server.session.post(self.server.url + "/v1/videos", files={"prompt": (None, "x"), "steps": (None, "two")})
        self.assert_error(steps, 400, "steps", "expected an integer, got string")
        image = self.server.session.post(self.server.url + "/v1/videos",
                              files={"prompt": (None, "x"), "input_reference": ("cat.png", b"\x89PNG", "image/png")})
        self.assert_error(image, 400, "input_reference", "model 'tiny' takes no image")
        self.server.session.delete(f"{self.server.url}/v1/videos/{done['id']}", timeout=10)

    def test_bad_requests_name_the_field(self):
        posted = []

        def post(body, **headers):
            posted.append(body)
            return self.server.session.post(self.server.url + "/v1/videos", data=body, timeout=10,
                                 headers={"Content-Type": "application/json", **headers})

        invalid_before = self.server.requests_with_outcome("invalid_argument")
        self.assertEqual(self.assert_error(post('{"prompt": "a cat",'), 400)["code"], "invalid_json")
        self.assert_error(post('["a cat"]'), 400, None, "request: expected a JSON object, got array")
        self.assert_error(post('{"prompt": "a cat", "colour": "red"}'), 400, "colour", "unknown field")
        self.assert_error(post('{"prompt": "a cat", "steps": 2.5}'), 400, "steps", "expected an integer, got number")
        self.assert_error(post('{"prompt": "a cat", "seed": -1}'), 400, "seed", "negative")
        self.assert_error(post('{"prompt": "a cat", "size": "96*64"}'), 400, "size", "expected WIDTHxHEIGHT")
        self.assert_error(post('{"prompt": "a cat", "seconds": "1", "frames": 9}'), 400, "seconds", "not both")
        self.assert_error(post('{"prompt": "a cat", "seconds": "soon"}'), 400, "seconds")
        self.assert_error(post('{"prompt": "a cat", "image": "iVBORw0KGgo="}'), 400, "image",
                          "model 'tiny' takes no image")
        self.assert_error(post('{"prompt": "a cat", "input_reference": {"image_url": "data:image/png;base64,AA=="}}'),
                          400, "input_reference", "takes no image")
        # The service's own checks, as gRPC has them: the model, the prompt, sizes the model cannot make.
        self.assert_error(post('{"prompt": "a cat", "model": "huge"}'), 400, "model", "unknown model 'huge' (served: tiny)")
        self.assert_error(post('{"prompt": "   "}'), 400, "prompt", "empty")
        self.assert_error(post('{"prompt": "a cat", "size": "100x64"}'), 400, "size", "width: 100 is not a multiple")
        self.assert_error(post('{"prompt": "a cat", "frames": 10}'), 400, "frames")
        self.assert_error(post("prompt=a+cat", **{"Content-Type": "application/x-www-form-urlencoded"}), 415)
        # Logged and counted as refused Generate calls are, whether the HTTP layer or the service refused them.
        self.assertEqual(self.server.requests_with_outcome("invalid_argument"), invalid_before + len(posted))

    def test_oversized_body_is_refused_before_it_is_read(self):
        body = json.dumps({"prompt": "a" * BODY_LIMIT})
        reply = self.server.session.post(self.server.url + "/v1/videos", data=body, timeout=10,
                              headers={"Content-Type": "application/json"})
        self.assert_error(reply, 413, None, "max_body_bytes")
        # A length far over the limit and no body at all: the answer comes without waiting for the bytes.
        with socket.create_connection(("127.0.0.1", self.server.http_port), timeout=5) as connection:
            connection.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 1000000000\r\n\r\n")
            answer = connection.recv(4096).decode()
        self.assertTrue(answer.startswith("HTTP/1.1 413"), answer)

    def test_unknown_ids_and_routes(self):
        for method, path in [("GET", "/v1/videos/video_0000"), ("GET", "/v1/videos/video_0000/content"),
                             ("DELETE", "/v1/videos/video_0000")]:
            error = self.assert_error(self.server.session.request(method, self.server.url + path, timeout=10), 404, "video_id")
            self.assertEqual(error["code"], "not_found")
        self.assert_error(self.server.session.get(self.server.url + "/v1/images", timeout=10), 404, None, "no route")

    def test_models(self):
        reply = self.server.session.get(self.server.url + "/v1/models", timeout=10).json()
        self.assertEqual(reply["object"], "list")
        [model] = reply["data"]
        self.assertEqual((model["id"], model["object"], model["owned_by"]), ("tiny", "model", "sagevid"))
        self.assertEqual(model["default_size"], "96x64")
        self.assertFalse(model["takes_image"])

    def test_cancel_and_a_full_queue(self):
        cancelled_before = self.server.requests_with_outcome("cancelled")
        running = self.server.create(**slow()).json()
        self.server.wait(running["id"], until=("in_progress",))
        waiting = self.server.create(**small()).json()  # server.queue_size=1: the queue is now full
        self.assertEqual(self.server.video(waiting["id"]).json()["status"], "queued")
        self.assert_error(self.server.create(**small()), 429, None, "full")
        for video in (waiting, running):  # a queued one is dropped, the running one stops within a step
            self.assertTrue(self.server.session.delete(f"{self.server.url}/v1/videos/{video['id']}", timeout=10).json()["deleted"])
            self.assert_error(self.server.video(video["id"]), 404, "video_id")
        end = time.monotonic() + 30
        while self.server.requests_with_outcome("cancelled") < cancelled_before + 2 and time.monotonic() < end:
            time.sleep(0.05)
        self.assertEqual(self.server.requests_with_outcome("cancelled"), cancelled_before + 2)
        after = self.server.create(**small()).json()  # the worker is free again
        self.assertEqual(self.server.wait(after["id"], timeout=30)[-1]["status"], "completed")
        self.server.session.delete(f"{self.server.url}/v1/videos/{after['id']}", timeout=10)


class Lifecycle(unittest.TestCase):
    def test_sigterm_drains_then_cancels_http_jobs_and_removes_the_videos(self):
        server = Server("server.drain_seconds=0.5")
        try:
            running = server.create(**slow()).json()
            server.wait(running["id"], until=("in_progress",))
            storage = Path(server.storage)
            [folder] = list(storage.glob("sagevid-videos-*"))
            started = time.monotonic()
            server.process.terminate()
            self.assertEqual(server.process.wait(timeout=30), 0)
            self.assertLess(time.monotonic() - started, 15)  # cancelled after the drain, within a step
            self.assertFalse(folder.exists())
        finally:
            server.stop()


class Security(unittest.TestCase):
    def test_https_and_tokens_as_for_grpc(self):
        folder = tempfile.mkdtemp(prefix="sagevid-http-tls-")
        self.addCleanup(shutil.rmtree, folder, True)
        make_test_pki(folder)
        token = f"tok-{random.getrandbits(64):x}"
        server = Server(tls_folder=folder, token=token)
        try:
            done = server.wait(server.create(**small()).json()["id"])[-1]
            self.assertEqual(done["status"], "completed")
            content = server.session.get(f"{server.url}/v1/videos/{done['id']}/content", timeout=10)
            self.assertEqual(content.content[4:8], b"ftyp")
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = requests.get(f"{server.url}/v1/videos/{done['id']}", headers=headers,
                                       verify=server.session.verify, timeout=10)
                self.assertEqual(refused.status_code, 401)
                self.assertEqual(refused.json()["error"]["code"], "invalid_api_key")
            with self.assertRaises(requests.ConnectionError):  # no plain HTTP on the port
                requests.get(f"http://127.0.0.1:{server.http_port}/v1/models", timeout=10)
        finally:
            server.stop()


class Retention(unittest.TestCase):
    def test_finished_videos_are_deleted_after_the_retention_time(self):
        server = Server("server.http.retention_seconds=1.5")
        try:
            created = server.create(**small()).json()
            done = server.wait(created["id"])[-1]
            self.assertEqual(done["status"], "completed")
            self.assertEqual(done["expires_at"] - done["completed_at"], 2)  # whole seconds, rounded up
            self.assertEqual(server.stored_files(), [created["id"] + ".mp4"])
            end = time.monotonic() + 10
            while server.video(created["id"]).status_code == 200 and time.monotonic() < end:
                time.sleep(0.05)
            self.assertGreater(time.monotonic() + 10 - end, 1.0)  # not before the retention time
            self.assertEqual(server.video(created["id"]).status_code, 404)
            self.assertEqual(server.stored_files(), [])
        finally:
            server.stop()


class ImageToVideo(unittest.TestCase):
    """input_reference for an image-to-video model, as a multipart file and as a data: URL in JSON; the server's
    text-to-video model refuses one, naming the field."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(config=TINY_I2V)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_file_part_and_data_url_make_videos(self):
        png = (ROOT / "tests" / "fixtures" / "i2v" / "images" / "gradient.png").read_bytes()
        models = {m["id"]: m for m in self.server.session.get(self.server.url + "/v1/models", timeout=10).json()["data"]}
        self.assertTrue(models["tiny-i2v-1.5"]["takes_image"])
        self.assertFalse(models["tiny"]["takes_image"])
        form = self.server.session.post(self.server.url + "/v1/videos", timeout=10, files={
            "model": (None, "tiny-i2v-1.5"), "prompt": (None, "a cat"), "steps": (None, "2"),
            "input_reference": ("gradient.png", png, "image/png")})
        self.assertEqual(form.status_code, 200, form.text)
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()
        from_json = self.server.create(model="tiny-i2v-1.5", prompt="a cat", steps=2,
                                       input_reference={"image_url": data_url})
        self.assertEqual(from_json.status_code, 200, from_json.text)
        for reply in (form, from_json):
            done = self.server.wait(reply.json()["id"], timeout=180)[-1]
            self.assertEqual(done["status"], "completed", done)
        refused = self.server.create(model="tiny", prompt="a cat", input_reference={"image_url": data_url})
        self.assertEqual(refused.status_code, 400, refused.text)
        self.assertIn("input_reference", refused.text)
        missing = self.server.create(model="tiny-i2v-1.5", prompt="a cat", steps=2)
        self.assertEqual(missing.status_code, 400, missing.text)
        self.assertIn("image", missing.text)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], *sys.argv[1:]])
