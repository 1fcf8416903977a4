#!/usr/bin/env bash
# Installs the Hangul font the synthetic receipts need (Debian's fonts-nanum) when it is missing.
set -euo pipefail
if fc-list 2>/dev/null | grep -qi nanum || ls /usr/share/fonts/truetype/nanum/*.ttf >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-nanum >/dev/null
else
  echo "receiptflow: no Hangul font found. Install Debian's fonts-nanum (sudo apt-get install fonts-nanum)" >&2
  echo "or set RECEIPTFLOW_FONT_DIR to a folder of .ttf fonts with Hangul glyphs." >&2
fi
