"""A department's issuing system (发证系统) that posts each license it issues to the hub.

Stands in for the enterprise registration system of the market regulation
bureau, which calls the hub's on-demand sealing API at issuance
(``POST /v1/sources/market_regulation.issuing_api/licenses``, spec
``sources/market_regulation/issuing_api.yaml``) and prints the sealed PDF it
gets back. Records are generated like the registration database's rows
(:mod:`simulators.market_regulation`), in the JSON shape of the issuing API and
issued by the bureau that owns the API client. It never imports the hub.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from simulators import market_regulation as mr

SOURCE_ID = "market_regulation.issuing_api"
ISSUER_NAME = "山东省市场监督管理局"


def _iso(text: str) -> str:
    if text == mr.LONG_TERM:
        return text
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"not a date: {text!r}")


def license_post(n: int, *, issuer_uscc: str, seed: int = 0) -> dict[str, Any]:
    """Issued license ``n`` (deterministic for ``seed``), as the issuing system posts it."""
    row = mr._row(seed, n, None)
    return {
        "licenseNo": row["ZCH"],
        "issuer": ISSUER_NAME,
        "issuerCode": issuer_uscc,
        "issueDate": _iso(row["FZRQ"]),
        "validFrom": _iso(row["CLRQ"]),
        "validUntil": _iso(row["YYQXZ"]),
        "holderName": row["QYMC"],
        "holderCode": row["TYSHXYDM"],
        "holderDivision": row["XZQHDM"],
        "status": "active",
        "legalRepresentative": row["FDDBR"],
        "companyType": row["QYLX"],
        "registeredCapital": row["ZCZB"],
        "address": row["ZS"],
        "businessScope": row["JYFW"],
    }


def post_license(
    http: httpx.Client, token: str, payload: dict[str, Any], *, source_id: str = SOURCE_ID
) -> httpx.Response:
    """Post one license; the caller reads the sealed PDF (201/200) or the reason."""
    return http.post(
        f"/v1/sources/{source_id}/licenses",
        json=payload,
        headers={"Authorization": f"Bearer {token}"},
    )
