#!/bin/bash
# Rehearse a run of the offline GPU host on a CPU machine:  benchmarks/device/rehearse.sh "NEEDED PATHS" 'COMMAND'
#
# Copies the working tree as it goes to the host (tracked and untracked-not-ignored files, plus the
# needed paths) into $REHEARSE_DIR/repo, so ../shared is absent as it is there, and runs COMMAND in it with
# the Python of a venv that mirrors the host image (Python 3.12, torch 2.11.0, transformers 5.17.0, ...):
#   /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/devemu/venv
#   /tmp/devemu/venv/bin/pip install torch==2.11.0 torchvision==0.26.0 transformers==5.17.0 \
#     huggingface_hub==1.33.0 numpy==2.5.2 tokenizers==0.23.2 safetensors==0.8.0 accelerate==1.15.0 \
#     timm peft pandas pyarrow tensorboard opencv-python-headless aiohttp msgpack protobuf grpcio requests \
#     attrs jinja2 fsspec uvloop psutil prometheus-client pytest pytest-timeout hypothesis six wrapt zipp
#   /tmp/devemu/venv/bin/pip uninstall -y pydantic pydantic-core annotated-types typing-inspection tzdata
# (the last line removes what pip pulled in that the image lacks). $OUT is $REHEARSE_DIR/out.
set -u
carry=$1 cmd=$2
repo_root=$(git rev-parse --show-toplevel) || exit 1
venv=${EMU_VENV:-/tmp/devemu/venv} dir=${REHEARSE_DIR:-/tmp/devemu/rehearse}
[ -x "$venv/bin/python3" ] || { echo "rehearse: no device-like venv at $venv (see this script's header)" >&2; exit 1; }
rm -rf "$dir" && mkdir -p "$dir/repo" "$dir/out" || exit 1
(cd "$repo_root" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  tar --null -cf - -T - | tar -xf - -C "$dir/repo") || exit 1
for c in $carry; do
  mkdir -p "$dir/repo/$(dirname "$c")" && cp -r "$repo_root/$c" "$dir/repo/$c" || exit 1
done
cd "$dir/repo" || exit 1
env -u PYTHONPATH -u VIRTUAL_ENV PATH="$venv/bin:$PATH" OUT="$dir/out" \
  S3JEDI_DEVICE_SITE="$dir/site" S3JEDI_HOME="$dir/home" bash -c "$cmd"
