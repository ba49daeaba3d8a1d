"""``vsr precompute``: fill a caption-embedding cache, so training need not keep the text encoder loaded.

    vsr precompute --pretrained /weights/CogVideoX1.5-5B --cache /data/text-cache --data /data/clips
    vsr precompute --pretrained /weights/Wan2.1-T2V-1.3B-Diffusers --cache cache/ --captions captions.jsonl

Captions come from a data folder's caption files (the ``VideoFolder`` rules: ``<clip>.txt`` sidecars
and ``captions.jsonl``) and from text files (one caption per line) or ``.jsonl`` files (objects with
``caption``, ``text`` or ``prompt``). The empty prompt and ``--negative`` are always added (methods
condition on them for empty captions and guidance). Entries already in the cache are kept. The
cache layout is :mod:`vsr_core.text.cache`; point a method's text cache option at the same directory
with the same encoder settings (``--max-length``, ``--torch-dtype``, ``--clip-skip``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vsr_core.errors import ConfigError, DataError, VSRError


def _read_caption_file(path: Path) -> list[str]:
    """Captions of a ``.txt`` (one per line) or ``.jsonl`` (``caption`` / ``text`` / ``prompt``) file."""
    if not path.is_file():
        raise DataError(f"caption file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"caption file {path} is not readable UTF-8 text ({type(err).__name__})") from None
    if path.suffix.lower() != ".jsonl":
        return [line.strip() for line in lines if line.strip()]
    captions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        text = next((entry[k] for k in ("caption", "text", "prompt") if isinstance(entry, dict) and k in entry), None)
        if not isinstance(text, str):
            raise DataError(
                f'{path}:{number}: expected {{"caption": ...}} (or "text" / "prompt"); fix or remove the line'
            )
        captions.append(text.strip())
    return captions


def _data_captions(root: str) -> list[str]:
    from vsr_core.data import VideoFolder

    return [item.caption for item in VideoFolder(root).items()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsr precompute",
        description="Encode captions once into a text-embedding cache (one safetensors file per caption).",
    )
    parser.add_argument(
        "--pretrained", required=True, help="diffusers-format model folder (text_encoder/ + tokenizer/) or hub id"
    )
    parser.add_argument("--cache", required=True, help="cache directory (created; shared by encoders)")
    parser.add_argument(
        "--data", action="append", default=[], help="a data folder whose caption files to read (repeatable)"
    )
    parser.add_argument("--captions", action="append", default=[], help="a .txt or .jsonl caption file (repeatable)")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "t5", "umt5", "clip"),
        help="encoder family (default: from config.json)",
    )
    parser.add_argument(
        "--max-length", type=int, default=None, help="tokens per caption (default: t5 226, umt5 512, clip 77)"
    )
    parser.add_argument("--torch-dtype", default=None, help="weights dtype, e.g. bfloat16 (must match the method's)")
    parser.add_argument(
        "--clip-skip", type=int, default=None, help="CLIP only: use the hidden state k layers before the last"
    )
    parser.add_argument(
        "--suffix", default="", help="text appended to every caption (as a method's prompt template would)"
    )
    parser.add_argument(
        "--negative", default="", help="negative prompt to cache as well (default: only the empty prompt)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="captions per encoder call")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--text-encoder-subfolder", default="text_encoder")
    parser.add_argument("--tokenizer-subfolder", default="tokenizer")
    return parser


def main(argv: list[str]) -> int:
    """Run ``vsr precompute`` with ``argv``; returns the exit code (errors: one ``error:`` line)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return _run(args)
    except VSRError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


def _collect(args: argparse.Namespace) -> list[str]:
    if not args.data and not args.captions:
        raise ConfigError("give captions to encode with --data FOLDER and/or --captions FILE")
    captions: list[str] = []
    for root in args.data:
        captions += _data_captions(root)
    for file in args.captions:
        captions += _read_caption_file(Path(file))
    texts = [f"{c} {args.suffix}".strip() if args.suffix else c for c in captions]
    return list(dict.fromkeys(["", args.negative, *texts]))  # unique, in order


def _run(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vsr_core.text import EmbeddingCache, TextEncoder

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    texts = _collect(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = TextEncoder.from_pretrained(
        args.pretrained,
        args.kind,
        text_encoder_subfolder=args.text_encoder_subfolder,
        tokenizer_subfolder=args.tokenizer_subfolder,
        max_length=args.max_length,
        torch_dtype=args.torch_dtype,
        clip_skip=args.clip_skip,
        device=device,
    )
    cache = EmbeddingCache.for_encoder(args.cache, encoder)
    todo = [t for t in texts if cache.get(t) is None]  # invalid entries warn once and are rewritten
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("encoding captions", total=len(todo))
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start : start + args.batch_size]
            embeds, lengths = encoder.encode_with_lengths(batch, device)
            for text, embedding, real in zip(batch, embeds, lengths.tolist()):
                cache.put(text, embedding, real)
            progress.advance(task, len(batch))
    print(f"{len(texts)} prompts ({len(todo)} new, {len(texts) - len(todo)} already cached) in {cache.folder}")
    return 0
