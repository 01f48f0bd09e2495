"""Command-line options for image and video input → ``MediaConfig``."""

from __future__ import annotations

import argparse
import ipaddress
import os

from mlxserve.multimodal.media_config import MediaConfig


class MediaArgsError(ValueError):
    """A bad media option (the CLI reports it as one line)."""


def add_media_args(parser: argparse.ArgumentParser) -> None:
    d = MediaConfig()
    group = parser.add_argument_group("images and video (vision-language models)")
    group.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                       help="serve local files under DIR as media (off by default)")
    group.add_argument("--media-allowed-domains", nargs="+", default=[], metavar="DOMAIN",
                       help="fetch http(s) media only from these domains (and subdomains)")
    group.add_argument("--media-allow-private-network", action="store_true",
                       help="allow media URLs on loopback/private/link-local addresses")
    group.add_argument("--media-allowed-networks", nargs="+", default=[], metavar="CIDR",
                       help="non-public networks media may be fetched from")
    group.add_argument("--max-image-bytes", type=int, default=d.max_image_bytes)
    group.add_argument("--max-video-bytes", type=int, default=d.max_video_bytes)
    group.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels)
    group.add_argument("--media-fetch-timeout", type=float, default=d.total_timeout_s,
                       metavar="SECONDS", help="whole-fetch time limit, redirects included")
    group.add_argument("--video-fps", type=float, default=d.video_fps,
                       help="default frames sampled per second of video")
    group.add_argument("--video-max-frames", type=int, default=d.video_max_frames,
                       help="default most frames sampled from one video")
    group.add_argument("--max-video-duration", type=float, default=d.max_video_duration_s,
                       metavar="SECONDS")


def media_config(args: argparse.Namespace) -> MediaConfig:
    for name in ("max_image_bytes", "max_video_bytes", "max_image_pixels", "video_max_frames"):
        if getattr(args, name) <= 0:
            raise MediaArgsError(f"--{name.replace('_', '-')} must be positive")
    for name in ("media_fetch_timeout", "video_fps", "max_video_duration"):
        if not getattr(args, name) > 0:
            raise MediaArgsError(f"--{name.replace('_', '-')} must be positive")
    for cidr in args.media_allowed_networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise MediaArgsError(f"--media-allowed-networks: '{cidr}' is not a network") from None
    local = args.allowed_local_media_path
    if local is not None and not os.path.isdir(local):
        raise MediaArgsError("--allowed-local-media-path must be an existing folder")
    defaults = MediaConfig()
    return MediaConfig(
        max_image_bytes=args.max_image_bytes, max_video_bytes=args.max_video_bytes,
        total_timeout_s=args.media_fetch_timeout,
        allow_private_network=args.media_allow_private_network,
        allowed_networks=tuple(args.media_allowed_networks),
        allowed_domains=tuple(args.media_allowed_domains),
        allowed_local_media_path=os.path.abspath(local) if local else None,
        max_image_pixels=args.max_image_pixels, video_fps=args.video_fps,
        video_max_frames=args.video_max_frames,
        video_max_frames_limit=max(defaults.video_max_frames_limit, args.video_max_frames),
        max_video_duration_s=args.max_video_duration,
    )
