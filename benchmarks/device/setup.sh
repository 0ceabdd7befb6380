# Source from the repo root at the start of a run on the GPU host:  . benchmarks/device/setup.sh core|ray || exit 1
#
# Unpacks the carried bundle(s) (.device/site-<tier>.tar.xz, built by `python -m benchmarks.device.bundle`)
# into /tmp/site, puts ../shared beside the repo copy, sets the environment the benchmarks expect and runs
# benchmarks.device.check. Sourced, not executed, so the exports reach the benchmark commands that follow.
# The host has no network and no pip step: everything arrives in the archives.

s3jedi_device_setup() {
  local tier=${1:-core} py=${PYTHON:-python3} site=${S3JEDI_DEVICE_SITE:-/tmp/site} t
  local tiers="core"
  [ "$tier" = ray ] && tiers="core ray"
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
  # TQDM_DISABLE: progress bars would drown the run's log.
  export TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 S3JEDI_HOME=${S3JEDI_HOME:-/tmp/s3jedi-home}
  export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
  mkdir -p "$site" "$S3JEDI_HOME" || return 1
  for t in $tiers; do
    local archive=".device/site-$t.tar.xz"
    [ -f "$archive" ] || { echo "setup: $archive is missing: copy it to the host with the working tree" >&2; return 1; }
    # /tmp/site is kept between runs: unpack again only if the archive changed.
    local stamp; stamp=$(cksum "$archive" | cut -d' ' -f1,2)
    if [ "$(cat "$site/.s3jedi-$t.cksum" 2>/dev/null)" != "$stamp" ]; then
      "$py" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
        "$archive" "$site" || return 1
      echo "$stamp" >"$site/.s3jedi-$t.cksum"
    fi
  done
  # Only serving, evaluation and the GPU tests read ../shared: a parent that is not writable is a warning.
  if [ -d .device/shared ]; then
    { mkdir -p ../shared && cp -rn .device/shared/. ../shared/; } || echo "setup: could not fill ../shared" >&2
  fi
  "$py" -m benchmarks.device.check "$tier" "$site"
}

s3jedi_device_setup "$@"
