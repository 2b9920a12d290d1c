#!/usr/bin/env bash
# Debian packages used by the tests (not by `make demo`): poppler-utils for
# pdfsig and pdftotext, poppler-data for the CJK character maps pdftotext needs
# to read the licenses' Chinese text (a recommended package, so not pulled in
# by --no-install-recommends), libnss3-tools for the NSS trust store pdfsig reads,
# softhsm2 + opensc for the PKCS#11 seal key, xmlsec1 for XML signatures, the
# AR PL SungtiL GB font the licenses embed, zbar-tools to read their QR codes,
# chromium + chromium-driver for the browser tests of the office portal and the
# dashboard, kcat as the independent Kafka client of the return-feed tests.
set -euo pipefail
need=()
command -v pdfsig >/dev/null 2>&1 || need+=(poppler-utils)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
[ -d /usr/share/poppler/cMap/Adobe-GB1 ] || need+=(poppler-data)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)   # the PKCS#11 token of the seal tests
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)       # inspects the token from outside
command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)          # verifies the XML signatures
[ -f /usr/share/fonts/truetype/arphic-gbsn00lp/gbsn00lp.ttf ] || need+=(fonts-arphic-gbsn00lp)  # 宋体, embedded in licenses
command -v zbarimg >/dev/null 2>&1 || need+=(zbar-tools)        # decodes the licenses' QR codes
command -v chromium >/dev/null 2>&1 || need+=(chromium)         # headless browser tests
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v kcat >/dev/null 2>&1 || need+=(kcat)                 # independent Kafka client (librdkafka)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)  # validates docker-compose.yml
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
