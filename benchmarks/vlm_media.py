"""Image and video requests through the engine: time to first token and decode speed,
native video vs frames-as-images, on a random-weight Qwen2.5-VL-shaped model.

    python benchmarks/vlm_media.py --shape tiny                      # CPU smoke run
    python benchmarks/vlm_media.py --shape qwen2.5-vl-7b --dtype bfloat16 \\
        --out benchmarks/results/vlm_media_h100.json                 # GPU

Cases (each alone, greedy, EOS ignored): one 640x480 image; a 16-frame 320x240 clip as
native video (temporal patches); the same 16 frames as 16 images. Reports prompt tokens
(media tokens included), TTFT (request submitted → first token, vision encode included)
and decode tokens/s after the first token. Needs mlx-vlm and opencv (the vision extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "multimodal"))

import mlxserve  # noqa: E402,F401  (binds MLX to OpenBLAS on Linux CPU before mlx.core)
import mlx.core as mx  # noqa: E402

from mlxserve.config import EngineConfig, ModelConfig  # noqa: E402
from mlxserve.engine.client import AsyncEngine  # noqa: E402
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams  # noqa: E402
from mlxserve.multimodal.encode import prepare_multimodal  # noqa: E402
from mlxserve.multimodal.media_config import MediaConfig  # noqa: E402
from mlxserve.multimodal.video import VideoSampling, decode_video  # noqa: E402

SHAPES = {
    "tiny": {},
    # Qwen2.5-VL-7B-Instruct's published dimensions.
    "qwen2.5-vl-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
        num_hidden_layers=28, num_key_value_heads=4, max_position_embeddings=128000,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        vision_config={"depth": 32, "hidden_act": "silu", "hidden_size": 1280,
                       "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
                       "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                       "spatial_patch_size": 14, "window_size": 112,
                       "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                       "temporal_patch_size": 2}),
}


def build_model(root: Path, shape: str) -> Path:
    from tiny_vlms import QWEN2_5_VL, make_tiny_vlm

    config = json.loads(json.dumps(QWEN2_5_VL))
    config.update(SHAPES[shape])
    return make_tiny_vlm(root, "qwen2_5_vl", config=config, name=f"random-{shape}",
                         weight_dtype="float32" if shape == "tiny" else "bfloat16")


def cases(tokenizer, vision) -> dict[str, tuple[list[int], object]]:
    from media_samples import gradient_image, video_bytes

    def ids(parts):
        text = tokenizer.apply_chat_template([{"role": "user", "content": parts}],
                                             add_generation_prompt=True, tokenize=False)
        return tokenizer.encode(text, add_special_tokens=False)

    clip = decode_video(video_bytes(frames=80, fps=10.0, width=320, height=240),
                        part="video", sampling=VideoSampling(2.0, 16), config=MediaConfig())
    assert len(clip.frames) == 16
    video_prompt = ids([{"type": "video"}, {"type": "text", "text": "What happens?"}])
    return {
        "image": prepare_multimodal(ids([{"type": "image"}, {"type": "text", "text": "Describe."}]),
                                    [gradient_image(640, 480)], [], vision),
        "video_native": prepare_multimodal(video_prompt, [], [clip], vision),
        "video_as_images": prepare_multimodal(video_prompt, [], [clip], vision,
                                              video_as_images=True),
    }


async def run_one(engine: AsyncEngine, name: str, prepared, gen_len: int) -> dict:
    request = GenerateRequest(name, prepared.prompt_tokens, SamplingParams(temperature=0.0),
                              StopParams(max_tokens=gen_len, ignore_eos=True),
                              prepared.multimodal)
    start = time.perf_counter()
    first = None
    count = 0
    async for delta in engine.generate(request):
        assert delta.error is None, delta.error
        if delta.token_ids and first is None:
            first = time.perf_counter()
        count += len(delta.token_ids)
    end = time.perf_counter()
    return {"prompt_tokens": len(prepared.prompt_tokens),
            "media_tokens": prepared.multimodal.media_tokens,
            "ttft_s": round(first - start, 4),
            "decode_tok_s": round((count - 1) / (end - first), 2) if count > 1 else None}


def summarize(runs: list[dict]) -> dict:
    """Median time to first token and decode speed over the repeats, with their range."""
    ttft = sorted(r["ttft_s"] for r in runs)
    tps = sorted(r["decode_tok_s"] for r in runs if r["decode_tok_s"] is not None)
    mid = len(runs) // 2
    return {"prompt_tokens": runs[0]["prompt_tokens"], "media_tokens": runs[0]["media_tokens"],
            "repeats": len(runs), "ttft_s": ttft[mid], "ttft_range_s": [ttft[0], ttft[-1]],
            "decode_tok_s": tps[len(tps) // 2] if tps else None,
            "decode_range_tok_s": [tps[0], tps[-1]] if tps else None}


async def main_async(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp), args.shape)
        engine = AsyncEngine(ModelConfig(model=str(folder), dtype=args.dtype), EngineConfig())
        await engine.start()
        try:
            prepared = cases(engine.model.tokenizer, engine.model.vision)
            for name, case in prepared.items():
                await run_one(engine, f"warm-{name}", case, 2)  # compile / warm caches
            runs: dict[str, list[dict]] = {name: [] for name in prepared}
            names = list(prepared)
            # interleaved, the first case rotating, so every case sees the same machine
            for r in range(args.repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    runs[name].append(await run_one(engine, f"{name}-{r}", prepared[name],
                                                    args.gen_len))
            results = {name: summarize(rs) for name, rs in runs.items()}
            for name, res in results.items():
                print(name, res, flush=True)
        finally:
            await engine.shutdown()
    native, frames = results["video_native"], results["video_as_images"]
    return {"shape": args.shape, "dtype": args.dtype, "device": str(mx.default_device()),
            "machine": platform.platform(), "load_average_1m": round(os.getloadavg()[0], 2),
            "gen_len": args.gen_len, "repeats": args.repeats, "results": results,
            "video_prompt_ratio_frames_vs_native":
                round(frames["prompt_tokens"] / native["prompt_tokens"], 2),
            "video_ttft_ratio_frames_vs_native":
                round(frames["ttft_s"] / native["ttft_s"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per case, interleaved; medians are reported")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
