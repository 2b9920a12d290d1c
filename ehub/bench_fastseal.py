"""``seal_fast_per_s`` for ``make bench``: render + PAdES B-B through the bulk fast path.

:func:`seal_fast_per_s` renders and seals ``n`` licenses of one template (the
business licence, 营业执照) with :class:`signing.fastpades.FastSealer`, using the
key of the bench's pyHanko baseline loop (``ehub.bench._pyhanko_loop``: the dev
PKI's seal PKCS#12) and, unlike that loop, a visible stamp with the seal's
picture, as the seal stage draws it. Each license differs (identifier,
number, holder, QR code), so every page, font subset and QR code is built anew.

Given :class:`ehub.config.Settings` it takes the licenses from the hub store
of the bench run (cycled when fewer than ``n``) and the dev seal's picture;
given a :class:`signing.pki.DevPKI` it generates them. It measures:

- ``per_s_one_process``: one process, wall clock (after one warm-up seal);
- ``per_s_cpu``: the same run's rate in CPU time of this process;
- ``per_s_pool`` / ``workers``: :meth:`FastSealer.seal_many` over a process
  pool of one worker per core, wall clock including the pool's start;
- ``per_s``: the better of the two wall-clock rates (the figure), and
  ``per_core_per_s`` = the pool rate divided by the workers.

Before timing, one output is checked with :func:`signing.verify.verify_pdf`
against the dev root (a figure of invalid documents would be worthless).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ehub.config import Settings
from signing.pki import DevPKI
from signing.render import LicenseView

_REASON, _LOCATION = "电子证照签章 / e-license seal", "山东"
_TYPE = "11100000000013338W001"


def _store_views(settings: Settings, n: int) -> tuple[DevPKI, list[LicenseView], str | None]:
    from sqlalchemy import select

    from ehub.pipeline.seal import DEV_SEAL_NAME, ensure_dev_seal
    from ehub.store.db import Store
    from ehub.store.models import LicenseRow, SealRow
    from ehub.templates import license_view

    store = Store(settings.database_url)
    try:
        seal_id, pki = ensure_dev_seal(settings, store)
        with store.session() as s:
            image = s.scalar(select(SealRow.image_path).where(SealRow.id == seal_id))
            docs = list(
                s.scalars(
                    select(LicenseRow.document)
                    .where(LicenseRow.type_code == _TYPE)
                    .order_by(LicenseRow.id)
                    .limit(n)
                )
            )
    finally:
        store.dispose()
    if not docs:
        raise RuntimeError(f"the hub store has no license of type {_TYPE} to seal")
    views = [
        license_view(docs[k % len(docs)], seal_label=DEV_SEAL_NAME, verify_url=settings.verify_url)
        for k in range(n)
    ]
    return pki, views, image


def _generated_views(pki: DevPKI, n: int) -> tuple[DevPKI, list[LicenseView], str | None]:
    from ehub.seal_image import render_seal_png
    from ehub.templates import license_view

    image = pki.directory / "bench_fastseal_seal.png"
    if not image.exists():
        image.write_bytes(render_seal_png("山东省市场监督管理局", "电子证照专用章"))
    doc = {
        "ZZLXDM": _TYPE, "ZZMC": "营业执照", "ZZBH": "", "ZZBS": "", "CZZT": "",
        "CZZTDM": "", "ZZBFJG": "济南市历下区市场监督管理局", "ZZBFRQ": "2024-05-20",
        "ZZYXQQSRQ": "2024-05-20", "ZZYXQJZRQ": "",
        "KZ": {"KZ_QYLX": "有限责任公司(自然人投资或控股)", "KZ_FDDBR": "张三",
               "KZ_ZCZB": "100万元人民币", "KZ_ZS": "山东省济南市历下区泉城路1号",
               "KZ_JYFW": "软件开发；信息技术咨询服务；数据处理和存储支持服务。"},
    }  # fmt: skip
    holders = ("济南示例科技有限公司", "青岛海岸物流有限公司", "烟台蓝港食品有限公司")
    views = []
    for k in range(n):
        number = f"91370102MA3C{k:06d}"
        doc |= {"ZZBH": number, "CZZTDM": number, "CZZT": holders[k % len(holders)],
                "ZZBS": f"1.2.156.3005.2.{_TYPE}.11370000MB1234562A.{k:08d}.001.0"}  # fmt: skip
        views.append(
            license_view(
                dict(doc),
                seal_label="山东省市场监督管理局电子证照专用章",
                verify_url="http://127.0.0.1:8765/verify",
            )
        )
    return pki, views, str(image)


def seal_fast_per_s(settings_or_pki: Settings | DevPKI, n: int = 1000) -> dict[str, Any]:
    """Render + seal ``n`` licenses through the fast path; the figures of the module docstring."""
    from signing.fastpades import FastSealer
    from signing.verify import verify_pdf

    if n < 1:
        raise ValueError("n must be at least 1")
    if isinstance(settings_or_pki, Settings):
        pki, views, image = _store_views(settings_or_pki, n)
    else:
        pki, views, image = _generated_views(settings_or_pki, n)
    sealer = FastSealer(pki.seal_p12_path, pki.passphrase, stamp_image=image)
    options: dict[str, Any] = {
        "signing_time": datetime.now(UTC),
        "reason": _REASON,
        "location": _LOCATION,
    }
    check = verify_pdf(sealer.seal_view(views[0], **options), [pki.root_cert_path])
    if not check.valid:
        raise RuntimeError(f"fast-path output does not verify: {'; '.join(check.reasons)}")

    c0, w0 = time.process_time(), time.perf_counter()
    for view in views:
        sealer.seal_view(view, **options)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0

    workers = max(1, os.cpu_count() or 1)
    w1 = time.perf_counter()
    sealed = sealer.seal_many(views, workers=workers, **options)
    pool_wall = time.perf_counter() - w1
    assert len(sealed) == n

    one = n / wall if wall > 0 else 0.0
    pool = n / pool_wall if pool_wall > 0 else 0.0
    return {
        "per_s": round(max(one, pool), 1),
        "per_s_one_process": round(one, 1),
        "per_s_cpu": round(n / cpu, 1) if cpu > 0 else 0.0,
        "per_s_pool": round(pool, 1),
        "workers": workers,
        "per_core_per_s": round(pool / workers, 1),
        "n": n,
        "level": "B-B",
        "mean_pdf_bytes": round(sum(len(p) for p in sealed) / n),
        "stamp_image": image is not None and Path(image).name != "",
        "method": "signing.fastpades.FastSealer: render + seal of n different business "
        "licences, same key as seal_pyhanko_loop_per_s, visible seal picture; per_s is the "
        "better wall-clock rate of one process and of a pool of one process per core",
    }
