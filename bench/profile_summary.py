"""Summarise a py-spy raw profile (``py-spy record --format raw``) of the worker.

py-spy samples the running process from outside: no instrumentation in the hot path,
so the shares are those of the real run (cProfile's per-call hooks would inflate the
many small functions of the asyncio and botocore paths). Each line of the raw format is
a stack (frames joined by ``;``, root first) and a sample count.

    .venv/bin/python bench/profile_summary.py bench/results/profile-worker.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

# First match wins; frames are searched leaf side last, root frame excluded.
CATEGORIES: Final = (
    ("module imports (start-up)", r"_find_and_load|<module>"),
    ("structlog (log lines)", r"structlog/"),
    ("tenacity (retry loop)", r"tenacity/"),
    ("worker: events, ids, hashes", r"worker/core/events"),
    ("worker: request parsing", r"worker/core/request"),
    ("worker: heartbeat", r"worker/core/heartbeat"),
    ("json", r"json/"),
    ("botocore / aiobotocore (AWS calls)", r"botocore|aiobotocore"),
    ("aiohttp (HTTP)", r"aiohttp/"),
    ("idle executor threads", r"concurrent/futures/thread"),
    ("asyncio (event loop, tasks)", r"asyncio/"),
)


def stacks(lines: Iterable[str]) -> Iterable[tuple[list[str], int]]:
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            yield [_short(frame) for frame in stack.split(";")[1:]], int(count)


def _short(frame: str) -> str:
    frame = re.sub(r"\(/[^ ]*?site-packages/", "(", frame)
    frame = re.sub(r"\(/[^ ]*?/lib/python3\.\d+/", "(stdlib/", frame)
    frame = re.sub(r"\(/[^ ]*?/worker/", "(worker/", frame)
    return re.sub(r":\d+\)", ")", frame)


def summarise(lines: Iterable[str], top: int = 15) -> str:
    total = 0
    by_category: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    for frames, count in stacks(lines):
        total += count
        joined = ";".join(frames)
        category = next((name for name, rx in CATEGORIES if re.search(rx, joined)), "other")
        by_category[category] += count
        if frames:
            by_self[frames[-1]] += count
    out = [f"{total} samples", "", "share  where the time goes"]
    out += [f"{100 * n / total:5.1f}% {name}" for name, n in by_category.most_common()]
    out += ["", f"share  top {top} functions by own time"]
    out += [f"{100 * n / total:5.1f}% {name}" for name, n in by_self.most_common(top)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print(summarise(args.profile.read_text().splitlines(), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
