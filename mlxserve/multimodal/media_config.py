"""Limits and defaults for media in requests (fetching, decoding, frame sampling).

Built once by the CLI (or a test) and passed down; defaults are resolved here.
Pure Python: no MLX import.
"""

from __future__ import annotations

from dataclasses import dataclass

# Cloud instance-metadata endpoints: refused even when private networks are allowed.
METADATA_ADDRESSES = (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud
    "fd00:ec2::254",  # AWS IMDS over IPv6
)


@dataclass(frozen=True)
class MediaConfig:
    # Fetching
    max_image_bytes: int = 20 * 1024 * 1024
    max_video_bytes: int = 200 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # longest wait for the next bytes
    total_timeout_s: float = 30.0  # whole fetch, redirects included
    max_redirects: int = 5
    # SSRF guard: by default only globally routable addresses are fetched.
    allow_private_network: bool = False  # loopback, private, link-local, ... allowed
    allowed_networks: tuple[str, ...] = ()  # CIDRs allowed although not global
    blocked_addresses: tuple[str, ...] = METADATA_ADDRESSES  # refused whatever else is set
    allowed_domains: tuple[str, ...] = ()  # () = any; else host must be one or a subdomain
    allowed_local_media_path: str | None = None  # local files only under this folder
    # Decoding
    max_image_pixels: int = 40_000_000  # checked from the header, before a full decode
    max_images_per_request: int = 16
    max_videos_per_request: int = 4
    video_fps: float = 2.0  # server default sampling rate
    video_max_frames: int = 64  # server default frame cap
    video_max_frames_limit: int = 256  # largest video_max_frames a request may ask for
    max_video_duration_s: float = 600.0
    # Vision-embedding cache (entries are per image / per video).
    embedding_cache_entries: int = 64
