"""End to end through a real server and the official openai client, with a tiny Qwen2.5-VL:
base64 images (several, of different sizes), video, mixed concurrent media and text
requests, usage counting media tokens, and the refusal cases (SSRF, limits, bad media)."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from e2e.server_process import start_server
from media_samples import gradient_image, image_bytes, video_bytes
from PIL import Image
from tiny_vlms import make_tiny_vlm

pytestmark = pytest.mark.slow


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


PNG_A = _data_url(image_bytes(gradient_image(80, 60, seed=1)), "image/png")
JPEG_B = _data_url(image_bytes(gradient_image(40, 90, seed=2), "JPEG"), "image/jpeg")
CLIP = _data_url(video_bytes(frames=20, fps=10.0, width=64, height=64, seed=4), "video/mp4")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    (folder / "a.png").write_bytes(image_bytes(gradient_image(80, 60, seed=1)))
    return folder


@pytest.fixture(scope="module")
def vlm_server(tmp_path_factory, media_dir):
    folder = make_tiny_vlm(tmp_path_factory.mktemp("vlm"), "qwen2_5_vl")
    server = start_server(str(folder), ["--served-model-name", "tiny-vlm",
                                        "--allowed-local-media-path", str(media_dir),
                                        "--media-allowed-networks", "127.0.0.2/32"])
    yield server
    server.stop()


class _MediaHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/to-loopback"):
            self.send_response(302)
            self.send_header("Location", self.path.split("?to=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = image_bytes(gradient_image(80, 60, seed=1))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def allowed_host():
    """An HTTP server on 127.0.0.2, the one non-public network the VLM server allows."""
    httpd = ThreadingHTTPServer(("127.0.0.2", 0), _MediaHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    from tiny_models import make_tiny_model

    server = start_server(str(make_tiny_model(tmp_path_factory.mktemp("txt"), "qwen2")),
                          ["--served-model-name", "tiny-text"])
    yield server
    server.stop()


@pytest.fixture()
def client(vlm_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vlm_server.base_url}/v1", api_key="unused",
                         max_retries=0, timeout=120)


def _ask(client, content, max_tokens=5, stream=False, **extra):
    return client.chat.completions.create(
        model="tiny-vlm", messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens, temperature=0.0, stream=stream, extra_body=extra or None)


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def _text_only_prompt_tokens(client) -> int:
    return _ask(client, "describe", max_tokens=1).usage.prompt_tokens


def test_base64_image_counts_media_tokens(client):
    plain = _text_only_prompt_tokens(client)
    reply = _ask(client, [_image(PNG_A), {"type": "text", "text": "describe"}])
    assert reply.choices[0].message.content is not None
    # 80x60 → 84x56 pixels → 6x4 patches of 14 → 6 tokens after the 2x2 merge, plus the
    # vision start/end markers.
    assert reply.usage.prompt_tokens == plain + 6 + 2
    assert reply.usage.completion_tokens == 5


def test_several_images_of_different_sizes_stream_equals_non_stream(client):
    content = [_image(PNG_A), {"type": "text", "text": "and"}, _image(JPEG_B),
               {"type": "text", "text": "compare"}]
    whole = _ask(client, content, max_tokens=8)
    chunks = list(_ask(client, content, max_tokens=8, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert whole.usage.prompt_tokens > _text_only_prompt_tokens(client) + 12


def test_video_url_and_fps_options(client):
    content = [{"type": "video_url", "video_url": {"url": CLIP}},
               {"type": "text", "text": "what happens"}]
    two_fps = _ask(client, content, video_fps=2.0, video_max_frames=8)
    four_fps = _ask(client, content, video_fps=4.0, video_max_frames=8)
    capped = _ask(client, content, video_fps=4.0, video_max_frames=2)
    # 2 s clip: 4, 8 and 2 frames → 2, 4 and 1 temporal patches of 4 tokens each.
    assert four_fps.usage.prompt_tokens - two_fps.usage.prompt_tokens == 8
    assert two_fps.usage.prompt_tokens - capped.usage.prompt_tokens == 4
    video_part = _ask(client, [{"type": "video", "video": CLIP},
                               {"type": "text", "text": "what happens"}],
                      video_fps=2.0, video_max_frames=8)
    assert video_part.usage.prompt_tokens == two_fps.usage.prompt_tokens


def test_three_media_and_three_text_requests_at_once(client):
    jobs = [[_image(PNG_A), {"type": "text", "text": "one"}],
            [_image(JPEG_B), _image(PNG_A), {"type": "text", "text": "two"}],
            [{"type": "video_url", "video_url": {"url": CLIP}}, {"type": "text", "text": "3"}],
            "hello", "write a poem", "one two three"]
    alone = [_ask(client, job, max_tokens=6).choices[0].message.content for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda job: _ask(client, job, max_tokens=6), jobs))
    assert [r.choices[0].message.content for r in together] == alone


def test_tools_are_kept_on_media_requests(client):
    """The tools reach the chat template of a media request (its prompt grows by the
    rendered tool block, the same growth as on a text request) and the image still counts."""
    tools = [{"type": "function", "function": {"name": "lookup", "description": "find",
                                               "parameters": {"type": "object"}}}]

    def prompt_tokens(content, **extra) -> int:
        return client.chat.completions.create(
            model="tiny-vlm", max_tokens=1, temperature=0.0,
            messages=[{"role": "user", "content": content}], **extra).usage.prompt_tokens

    media = [_image(PNG_A), {"type": "text", "text": "?"}]
    tools_block = prompt_tokens("?", tools=tools) - prompt_tokens("?")
    assert tools_block > 10
    assert prompt_tokens(media, tools=tools) == prompt_tokens(media) + tools_block
    assert prompt_tokens(media) == prompt_tokens("?") + 6 + 2  # 6 image tokens, start/end


def _refused(client, content, *words, **extra) -> str:
    with pytest.raises(openai.BadRequestError) as info:
        _ask(client, content, **extra)
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


def test_refusals_name_the_part_and_the_reason(client, vlm_server):
    _refused(client, [_image(f"{vlm_server.base_url}/health")], "messages[0].content[0]",
             "loopback")
    _refused(client, [_image("http://169.254.169.254/latest/meta-data/")], "metadata")
    _refused(client, [_image("/etc/passwd")], "outside the allowed media folder")
    _refused(client, [_image("data:image/png;base64,bm90IGFuIGltYWdl")],
             "messages[0].content[0]", "not a decodable image")
    bomb = _data_url(image_bytes(Image.new("1", (12000, 12000))), "image/png")
    _refused(client, [{"type": "text", "text": "x"}, _image(bomb)], "messages[0].content[1]",
             "12000x12000")
    _refused(client, [{"type": "video_url", "video_url": {"url": PNG_A}}],
             "messages[0].content[0]", "video")
    _refused(client, [{"type": "video_url", "video_url": {"url": CLIP}}], "video_max_frames",
             video_max_frames=100_000)
    _refused(client, [{"type": "image", "image": PNG_A}], "image_url")
    # The server is still fine afterwards.
    assert _ask(client, [_image(PNG_A)]).usage.completion_tokens == 5


def test_media_to_a_text_only_model_is_refused(text_server):
    text_client = openai.OpenAI(base_url=f"{text_server.base_url}/v1", api_key="unused",
                                max_retries=0)
    with pytest.raises(openai.BadRequestError, match="does not accept image input"):
        text_client.chat.completions.create(
            model="tiny-text", max_tokens=2,
            messages=[{"role": "user", "content": [_image(PNG_A)]}])


def test_allowed_sources_and_redirect_recheck(client, media_dir, allowed_host, vlm_server):
    data = _ask(client, [_image(PNG_A)]).usage.prompt_tokens
    local = _ask(client, [_image(str(media_dir / "a.png"))])
    over_http = _ask(client, [_image(f"{allowed_host}/a.png")])
    assert local.usage.prompt_tokens == over_http.usage.prompt_tokens == data
    # An allowed host redirecting to a loopback address that is not allowed.
    _refused(client, [_image(f"{allowed_host}/to-loopback?to={vlm_server.base_url}/health")],
             "messages[0].content[0]", "loopback")


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory):
    folder = make_tiny_vlm(tmp_path_factory.mktemp("gemma"), "gemma3")
    server = start_server(str(folder), ["--served-model-name", "tiny-gemma"])
    yield server
    server.stop()


def test_gemma3_images_and_video_as_frames(gemma_server):
    gemma = openai.OpenAI(base_url=f"{gemma_server.base_url}/v1", api_key="unused",
                          max_retries=0, timeout=120)

    def ask(content, **extra):
        return gemma.chat.completions.create(
            model="tiny-gemma", messages=[{"role": "user", "content": content}], max_tokens=4,
            temperature=0.0, extra_body=extra or None)

    plain = ask([{"type": "text", "text": "look"}]).usage.prompt_tokens
    one = ask([_image(PNG_A), {"type": "text", "text": "look"}]).usage.prompt_tokens
    two = ask([_image(PNG_A), _image(JPEG_B), {"type": "text", "text": "look"}])
    per_image = one - plain  # 4 image tokens + start/end + blank lines around the block
    assert per_image > 4 and two.usage.prompt_tokens == plain + 2 * per_image
    video = ask([{"type": "video_url", "video_url": {"url": CLIP}},
                 {"type": "text", "text": "look"}], video_fps=2.0, video_max_frames=3)
    # Frames as images: a 2 s clip at 2 fps capped at 3 frames → 3 image blocks.
    assert video.usage.prompt_tokens == plain + 3 * per_image
    assert video.choices[0].message.content is not None
