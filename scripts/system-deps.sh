#!/usr/bin/env bash
# Debian packages used by the tests (not by `make demo`): poppler-utils for
# pdfsig and pdftotext, poppler-data for the CJK character maps pdftotext needs
# to read the licenses' Chinese text (a recommended package, so not pulled in
# by --no-install-recommends), libnss3-tools for the NSS trust store pdfsig reads.
set -euo pipefail
need=()
command -v pdfsig >/dev/null 2>&1 || need+=(poppler-utils)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
[ -d /usr/share/poppler/cMap/Adobe-GB1 ] || need+=(poppler-data)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
