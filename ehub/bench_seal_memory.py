"""Memory of a long sealing run (the issue's "memory flat over 100 k seals"), for ``make bench``.

:func:`seal_memory_series` seals ``seals`` licenses one after the other in a
fresh process, the way the seal stage does per license: render the license
PDF (:func:`ehub.templates.license_view` + :func:`signing.render.render_license_pdf`,
with the seal's name and the license's QR verification URL), then seal it with
one :class:`signing.pades.PadesSealer` at PAdES B-B (every shipped template's
level) using the dev PKI's seal PKCS#12 and the dev seal's picture as the
visible stamp. The documents are the four template types in turn, each seal
with its own identifier and number (so every page and QR code differs). The
XMLDSig copy the stage also writes, the store and the files are left out:
this measures the render + PAdES path only.

The process's current RSS (``/proc/self/statm``) is sampled at ``samples``
evenly spaced points. The figures compare the last sample with the first one
at or after 10 % of the run (after warm-up: caches, fonts, the first
allocations of pyHanko and reportlab). ``flat`` means that growth stays within
``max(20 MB, 10 % of the warm RSS)``; ``growth_mb_per_10k_seals`` shows the
slope, which matters for a run longer than the measured one, and
``growth_mb_second_half`` whether it levels off.

After the last sample the child collects garbage and asks glibc to hand its
free heap back (``malloc_trim``): ``rss_after_trim_mb`` tells memory the
allocator merely keeps (fragmented free heap, which comes back) from live
memory (a leak, which does not). It is a diagnostic beside the series, not
part of it or of ``flat``.

The default ``ehub bench`` run is a 2 000-seal series (about three minutes on
the two-core dev machine, 12-20 seals/s); ``ehub bench --seal-memory 100000``
is the full 100 k run (1.5-2.5 hours); ``--seal-memory 0`` skips it.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

#: Growth allowed for ``flat``: this many MB, or this share of the warm RSS if larger.
FLAT_MB = 20.0
FLAT_SHARE = 0.10
#: Share of the run counted as warm-up.
WARM_SHARE = 0.10

_VERIFY_URL = "http://127.0.0.1:8765/verify"
_ISSUER = "11370000MB1234562A"
_SEAL_DEPARTMENT = "山东省市场监督管理局"
_SEAL_TYPE = "电子证照专用章"
_SEAL_NAME = "山东省市场监督管理局电子证照专用章"

#: (type code, type name, holder, holder code, holder code type, surface) of the
#: documents sealed in turn: one per shipped template.
_DOCS: tuple[tuple[str, str, str, str, str, dict[str, str]], ...] = (
    ("11100000000013338W001", "营业执照", "济南示例科技有限公司", "91370102MA3C8X2Y4T", "001", {
        "KZ_QYLX": "有限责任公司(自然人投资或控股)", "KZ_FDDBR": "张三",
        "KZ_ZCZB": "100万元人民币", "KZ_ZS": "山东省济南市历下区泉城路1号",
        "KZ_JYFW": "软件开发；信息技术咨询服务；数据处理和存储支持服务。"
                   "（依法须经批准的项目，经相关部门批准后方可开展经营活动）",
    }),
    ("11100000000013338W004", "建筑工程施工许可证", "青岛示例置业有限公司", "91370200MA3D1K7P2X",
     "001", {
        "KZ_XMMC": "示例小区二期住宅楼工程", "KZ_JSDZ": "山东省青岛市黄岛区示例路88号",
        "KZ_JZMJ": "35620.5平方米", "KZ_HTJG": "12850万元",
    }),
    ("11100000000013338W005", "医师执业证书", "李四", "370102198001011234", "111", {
        "KZ_ZYLB": "临床", "KZ_ZYFW": "内科专业", "KZ_ZYDD": "山东省立医院",
    }),
    ("11100000000013338W006", "道路运输经营许可证", "烟台示例物流有限公司", "91370600MA3F5Q8L0N",
     "001", {
        "KZ_DZ": "山东省烟台市芝罘区示例街9号", "KZ_JYFW": "道路普通货物运输；货物专用运输（集装箱）",
    }),
)  # fmt: skip


def seal_memory_series(work: Path, seals: int, samples: int = 20) -> dict[str, Any]:
    """Seal ``seals`` licenses in a fresh process, sampling its RSS ``samples`` times.

    Returns ``seals``, ``seconds`` and ``per_s`` (render + seal, wall clock),
    ``rss_start_mb`` (after set-up, before the first seal), ``rss_mb``
    (``[[seals done, MB], ...]``, ``samples`` evenly spaced points, the last
    at ``seals``), ``warm_at`` / ``rss_first_mb`` (the first sample at or
    after 10 % of the run), ``rss_last_mb``, ``growth_mb`` (last - first),
    ``growth_mb_per_10k_seals``, ``growth_mb_second_half`` (last - the first
    sample at or after 50 %), ``rss_max_mb`` (largest sample), ``bound_mb``,
    ``flat`` (``growth_mb <= bound_mb``) and ``rss_after_trim_mb`` (after the
    run, garbage collected and the free heap returned; None without glibc).
    The PKI and seal picture are created under ``work/seal_memory``.
    """
    if seals < 1 or samples < 1:
        raise ValueError("seals and samples must be at least 1")
    folder = work / "seal_memory"
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", "from ehub.bench_seal_memory import _main; _main()",
         str(folder), str(seals), str(min(samples, seals))],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    raw: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return _figures(raw)


def sample_points(seals: int, samples: int) -> list[int]:
    """Seal counts after which RSS is read: ``samples`` evenly spaced, the last at ``seals``."""
    return sorted({math.ceil(k * seals / samples) for k in range(1, samples + 1)})


def _figures(raw: dict[str, Any]) -> dict[str, Any]:
    seals, seconds = int(raw["seals"]), float(raw["seconds"])
    series: list[list[float]] = raw["rss_mb"]
    warm_at = max(1, math.ceil(seals * WARM_SHARE))
    first_i, first = next((i, mb) for i, mb in series if i >= warm_at)
    last_i, last = series[-1]
    half = next(mb for i, mb in series if i >= math.ceil(seals / 2))
    growth = round(last - first, 1)
    bound = round(max(FLAT_MB, FLAT_SHARE * first), 1)
    per_10k = round(growth * 10_000 / (last_i - first_i), 1) if last_i > first_i else 0.0
    return {
        "seals": seals,
        "level": "B-B",
        "seconds": round(seconds, 2),
        "per_s": round(seals / seconds, 1) if seconds > 0 else 0.0,
        "rss_start_mb": raw["rss_start_mb"],
        "rss_mb": series,
        "warm_at": int(first_i),
        "rss_first_mb": first,
        "rss_last_mb": last,
        "rss_max_mb": max(mb for _, mb in series),
        "growth_mb": growth,
        "growth_mb_per_10k_seals": per_10k,
        "growth_mb_second_half": round(last - half, 1),
        "bound_mb": bound,
        "flat": growth <= bound,
        "rss_after_trim_mb": raw.get("rss_after_trim_mb"),
        "mmap_threshold_pinned": raw.get("mmap_threshold_pinned"),
        "method": (
            "fresh process, glibc mmap threshold pinned and a full gc every 100 seals as "
            "in the seal stage (ehub.allocator); render + PAdES B-B seal per license; current RSS from "
            "/proc/self/statm; growth = last sample - first sample at or after 10 % of the "
            f"run; flat = growth <= max({FLAT_MB:g} MB, {FLAT_SHARE:.0%} of that sample); "
            "rss_after_trim_mb: after the run, gc.collect() + glibc malloc_trim(0)"
        ),
    }


def _rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _trimmed_rss_mb() -> float | None:
    """RSS after a full collection and glibc's ``malloc_trim(0)``; None without glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return _rss_mb()


def _documents() -> list[dict[str, Any]]:
    from ehub.identifiers import make_license_identifier
    from ehub.records import License, LicenseStatus, Lineage, license_content_hash, license_to_json

    docs = []
    for n, (type_code, type_name, holder, code, code_type, surface) in enumerate(_DOCS):
        lic = License(
            identifier=make_license_identifier(type_code, _ISSUER, f"2024{n:08d}"),
            type_code=type_code,
            type_name=type_name,
            number=f"SD2024{n:08d}",
            issuer_name=_SEAL_DEPARTMENT,
            issuer_code=_ISSUER,
            issuer_division="370000",
            issue_date=date(2024, 5, 20),
            valid_from=date(2024, 5, 20),
            valid_until=None if n % 2 == 0 else date(2029, 5, 19),
            holder_name=holder,
            holder_code=code,
            holder_code_type=code_type,
            holder_division="370102",
            status=LicenseStatus.VALID,
            version=1,
            lineage=Lineage("bench", f"row-{n}", "1", "0" * 64),
            surface=surface,
        )
        lic = replace(lic, lineage=replace(lic.lineage, content_hash=license_content_hash(lic)))
        docs.append(license_to_json(lic))
    return docs


def _main() -> None:
    """The child process: ``folder seals samples`` in argv, one JSON line on stdout."""
    from datetime import UTC, datetime

    from ehub.identifiers import make_license_identifier
    from ehub.seal_image import render_seal_png
    from ehub.templates import license_view
    from signing.pades import PadesSealer
    from signing.pki import ensure_dev_pki
    from signing.render import render_license_pdf

    folder, seals, samples = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    from ehub.allocator import CycleCollector, pin_mmap_threshold

    pinned = pin_mmap_threshold()  # as the seal stage's SealContext does
    collector = CycleCollector()  # likewise
    pki = ensure_dev_pki(folder / "pki")
    stamp = folder / "seal.png"
    stamp.write_bytes(render_seal_png(_SEAL_DEPARTMENT, _SEAL_TYPE))
    sealer = PadesSealer(pki.seal_p12_path, pki.passphrase, level="B-B", stamp_image=stamp)
    docs = _documents()
    points = set(sample_points(seals, samples))
    series: list[list[float]] = []
    start = _rss_mb()
    t = time.perf_counter()
    for i in range(seals):
        collector.tick()
        base = docs[i % len(docs)]
        serial = f"9{i:09d}"
        doc = {
            **base,
            "ZZBS": make_license_identifier(base["ZZLXDM"], _ISSUER, serial),
            "ZZBH": f"SD{serial}",
        }
        pdf = render_license_pdf(license_view(doc, seal_label=_SEAL_NAME, verify_url=_VERIFY_URL))
        sealer.seal(
            pdf, reason="电子证照签章 / e-license seal", location="山东",
            signing_time=datetime.now(UTC),
        )  # fmt: skip
        if i + 1 in points:
            series.append([i + 1, _rss_mb()])
    seconds = time.perf_counter() - t
    trimmed = _trimmed_rss_mb()
    print(json.dumps({"seals": seals, "seconds": seconds, "rss_start_mb": start,
                      "rss_mb": series, "rss_after_trim_mb": trimmed,
                      "mmap_threshold_pinned": pinned}))  # fmt: skip
